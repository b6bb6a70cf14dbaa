#!/usr/bin/env bash
# Install TimescaleDB (Apache-2.0-only build) for the locally installed PostgreSQL server.
#
# Debian 12 (bookworm) does not package TimescaleDB, so we add a *deb-src only* entry for
# Debian 13 (trixie) on the same mirror this machine already uses, fetch the trixie source
# package with `apt-get source`, and build it against the local PostgreSQL with cmake.
# On Debian 13+ we add deb-src for the native release and build the same way (this works
# for whatever PostgreSQL major is installed, e.g. 15 from another source or the distro's 17).
#
# No binary `deb` line for another release is ever added (that could upgrade the system).
#
# Env:
#   PG_MAJOR   PostgreSQL major to build for. Default: 15 if its server is installed,
#              otherwise the highest major under /usr/lib/postgresql with a server binary.
#   TSDB_BUILD_DIR  build directory (default /var/tmp/iot-ci-timescaledb-build)
#   TSDB_FORCE=1    rebuild even if already installed
set -euo pipefail

log() { echo "[install-timescaledb] $*"; }
die() { echo "[install-timescaledb] ERROR: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"

# ---------------------------------------------------------------- PostgreSQL major
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
[[ -n $PG_MAJOR ]] || die "no PostgreSQL server found under /usr/lib/postgresql (install postgresql-NN first)"
[[ -x /usr/lib/postgresql/$PG_MAJOR/bin/postgres ]] || die "PostgreSQL $PG_MAJOR server not installed"
log "target PostgreSQL major: $PG_MAJOR"

CONTROL=/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control
PKGLIB=/usr/lib/postgresql/$PG_MAJOR/lib

installed_version() { sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$CONTROL"; }

if [[ -f $CONTROL && -f $PKGLIB/timescaledb.so && ${TSDB_FORCE:-0} != 1 ]]; then
  log "TimescaleDB $(installed_version) already installed for PostgreSQL $PG_MAJOR ($CONTROL) - nothing to do"
  exit 0
fi

# ---------------------------------------------------------------- apt source (deb-src only)
. /etc/os-release
CODENAME=${VERSION_CODENAME:-}
[[ -n $CODENAME ]] || die "cannot determine Debian codename from /etc/os-release"
case "$CODENAME" in
  bookworm) SRC_SUITE=trixie ;;      # TimescaleDB first packaged in Debian 13
  *)        SRC_SUITE=$CODENAME ;;   # trixie and later: the native release has it
esac
log "host release: $CODENAME (Debian $(cat /etc/debian_version)); source suite: $SRC_SUITE"

# Find the mirror URI (and keyring) this machine uses for its main Debian archive ($CODENAME).
MIRROR="" KEYRING=""
find_mirror() {
  local f
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 stanzas; print "URI<TAB>SignedBy" for stanzas whose Suites contain $CODENAME
    local out
    out=$(awk -v code="$CODENAME" '
      function flush() {
        if (uris != "" && (" " suites " ") ~ (" " code " ") && enabled != "no") {
          split(uris, u, /[ \t]+/); print u[1] "\t" signed; found = 1
        }
        uris = ""; suites = ""; signed = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "uris:"      { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
      tolower($1) == "suites:"    { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
      tolower($1) == "signed-by:" { sub(/^[^:]*:[ \t]*/, ""); signed = $0 }
      tolower($1) == "enabled:"   { sub(/^[^:]*:[ \t]*/, ""); enabled = tolower($0) }
      END { flush() }' "$f" | head -n1)
    if [[ -n $out ]]; then MIRROR=${out%%$'\t'*}; KEYRING=${out#*$'\t'}; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    # one-line format: deb [opts] URI suite components...
    local line
    line=$(sed -E 's/#.*//' "$f" | awk -v code="$CODENAME" '
      $1 == "deb" || $1 == "deb-src" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i+1) == code) { print $i; exit }
      }')
    if [[ -n $line ]]; then MIRROR=$line; return; fi
  done
}
find_mirror
[[ -n $MIRROR ]] || die "could not find the Debian mirror for '$CODENAME' in /etc/apt/sources.list{,.d/}"
MIRROR=${MIRROR%/}
if [[ -z $KEYRING && -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
  KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
fi
log "using mirror: $MIRROR (keyring: ${KEYRING:-apt default})"

SRC_FILE=/etc/apt/sources.list.d/iot-ci-$SRC_SUITE-src.sources
have_deb_src() {
  # already have a deb-src for $SRC_SUITE anywhere? (deb822 or one-line)
  grep -rqsE "^[[:space:]]*deb-src([[:space:]]+\[[^]]*\])?[[:space:]]+[^[:space:]]+[[:space:]]+$SRC_SUITE([[:space:]]|$)" \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null && return 0
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v s="$SRC_SUITE" '
      function flush() { if ((" " types " ") ~ / deb-src / && (" " suites " ") ~ (" " s " ") && enabled != "no") hit = 1
                         types = ""; suites = ""; enabled = "" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"   { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
      tolower($1) == "suites:"  { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
      tolower($1) == "enabled:" { sub(/^[^:]*:[ \t]*/, ""); enabled = tolower($0) }
      END { flush(); exit hit ? 0 : 1 }' "$f" && return 0
  done
  return 1
}

NEED_UPDATE=0
if [[ -f $SRC_FILE ]]; then
  log "deb-src entry already present: $SRC_FILE"
elif have_deb_src; then
  log "a deb-src entry for $SRC_SUITE already exists - not adding another"
else
  log "adding deb-src (source packages only, no binaries) for $SRC_SUITE: $SRC_FILE"
  {
    echo "# Added by .ci/install-timescaledb.sh: SOURCE packages only (to build TimescaleDB)."
    echo "# Never add 'deb' here: binary packages from $SRC_SUITE would upgrade the system."
    echo "Types: deb-src"
    echo "URIs: $MIRROR"
    echo "Suites: $SRC_SUITE"
    echo "Components: main"
    [[ -n $KEYRING ]] && echo "Signed-By: $KEYRING"
  } > "$SRC_FILE"
  NEED_UPDATE=1
fi
log "source entry in use:"; sed 's/^/    /' "$SRC_FILE" 2>/dev/null || true

# Sources index for the suite present? (e.g. deb.debian.org_debian_dists_trixie_main_source_Sources*)
if ! ls /var/lib/apt/lists/*_dists_"${SRC_SUITE}"_main_source_Sources* >/dev/null 2>&1; then
  NEED_UPDATE=1
fi

export DEBIAN_FRONTEND=noninteractive
if [[ $NEED_UPDATE == 1 ]]; then
  log "apt-get update"
  apt-get update -q
fi

# Safety net: make sure no binary package from $SRC_SUITE is installable (we only added deb-src).
if [[ $SRC_SUITE != "$CODENAME" ]] && apt-cache policy 2>/dev/null | grep -qE "[[:space:]]$SRC_SUITE/main amd64 Packages|n=$SRC_SUITE,.*,b=(amd64|all)"; then
  die "a binary 'deb' source for $SRC_SUITE is configured - refusing to continue (it would upgrade the system)"
fi

# ---------------------------------------------------------------- build dependencies
DEPS=(build-essential gcc make cmake dpkg-dev "postgresql-server-dev-$PG_MAJOR" libssl-dev libkrb5-dev libpq-dev)
MISSING=()
for p in "${DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
  log "installing build dependencies: ${MISSING[*]}"
  if ! apt-get install -y -q --no-install-recommends "${MISSING[@]}"; then
    log "install failed; refreshing package lists and retrying"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${MISSING[@]}"
  fi
else
  log "build dependencies already installed"
fi

# Note if the distro offers a ready binary package for this major (we still build from source).
if apt-cache show "postgresql-$PG_MAJOR-timescaledb" >/dev/null 2>&1; then
  log "note: distro binary package postgresql-$PG_MAJOR-timescaledb exists; building from source anyway (Apache-only, pinned to this script)"
fi

# ---------------------------------------------------------------- fetch source & build
BUILD_ROOT=${TSDB_BUILD_DIR:-/var/tmp/iot-ci-timescaledb-build}
log "fetching source package 'timescaledb' from $SRC_SUITE into $BUILD_ROOT"
rm -rf "$BUILD_ROOT"
mkdir -p "$BUILD_ROOT"
chown _apt "$BUILD_ROOT" 2>/dev/null || true   # lets apt download sandboxed (avoids a warning)
cd "$BUILD_ROOT"
apt-get source -q --only-source "timescaledb/$SRC_SUITE" 2>&1 | sed 's/^/    /'
SRC_DIR=$(find "$BUILD_ROOT" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)
[[ -n $SRC_DIR && -x $SRC_DIR/bootstrap ]] || die "source tree with ./bootstrap not found in $BUILD_ROOT"
log "source tree: $SRC_DIR"

cd "$SRC_DIR"
log "configuring: ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DPG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
BUILD_FORCE_REMOVE=true ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" </dev/null
log "building and installing (make -C build -j$(nproc) install)"
make -C build -j"$(nproc)" install

[[ -f $CONTROL ]] || die "install finished but $CONTROL is missing"
log "installed TimescaleDB $(installed_version) (Apache-only) for PostgreSQL $PG_MAJOR"
