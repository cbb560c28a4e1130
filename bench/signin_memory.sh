#!/usr/bin/env bash
# Peak memory of `fedialt serve` under a burst of parallel sign-ins (unknown usernames, each from
# its own forwarded address, so the throttle lets them through and every one wants an Argon2
# check). Prints the status counts and the process's peak RSS (VmHWM).
#
#   bench/signin_memory.sh            # 200 at once
#   PARALLEL=400 bench/signin_memory.sh
#   BIN=target/debug/fedialt bench/signin_memory.sh   # an existing build (dependencies, Argon2
#                                                     # included, are optimised in debug builds too)
set -euo pipefail
cd "$(dirname "$0")/.."
PARALLEL=${PARALLEL:-200}
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --quiet
  BIN=$PWD/target/release/fedialt
fi
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
FEDIALT_DATA_DIR=$WORK REDIS_URL=none FEDIALT_BIND=127.0.0.1:$PORT FEDIALT_TRUSTED_PROXIES=127.0.0.1 \
  "$BIN" serve >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(curl -s -c "$WORK/jar" "http://127.0.0.1:$PORT/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
before=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
export PORT TOKEN WORK
seq 1 "$PARALLEL" | xargs -P "$PARALLEL" -I{} sh -c 'n={}; curl -s -o /dev/null -w "%{http_code}\n" \
  -b "$WORK/jar" -H "X-Forwarded-For: 198.18.$((n / 250)).$((n % 250 + 1))" \
  --data-urlencode "username=nobody$n" --data-urlencode "password=wrong password $n" \
  --data-urlencode "csrf_token=$TOKEN" "http://127.0.0.1:$PORT/login"' > "$WORK/codes" 2>/dev/null || true
peak=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
echo "parallel sign-ins: $PARALLEL"
sort "$WORK/codes" | uniq -c | awk '{print "  HTTP " $2 ": " $1}'
echo "RSS before: $((before / 1024)) MiB; peak RSS: $((peak / 1024)) MiB"
