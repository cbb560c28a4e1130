#!/usr/bin/env bash
# Runs every test against real PostgreSQL and Redis. Starts whichever is down, and installs it with
# apt-get where it is missing, so that a fresh machine passes with this one command.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # wait_for DESCRIPTION COMMAND…: up to 30 s for COMMAND to succeed
  local what=$1; shift
  for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "$what did not come up"; return 1
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }

ensure_redis() {
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  command -v redis-cli >/dev/null || apt_install redis-tools
  if ! redis_up; then
    log "starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log \
      || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
           --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis_up
  fi
}

pg_up() { psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' | grep -q 1; }

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null || { log "installing PostgreSQL"; apt_install postgresql; }
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
  fi
  if ! pg_up; then
    # A fresh install asks for passwords on 127.0.0.1; tests connect as postgres with trust, as here.
    log "allowing trust authentication for local connections"
    local hba
    hba=$(su postgres -c "psql -Atc 'SHOW hba_file'")
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    su postgres -c "psql -Atc 'SELECT pg_reload_conf()'" >/dev/null
    wait_for "PostgreSQL trust auth" pg_up
  fi
  # Databases that killed test runs left behind.
  psql -h 127.0.0.1 -U postgres -d postgres -Atc \
    "SELECT 'DROP DATABASE ' || datname || ' WITH (FORCE);' FROM pg_database WHERE datname LIKE 'fedialt_test_%'" \
    | psql -h 127.0.0.1 -U postgres -d postgres -q >/dev/null || true
}

ensure_redis
ensure_postgres
# The Redis-over-TLS test makes a self-signed certificate with it.
command -v openssl >/dev/null || apt_install openssl
export TEST_POSTGRES_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
exec cargo test --locked "$@"
