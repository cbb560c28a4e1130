#!/usr/bin/env bash
# The warm caption page as many people use it: USERS people (default 50) with SESSIONS signed-in
# sessions between them (default 200), every request carrying the next session's cookie; beside it
# the same page for one session, and /healthz. SQLite and its own redis-server; wrk -t2 at 64
# connections. Several builds can be compared in one run, one after the other, on the same
# machine state: BINS="target/release/fedialt /tmp/other/fedialt" bench/sessions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
USERS=${USERS:-50}
SESSIONS=${SESSIONS:-200}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BINS:-}" ]; then
  cargo build --release --locked --quiet
  BINS=$PWD/target/release/fedialt
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
FAKE_PORT=$(free_port)
python3 bench/fake_instance.py "$FAKE_PORT" bench-token & PIDS+=($!)

# wrk over the cookies in FILE: "rps p50us p99us errors"
run() {
  local url=$1 file=$2 out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -s bench/sessions.lua "$url" -- "$file")
  echo "$(awk '/^RPS/{print $2}' <<<"$out") $(awk '/^P50US/{print $2}' <<<"$out") $(awk '/^P99US/{print $2}' <<<"$out") $(awk '/^SOCKERR/{print $2}' <<<"$out")"
}

# start BIN -> sets BASE, APP_PID, COOKIES (many) and ONE (a single session)
start() {
  local bin=$1 dir=$WORK/$RANDOM port redis_port
  mkdir -p "$dir"; port=$(free_port); redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
  local env=(FEDIALT_DATA_DIR="$dir" FEDIALT_BIND="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$redis_port/0"
             FEDIALT_ALLOW_PRIVATE_NETWORK=true RUST_LOG=warn FEDIALT_TRUSTED_PROXIES=127.0.0.1)
  for u in $(seq 1 "$USERS"); do
    env "${env[@]}" FEDIALT_ADMIN_PASSWORD=bench-password-123 "$bin" create-admin --username "user$u" --email "u$u@example.org" >/dev/null
  done
  env "${env[@]}" "$bin" serve & APP_PID=$!; PIDS+=($APP_PID)
  BASE=http://127.0.0.1:$port
  wait_http "$BASE/healthz"
  COOKIES=$dir/cookies; ONE=$dir/one; : > "$COOKIES"
  for s in $(seq 1 "$SESSIONS"); do
    local u=$(( (s - 1) % USERS + 1 )) jar=$dir/jar$s csrf
    csrf=$(curl -s -c "$jar" "$BASE/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
    curl -s -b "$jar" -c "$jar" -o /dev/null -H "X-Forwarded-For: 198.18.$((s / 250)).$((s % 250 + 1))" \
      --data-urlencode "csrf_token=$csrf" -d "username=user$u" -d password=bench-password-123 "$BASE/login"
    if [ "$s" -le "$USERS" ]; then
      csrf=$(curl -s -b "$jar" "$BASE/account" | sed -n 's/.*name="csrf-token" content="\([^"]*\)".*/\1/p' | head -1)
      curl -s -b "$jar" -o /dev/null --data-urlencode "csrf_token=$csrf" -d "instance_url=http://127.0.0.1:$FAKE_PORT" -d access_token=bench-token "$BASE/platforms"
    fi
    awk '$6=="fedialt_session"{print $7}' "$jar" >> "$COOKIES"
  done
  head -1 "$COOKIES" > "$ONE"
  [ "$(wc -l < "$COOKIES")" -eq "$SESSIONS" ] || { echo "not every session signed in" >&2; exit 1; }
  while read -r c; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: fedialt_session=$c" "$BASE/caption_generation")" = 200 ] \
      || { echo "a session's caption page is not 200" >&2; exit 1; }
  done < "$COOKIES"
}

declare -A RESULT
for bin in $BINS; do
  start "$bin"
  for r in $(seq 1 "$ROUNDS"); do
    RESULT["$bin many $r"]=$(run "$BASE/caption_generation" "$COOKIES")
    RESULT["$bin one $r"]=$(run "$BASE/caption_generation" "$ONE")
    RESULT["$bin health $r"]=$(curl -s -o /dev/null "$BASE/healthz"; run "$BASE/healthz" "$ONE")
  done
  RESULT["$bin rss"]=$(awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$APP_PID/status")
  kill "$APP_PID"; wait "$APP_PID" 2>/dev/null || true
done

echo "| build | workload | requests/s | p50 ms | p99 ms | errors | peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
for bin in $BINS; do
  for w in many one health; do
    rows=""
    for r in $(seq 1 "$ROUNDS"); do rows+="${RESULT["$bin $w $r"]}"$'\n'; done
    label=$w; [ "$w" = many ] && label="caption page, $SESSIONS sessions of $USERS people"
    [ "$w" = one ] && label="caption page, one session"; [ "$w" = health ] && label="/healthz"
    printf '%s' "$rows" | awk -v b="$bin" -v l="$label" -v m="${RESULT["$bin rss"]}" \
      'NF{r+=$1;p+=$2;q+=$3;e+=$4;n++} END{printf "| %s | %s | %.0f | %.2f | %.2f | %d | %s |\n", b, l, r/n, p/n/1000, q/n/1000, e, m}'
  done
done
echo
echo "Command: DURATION=$DURATION ROUNDS=$ROUNDS USERS=$USERS SESSIONS=$SESSIONS CONNS=$CONNS BINS=\"…\" bench/sessions.sh; $(nproc) cores."
