#!/usr/bin/env bash
# Tier 1: build TimescaleDB 2.28.3 WITH its community (TSL) features from the vendored tarball
# (../shared/vendor relative to the checkout) into a private COPY of the PostgreSQL 15 installation.
#
# Why a copy: tier 2 (Debian's Apache-only TimescaleDB) lives in /usr/lib/postgresql/15. Installing
# 2.28.3 there would change what every new database on the tier-2 server gets. PostgreSQL binaries
# find their lib/ and share/ relative to their own path, so a cp -a of the installation under
# $TSDB1_PREFIX is a second, independent PostgreSQL 15 whose pkglibdir/sharedir are inside the copy.
#
#   copy     : $TSDB1_PREFIX/usr/{lib,share,include}/postgresql/15  (default /opt/pg15-tsdb-community)
#   build    : /var/tmp/iot-ci-tsdb1-build
#   tarball  : $TSDB1_TARBALL (default ../shared/vendor/timescaledb-2.28.3.tar.xz from the checkout)
#
# Idempotent: does nothing if the copy already has timescaledb 2.28.3 (TSDB1_FORCE=1 rebuilds).
# Prints the build time so it stays visible in the CI log.
set -euo pipefail

log() { echo "[install-timescaledb-community] $*"; }
die() { echo "[install-timescaledb-community] ERROR: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root"

VERSION=2.28.3
SHA256=b312fc6f4296c6ccc35d82a24fc79d83dabdb5b34135d8508562801b5ab2237f
PG_MAJOR=15   # 2.28.x is the last line supporting PostgreSQL 15
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
TARBALL=${TSDB1_TARBALL:-$CHECKOUT/../shared/vendor/timescaledb-$VERSION.tar.xz}
PREFIX=${TSDB1_PREFIX:-/opt/pg15-tsdb-community}
BUILD_ROOT=${TSDB1_BUILD_DIR:-/var/tmp/iot-ci-tsdb1-build}
BIN=$PREFIX/usr/lib/postgresql/$PG_MAJOR/bin
CONTROL=$PREFIX/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control

if [[ -f $CONTROL && ${TSDB1_FORCE:-0} != 1 ]] && grep -q "default_version = '$VERSION'" "$CONTROL" \
   && [[ -f $PREFIX/usr/lib/postgresql/$PG_MAJOR/lib/timescaledb-tsl-$VERSION.so ]]; then
  log "TimescaleDB $VERSION (community) already installed in $PREFIX - nothing to do"
  exit 0
fi

[[ -f $TARBALL ]] || die "vendored source $TARBALL is missing. Tier 1 is built from it (see ../shared/vendor/README.md);
  put timescaledb-$VERSION.tar.xz there or set TSDB1_TARBALL."
echo "$SHA256  $TARBALL" | sha256sum -c --quiet - || die "$TARBALL does not match the expected sha256 $SHA256"
[[ -x /usr/lib/postgresql/$PG_MAJOR/bin/postgres ]] || die "PostgreSQL $PG_MAJOR server is not installed"

# Build dependencies (Debian). Installing postgresql-server-dev-15 may upgrade the server's minor version.
DEPS=(gcc make cmake "postgresql-server-dev-$PG_MAJOR" libssl-dev libkrb5-dev)
MISSING=()
for p in "${DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
  log "installing build dependencies: ${MISSING[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${MISSING[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${MISSING[@]}"; }
fi

# ---------------------------------------------------------------- the private PostgreSQL copy
log "copying PostgreSQL $PG_MAJOR to $PREFIX (lib, share, include)"
rm -rf "$PREFIX"
mkdir -p "$PREFIX/usr/lib/postgresql" "$PREFIX/usr/share/postgresql" "$PREFIX/usr/include"
cp -a "/usr/lib/postgresql/$PG_MAJOR" "$PREFIX/usr/lib/postgresql/"
cp -a "/usr/share/postgresql/$PG_MAJOR" "$PREFIX/usr/share/postgresql/"
cp -a /usr/include/postgresql "$PREFIX/usr/include/"
# Drop whatever TimescaleDB the system copy had (tier 2's Apache build): tier 1 gets only its own.
rm -f "$PREFIX/usr/lib/postgresql/$PG_MAJOR/lib/"timescaledb*.so
rm -f "$PREFIX/usr/share/postgresql/$PG_MAJOR/extension/"timescaledb*

PG_CONFIG=$BIN/pg_config
for what in pkglibdir sharedir includedir-server; do
  dir=$("$PG_CONFIG" --$what)
  [[ $dir == "$PREFIX"/* ]] || die "$PG_CONFIG --$what is $dir, not inside $PREFIX (installation not relocatable?)"
  log "pg_config --$what = $dir"
done

# ---------------------------------------------------------------- build
build_started=$(date +%s)
log "unpacking $TARBALL into $BUILD_ROOT"
rm -rf "$BUILD_ROOT"; mkdir -p "$BUILD_ROOT"
tar xJf "$TARBALL" -C "$BUILD_ROOT"
SRC=$BUILD_ROOT/timescaledb-$VERSION
[[ -x $SRC/bootstrap ]] || die "no ./bootstrap in $SRC"
cd "$SRC"
log "configuring (community features on: no -DAPACHE_ONLY)"
BUILD_FORCE_REMOVE=true ./bootstrap -DPG_CONFIG="$PG_CONFIG" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DGENERATE_DOWNGRADE_SCRIPT=OFF </dev/null >"$BUILD_ROOT/configure.log" 2>&1 \
  || { tail -n 40 "$BUILD_ROOT/configure.log" >&2; die "configure failed (log: $BUILD_ROOT/configure.log)"; }
log "building (make -j$(nproc)), log: $BUILD_ROOT/make.log"
make -C build -j"$(nproc)" >"$BUILD_ROOT/make.log" 2>&1 \
  || { tail -n 40 "$BUILD_ROOT/make.log" >&2; die "make failed (log: $BUILD_ROOT/make.log)"; }
make -C build install >"$BUILD_ROOT/install.log" 2>&1 \
  || { tail -n 40 "$BUILD_ROOT/install.log" >&2; die "make install failed"; }

[[ -f $CONTROL ]] || die "install finished but $CONTROL is missing"
[[ -f $PREFIX/usr/lib/postgresql/$PG_MAJOR/lib/timescaledb-tsl-$VERSION.so ]] \
  || die "timescaledb-tsl-$VERSION.so was not built (community features missing)"
[[ ! -f /usr/lib/postgresql/$PG_MAJOR/lib/timescaledb-tsl-$VERSION.so ]] \
  || log "WARNING: the system PostgreSQL also has timescaledb-tsl-$VERSION.so (not installed by this script)"
log "built and installed TimescaleDB $VERSION with community features in $(( $(date +%s) - build_started )) s ($PREFIX)"
