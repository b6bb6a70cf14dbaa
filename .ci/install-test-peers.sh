#!/usr/bin/env bash
# Independent protocol implementations the tests use as peers (Debian packages):
#   python3-pymodbus: a second Modbus TCP server and client beside our own simulator.
#   python3-serial, python3-serial-asyncio: pymodbus.client imports them (Recommends of python3-pymodbus, skipped by --no-install-recommends).
# The Modbus suite skips that test, with the reason printed, when the package is missing.
set -euo pipefail

log() { echo "[install-test-peers] $*"; }
[[ $(id -u) -eq 0 ]] || { echo "[install-test-peers] ERROR: must run as root" >&2; exit 1; }

if /usr/bin/python3 -c 'import pymodbus.client' 2>/dev/null; then
  log "python3-pymodbus already installed ($(/usr/bin/python3 -c 'import pymodbus; print(pymodbus.__version__)'))"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
PKGS=(python3-pymodbus python3-serial python3-serial-asyncio)
if { apt-get install -y --no-install-recommends "${PKGS[@]}" >/tmp/install-test-peers.log 2>&1 \
     || { apt-get update >>/tmp/install-test-peers.log 2>&1 && apt-get install -y --no-install-recommends "${PKGS[@]}" >>/tmp/install-test-peers.log 2>&1; }; } \
   && /usr/bin/python3 -c 'import pymodbus.client, pymodbus.server' 2>>/tmp/install-test-peers.log; then
  log "installed python3-pymodbus $(/usr/bin/python3 -c 'import pymodbus; print(pymodbus.__version__)')"
else
  log "WARNING: python3-pymodbus could not be installed (see /tmp/install-test-peers.log); its Modbus test will be skipped"
fi
