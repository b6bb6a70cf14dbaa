#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster for the tests, with TimescaleDB preloaded.
#
#   CI_PG_TIER=2 (default): system PostgreSQL + Debian's Apache-only TimescaleDB (.ci/install-timescaledb.sh)
#     data dir : /var/tmp/iot-ci-pg/data   (initdb'd on first run, owned by postgres)
#     log      : /var/tmp/iot-ci-pg/postgres.log
#     listen   : 127.0.0.1:5433 only (unix socket in /var/tmp/iot-ci-pg/run)
#   CI_PG_TIER=1: the private PostgreSQL 15 copy with TimescaleDB 2.28.3 community build
#     (.ci/install-timescaledb-community.sh), timescaledb.license = 'timescale'
#     data dir : /var/tmp/iot-ci-pg1/data, listen 127.0.0.1:5434
#   auth     : TCP from 127.0.0.1 -> scram-sha-256 (postgres/postgres); unix socket -> trust
#   tuned for test speed: fsync/synchronous_commit/full_page_writes off (NOT crash-safe)
#
# Idempotent: if the server is already accepting connections it just prints the URL.
# Env: CI_PG_TIER (2), PG_MAJOR (default: 15 if installed, else highest under /usr/lib/postgresql),
#      CI_PG_PORT (5433 / tier 1: 5434), CI_PG_ROOT (/var/tmp/iot-ci-pg / tier 1: /var/tmp/iot-ci-pg1),
#      TSDB1_PREFIX (/opt/pg15-tsdb-community).
# Requires: .ci/install-timescaledb.sh (tier 2) or .ci/install-timescaledb-community.sh (tier 1) to have run.
set -euo pipefail

log() { echo "[start-postgres] $*"; }
die() { echo "[start-postgres] ERROR: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root"

TIER=${CI_PG_TIER:-2}
case "$TIER" in
  1) PORT=${CI_PG_PORT:-5434}; ROOT=${CI_PG_ROOT:-/var/tmp/iot-ci-pg1}; LICENSE=timescale
     PG_PREFIX=${TSDB1_PREFIX:-/opt/pg15-tsdb-community}; PG_MAJOR=15 ;;
  # The Apache-only build has no timescaledb.license setting at all: none is written for tier 2.
  2) PORT=${CI_PG_PORT:-5433}; ROOT=${CI_PG_ROOT:-/var/tmp/iot-ci-pg}; LICENSE=; PG_PREFIX= ;;
  *) die "CI_PG_TIER must be 1 or 2, not '$TIER'" ;;
esac
DATA=$ROOT/data
RUN=$ROOT/run
LOGFILE=$ROOT/postgres.log
URL="postgres://postgres:postgres@127.0.0.1:$PORT/postgres"

detect_pg_major() {
  if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then echo 15; return; fi
  local best="" d v
  for d in /usr/lib/postgresql/*/; do
    v=$(basename "$d")
    [[ $v =~ ^[0-9]+$ && -x /usr/lib/postgresql/$v/bin/postgres ]] || continue
    if [[ -z $best || $v -gt $best ]]; then best=$v; fi
  done
  echo "$best"
}
PG_MAJOR=${PG_MAJOR:-$(detect_pg_major)}
[[ -n $PG_MAJOR && -x $PG_PREFIX/usr/lib/postgresql/$PG_MAJOR/bin/postgres ]] \
  || die "no PostgreSQL $PG_MAJOR server under ${PG_PREFIX:-/}usr/lib/postgresql"
BIN=$PG_PREFIX/usr/lib/postgresql/$PG_MAJOR/bin

cd /   # the postgres user may not be able to read the caller's cwd
as_pg() { runuser -u postgres -- "$@"; }
psql_sock() { as_pg "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  log "PostgreSQL already accepting connections on 127.0.0.1:$PORT"
  if ! PGPASSWORD=postgres "$BIN/psql" "$URL" -XAtqc "show shared_preload_libraries" 2>/dev/null | grep -q timescaledb; then
    log "WARNING: the server on port $PORT does not preload timescaledb (or rejects postgres/postgres) - not ours?"
  fi
  echo "$URL"
  exit 0
fi

if [[ $TIER == 1 ]]; then
  [[ -f $PG_PREFIX/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control ]] \
    || die "TimescaleDB (community) is not installed in $PG_PREFIX - run .ci/install-timescaledb-community.sh first"
else
  [[ -f /usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control ]] \
    || die "TimescaleDB is not installed for PostgreSQL $PG_MAJOR - run .ci/install-timescaledb.sh first"
fi

mkdir -p "$ROOT" "$RUN"
chown postgres:postgres "$ROOT" "$RUN"
chmod 0755 "$ROOT"

if [[ ! -s $DATA/PG_VERSION ]]; then
  log "initdb (PostgreSQL $PG_MAJOR, tier $TIER, $BIN) in $DATA"
  rm -rf "$DATA"
  install -d -o postgres -g postgres -m 0700 "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$ROOT/initdb.log" 2>&1 \
    || { cat "$ROOT/initdb.log" >&2; die "initdb failed"; }
elif [[ $(cat "$DATA/PG_VERSION") != "$PG_MAJOR" ]]; then
  die "$DATA is a PostgreSQL $(cat "$DATA/PG_VERSION") cluster, not $PG_MAJOR; remove $ROOT to recreate it"
else
  log "using existing cluster in $DATA"
fi

# Our settings live in ci.conf, included from postgresql.conf (rewritten on every start).
log "writing $DATA/ci.conf"
cat > "$DATA/ci.conf" <<CONF
# Written by .ci/start-postgres.sh - test-only settings.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 200
shared_preload_libraries = 'timescaledb'
${LICENSE:+timescaledb.license = '$LICENSE'}
timescaledb.telemetry_level = off
# each database with the extension gets a scheduler background worker
timescaledb.max_background_workers = 16
max_worker_processes = 24
# speed over durability (test data only)
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
CONF
chown postgres:postgres "$DATA/ci.conf"
grep -q "^include_if_exists = 'ci.conf'" "$DATA/postgresql.conf" \
  || echo "include_if_exists = 'ci.conf'" >> "$DATA/postgresql.conf"

cat > "$DATA/pg_hba.conf" <<HBA
# Written by .ci/start-postgres.sh
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
HBA
chown postgres:postgres "$DATA/pg_hba.conf"

log "starting PostgreSQL $PG_MAJOR (tier $TIER) on 127.0.0.1:$PORT (log: $LOGFILE)"
touch "$LOGFILE"; chown postgres:postgres "$LOGFILE"
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 -s start \
  || { tail -n 30 "$LOGFILE" >&2; die "pg_ctl start failed"; }

for _ in $(seq 1 60); do
  "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
  sleep 1
done
"$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" || { tail -n 30 "$LOGFILE" >&2; die "server not ready after 60s"; }

log "setting password for role postgres"
psql_sock -d postgres -c "ALTER ROLE postgres PASSWORD 'postgres'"

log "verifying CREATE EXTENSION timescaledb in a scratch database (over TCP with the password)"
export PGPASSWORD=postgres PGOPTIONS="-c client_min_messages=warning"
SCRATCH=ci_tsdb_check
"$BIN/psql" "$URL" -Xq -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $SCRATCH" -c "CREATE DATABASE $SCRATCH"
VER=$("$BIN/psql" "postgres://postgres:postgres@127.0.0.1:$PORT/$SCRATCH" -XAtq -v ON_ERROR_STOP=1 \
  -c "SET client_min_messages = warning" -c "CREATE EXTENSION timescaledb" \
  -c "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
"$BIN/psql" "$URL" -Xq -v ON_ERROR_STOP=1 -c "DROP DATABASE $SCRATCH WITH (FORCE)"
if [[ -n $LICENSE ]]; then
  LIC=$("$BIN/psql" "$URL" -XAtq -c "show timescaledb.license")
  [[ $LIC == "$LICENSE" ]] || die "timescaledb.license is '$LIC', expected '$LICENSE'"
  log "ok: timescaledb $VER loads, license $LIC (scratch database dropped)"
else
  log "ok: timescaledb $VER loads (scratch database dropped)"
fi

echo "$URL"
