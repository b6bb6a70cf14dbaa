#!/usr/bin/env bash
# Install the Mosquitto MQTT broker and its command-line clients (Debian packages).
# The system service is NOT enabled or started: the tests run their own broker
# (see .ci/start-mosquitto.sh).
set -euo pipefail

log() { echo "[install-mosquitto] $*"; }
[[ $(id -u) -eq 0 ]] || { echo "[install-mosquitto] ERROR: must run as root" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

PKGS=(mosquitto mosquitto-clients)
MISSING=()
for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done

if ((${#MISSING[@]} == 0)); then
  log "already installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${PKGS[@]}")"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the package's maintainer scripts from starting the system broker (port 1883):
# a policy-rc.d that denies service starts, only for the duration of this install.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"; chmod +x "$POLICY"; ADDED_POLICY=1
  trap '[[ $ADDED_POLICY == 1 ]] && rm -f "$POLICY"' EXIT
fi

log "installing: ${MISSING[*]}"
if ! apt-get install -y -q --no-install-recommends "${MISSING[@]}"; then
  log "install failed; running apt-get update and retrying"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${MISSING[@]}"
fi

# Do not let the system service come up on boot (harmless where systemd is absent).
if command -v systemctl >/dev/null 2>&1; then
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
  else
    systemctl disable mosquitto.service >/dev/null 2>&1 || true   # works offline (removes the wants/ link)
  fi
  log "system mosquitto.service disabled"
fi
if command -v update-rc.d >/dev/null 2>&1 && [[ -e /etc/init.d/mosquitto ]]; then
  update-rc.d mosquitto disable >/dev/null 2>&1 || true
fi

log "installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${PKGS[@]}")"
