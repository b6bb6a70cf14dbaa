#!/usr/bin/env bash
# Start a Mosquitto broker for the tests on 127.0.0.1:1884 (background daemon).
#   config : /var/tmp/iot-ci-mosquitto/mosquitto.conf (rewritten on each start)
#   pid    : /var/tmp/iot-ci-mosquitto/pid
#   log    : /var/tmp/iot-ci-mosquitto/mosquitto.log
# Idempotent: if our broker is already running and answering, just prints the URL.
# Env: CI_MQTT_PORT (1884), CI_MQTT_DIR (/var/tmp/iot-ci-mosquitto).
# Requires: .ci/install-mosquitto.sh to have run.
set -euo pipefail

log() { echo "[start-mosquitto] $*"; }
die() { echo "[start-mosquitto] ERROR: $*" >&2; exit 1; }

PORT=${CI_MQTT_PORT:-1884}
DIR=${CI_MQTT_DIR:-/var/tmp/iot-ci-mosquitto}
CONF=$DIR/mosquitto.conf
PIDFILE=$DIR/pid
LOGFILE=$DIR/mosquitto.log
URL="mqtt://127.0.0.1:$PORT"

MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ -x $MOSQUITTO ]] || die "mosquitto not installed - run .ci/install-mosquitto.sh first"
command -v mosquitto_sub >/dev/null || die "mosquitto_sub not installed - run .ci/install-mosquitto.sh first"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
# a real MQTT round trip: mosquitto publishes $SYS/broker/version as a retained message
broker_answers() {
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -i "ci-probe-$$" -t '$SYS/broker/version' -C 1 -W 3 >/dev/null 2>&1
}
our_pid() {
  local pid
  [[ -s $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && grep -qa mosquitto "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

if pid=$(our_pid) && port_open; then
  log "mosquitto already running (pid $pid) on 127.0.0.1:$PORT"
  echo "$URL"
  exit 0
fi
if port_open; then
  if broker_answers; then
    log "WARNING: an MQTT broker not started by this script already listens on 127.0.0.1:$PORT; using it"
    echo "$URL"
    exit 0
  fi
  die "127.0.0.1:$PORT is in use by something that is not an MQTT broker"
fi

mkdir -p "$DIR"
rm -f "$PIDFILE"
log "writing $CONF"
cat > "$CONF" <<CONF
# Written by .ci/start-mosquitto.sh - broker for tests only.
listener $PORT 127.0.0.1
allow_anonymous true

persistence true
persistence_location $DIR/
persistence_file mosquitto.db

pid_file $PIDFILE
log_dest file $LOGFILE
log_type error
log_type warning
log_type notice
log_type information
connection_messages true

# Queue limits are deliberately left at mosquitto's documented defaults:
#   max_inflight_messages 20    (outgoing QoS 1/2 messages in flight per client)
#   max_queued_messages   1000  (QoS 1/2 messages queued per client beyond those in
#                                flight; further messages are silently DROPPED)
# (QoS 0 messages are not queued for offline clients: queue_qos0_messages false)
CONF

# mosquitto started as root drops privileges to user "mosquitto": it must own the dir.
if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto: "$DIR"
  chown root: "$CONF"; chmod 0644 "$CONF"
fi

log "starting mosquitto on 127.0.0.1:$PORT (log: $LOGFILE)"
"$MOSQUITTO" -c "$CONF" -d

for _ in $(seq 1 100); do           # up to ~10 s
  port_open && break
  sleep 0.1
done
port_open || { tail -n 20 "$LOGFILE" >&2 || true; die "mosquitto did not open port $PORT"; }
broker_answers || { tail -n 20 "$LOGFILE" >&2 || true; die "port $PORT open but no MQTT answer"; }

for _ in $(seq 1 20); do [[ -s $PIDFILE ]] && break; sleep 0.1; done
pid=$(our_pid) || die "mosquitto is up but $PIDFILE does not hold its pid"
log "mosquitto running (pid $pid)"
echo "$URL"
