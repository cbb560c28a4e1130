#!/usr/bin/env bash
# Loads the warm caption generation page (signed in) and /healthz, alternating runs of each, at 16
# and 64 connections, on SQLite and on PostgreSQL, then again with Redis stopped. Writes a markdown
# table to bench/results/. Installs wrk when it is missing. Uses its own redis-server and its own
# PostgreSQL database; the shared Redis on 6379 is not touched.
#
#   bench/run.sh              # 10 s per run
#   DURATION=5 bench/run.sh   # shorter
#   NEAR_CACHE=false bench/run.sh   # every read goes to Redis (no copies in memory)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
command -v redis-server >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
cargo build --release --locked --quiet
BIN=$PWD/target/release/fedialt

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

FAKE_PORT=$(free_port)
python3 bench/fake_instance.py "$FAKE_PORT" bench-token & PIDS+=($!)
mkdir -p bench/results
OUT=bench/results/$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "| database | redis | connections | endpoint | requests/s | p50 ms | p99 ms | errors | Redis round trips / request | page / this | peak RSS MB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} > "$OUT"

METRICS_TOKEN=bench-metrics-$(head -c 12 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')
# From the app's counters: "round-trips non-2xx-responses" (Redis round trips, and responses that
# were not a 2xx, e.g. a 303 to /login for a lost session, or a 500).
counters() {
  curl -s -H "Authorization: Bearer $METRICS_TOKEN" "${1%/*}/metrics" | awk '
    /^fedialt_redis_round_trips_total/ {t=$2}
    /^fedialt_http_responses_total/ && !/class="2xx"/ {e+=$2}
    END {printf "%d %d\n", t, e}'
}

# run_wrk URL CONNECTIONS [COOKIE] -> "rps p50us p99us errors round-trips-per-request"
run_wrk() {
  local url=$1 conns=$2 cookie=${3:-}
  local out trips_before trips_after bad_before bad_after
  read -r trips_before bad_before <<<"$(counters "$url")"
  if [ -n "$cookie" ]; then
    out=$(wrk -t2 -c"$conns" -d"${DURATION}s" -s bench/status.lua -H "Cookie: fedialt_session=$cookie" "$url")
  else
    out=$(wrk -t2 -c"$conns" -d"${DURATION}s" -s bench/status.lua "$url")
  fi
  local rps p50 p99 sockerr
  rps=$(awk '/^RPS/{print $2}' <<<"$out"); p50=$(awk '/^P50US/{print $2}' <<<"$out")
  p99=$(awk '/^P99US/{print $2}' <<<"$out"); sockerr=$(awk '/^SOCKERR/{print $2}' <<<"$out")
  read -r trips_after bad_after <<<"$(counters "$url")"
  local per_request
  per_request=$(awk -v a="$trips_after" -v b="$trips_before" -v n="$(awk '/^REQUESTS/{print $2}' <<<"$out")" 'BEGIN{printf "%.3f", (n > 0 ? (a - b) / n : 0)}')
  echo "$rps $p50 $p99 $((bad_after - bad_before + sockerr)) $per_request"
}

# Mean over the alternating rounds: "rps p50ms p99ms errors round-trips-per-request".
mean() {
  printf '%s\n' "$@" | awk '{r+=$1;a+=$2;b+=$3;e+=$4;t+=$5} END{printf "%.0f %.2f %.2f %d %.3f\n", r/NR, a/NR/1000, b/NR/1000, e, t/NR}'
}

# row DB REDIS CONNS ENDPOINT "rps p50 p99 err" "page's rps …" RSS
row() {
  local rps p50 p99 err trips page_rps ratio
  read -r rps p50 p99 err trips <<<"$5"; read -r page_rps _ <<<"$6"
  ratio=$(awk -v p="$page_rps" -v h="$rps" 'BEGIN{printf "%.0f%%", 100*p/h}')
  echo "| $1 | $2 | $3 | $4 | $rps | $p50 | $p99 | $err | $trips | $ratio | $7 |" >> "$OUT"
}

bench_database() {
  local db=$1
  local dir=$WORK/$db port redis_port app_pid redis_pid
  mkdir -p "$dir"
  port=$(free_port); redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & redis_pid=$!
  PIDS+=($redis_pid)
  local env=(FEDIALT_DATA_DIR="$dir" FEDIALT_BIND="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$redis_port/0"
             FEDIALT_ALLOW_PRIVATE_NETWORK=true RUST_LOG=warn FEDIALT_REDIS_PREFIX="bench:"
             FEDIALT_METRICS_TOKEN="$METRICS_TOKEN" FEDIALT_NEAR_CACHE="${NEAR_CACHE:-true}")
  if [ "$db" = postgres ]; then
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS fedialt_bench WITH (FORCE)" -qc "CREATE DATABASE fedialt_bench" >/dev/null
    env+=(DATABASE_URL="${PG_ADMIN%/*}/fedialt_bench" FEDIALT_SECRET_KEY="$(head -c 64 /dev/urandom | base64 -w0)")
  fi
  env "${env[@]}" FEDIALT_ADMIN_PASSWORD=bench-password-123 "$BIN" create-admin --username bench --email bench@example.org >/dev/null
  env "${env[@]}" "$BIN" serve & app_pid=$!
  PIDS+=($app_pid)
  local base=http://127.0.0.1:$port jar=$dir/cookies
  wait_http "$base/healthz"
  local csrf
  csrf=$(curl -s -c "$jar" "$base/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "csrf_token=$csrf" -d username=bench -d password=bench-password-123 "$base/login"
  csrf=$(curl -s -b "$jar" "$base/account" | sed -n 's/.*name="csrf-token" content="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "csrf_token=$csrf" -d "instance_url=http://127.0.0.1:$FAKE_PORT" -d access_token=bench-token "$base/platforms"
  local cookie
  cookie=$(awk '$6=="fedialt_session"{print $7}' "$jar")
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: fedialt_session=$cookie" "$base/caption_generation")
  [ "$status" = 200 ] || { echo "the caption page answered $status, not 200" >&2; exit 1; }

  for redis_state in up stopped; do
    if [ "$redis_state" = stopped ]; then kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; fi
    for conns in 16 64; do
      local -a page_rows=() health_rows=() session_rows=()
      for _ in $(seq 1 "$ROUNDS"); do
        health_rows+=("$(run_wrk "$base/healthz" "$conns")")
        page_rows+=("$(run_wrk "$base/caption_generation" "$conns" "$cookie")")
        # /healthz carrying the session cookie: a request whose only work is loading the session.
        session_rows+=("$(run_wrk "$base/healthz" "$conns" "$cookie")")
      done
      local page health session rss
      page=$(mean "${page_rows[@]}"); health=$(mean "${health_rows[@]}"); session=$(mean "${session_rows[@]}")
      rss=$(awk '/VmHWM/{printf "%.0f", $2/1024}' /proc/$app_pid/status)
      row "$db" "$redis_state" "$conns" "/caption_generation (signed in)" "$page" "$page" "$rss"
      row "$db" "$redis_state" "$conns" "/healthz" "$health" "$page" "$rss"
      row "$db" "$redis_state" "$conns" "/healthz with the session cookie" "$session" "$page" "$rss"
    done
  done
  kill "$app_pid"; wait "$app_pid" 2>/dev/null || true
}

bench_database sqlite
bench_database postgres
{
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo "Command: DURATION=$DURATION ROUNDS=$ROUNDS NEAR_CACHE=${NEAR_CACHE:-true} bench/run.sh (wrk -t2, each endpoint run $ROUNDS times, alternating; means shown)."
} >> "$OUT"
cat "$OUT"
