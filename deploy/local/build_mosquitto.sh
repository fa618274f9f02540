#!/usr/bin/env bash
# Build Mosquitto (broker and the clients the stack and benchmarks run) from Debian trixie's
# source package, once per machine.
#
# Why a build: bookworm ships Mosquitto 2.0.11, which crashed here (general protection fault)
# expiring a session restored from its persistence file, so the local stack had to start
# every broker with an empty session store. Trixie's source package has 2.0.21 and every
# build dependency is in bookworm. A deb-src line for trixie (a sources file of its own, no
# `deb` line) fetches only source: the system's binaries stay bookworm's. The result is
# cached outside the repository:
#     <cache>/mosquitto/<version>/sbin/mosquitto      (cache: $KOTAFLOW_CACHE_DIR or ~/.cache/kotaflow)
#     <cache>/mosquitto/<version>/bin/mosquitto_{pub,sub,passwd}   (libmosquitto linked in)
#
# Usage: build_mosquitto.sh [--version 2.0.21] [--out DIR]
#   Lines starting with "==>" name the step being run, with the elapsed time; run from a
#   terminal, all output also goes to DIR/build.log.
#   Exits 0 without work when DIR/sbin/mosquitto already exists.
#   Needs root only for what is missing: the trixie deb-src file and the build packages.
set -euo pipefail

# shellcheck source=deploy/local/build_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/build_common.sh"
build_args mosquitto "2.0.21" "$@"
SUITE="trixie"
SOURCES_FILE="/etc/apt/sources.list.d/kotaflow-$SUITE-src.sources"
# What the build needs from bookworm: a compiler and make, cmake, OpenSSL for TLS, cJSON for
# the clients' JSON output, dpkg-dev for `apt-get source` to unpack and patch. uthash comes
# bundled with the source (WITH_BUNDLED_DEPS); no docs, websockets or libwrap are built, so
# xsltproc, docbook-xsl, libwebsockets-dev and libwrap0-dev are not needed.
PACKAGES=(build-essential cmake dpkg-dev libssl-dev libcjson-dev)
TOOLS=(mosquitto_pub mosquitto_sub mosquitto_passwd)

as_root() {
    [[ $(id -u) -eq 0 ]] || fail "$1 needs root; run once: sudo $0 --version $VERSION --out $OUT"
}
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"; }

build_begin mosquitto "$VERSION" "$OUT/sbin/mosquitto"
command -v apt-get >/dev/null || fail "apt-get not found: this build uses Debian's source package"

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    as_root "installing ${missing[*]}"
    step "installing build dependencies from bookworm: ${missing[*]}"
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}" || fail "apt-get install ${missing[*]}"
fi

has_source() { apt-cache showsrc mosquitto 2>/dev/null | grep -q "^Version: $VERSION-"; }
if ! has_source; then
    if [[ ! -f "$SOURCES_FILE" ]]; then
        as_root "adding $SOURCES_FILE"
        step "adding Debian $SUITE source packages (deb-src only) in $SOURCES_FILE"
        cat > "$SOURCES_FILE" <<EOF
# Added by kotaflow (deploy/local/build_mosquitto.sh) to build Mosquitto $VERSION from
# Debian $SUITE's source package. Source only: no deb line, the system keeps its binaries.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    as_root "apt-get update (for $SUITE's source index)"
    step "updating package lists (with $SUITE sources)"
    apt_get update
    has_source || fail "Debian $SUITE has no mosquitto $VERSION source package (apt-cache showsrc mosquitto)"
fi

step "fetching mosquitto $VERSION source (Debian $SUITE) into $BUILD_DIR"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
(cd "$BUILD_DIR" && apt-get source "mosquitto/$SUITE") || fail "apt-get source mosquitto/$SUITE"
SRC="$BUILD_DIR/mosquitto-$VERSION"
[[ -f "$SRC/CMakeLists.txt" ]] || fail "apt-get source gave no $SRC (has $SUITE moved past $VERSION?)"

# DOCUMENTATION=OFF is cmake's switch for the man pages (WITH_DOCS=no is the Makefile's);
# static libmosquitto makes the clients independent of the system's libmosquitto1 (2.0.11).
step "configuring (cmake, Release, no docs, static libmosquitto)"
cmake -S "$SRC" -B "$BUILD_DIR/out" \
    -DCMAKE_BUILD_TYPE=Release \
    -DDOCUMENTATION=OFF -DWITH_DOCS=no \
    -DWITH_STATIC_LIBRARIES=ON -DWITH_PIC=ON \
    -DWITH_WEBSOCKETS=OFF -DWITH_PLUGINS=OFF \
    || fail "cmake configure in $BUILD_DIR/out"

step "compiling mosquitto and ${TOOLS[*]} ($(nproc) jobs)"
make -C "$BUILD_DIR/out" -j"$(nproc)" mosquitto "${TOOLS[@]}" || fail "make in $BUILD_DIR/out"

version=$("$BUILD_DIR/out/src/mosquitto" -h 2>&1 | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' || true)
[[ "$version" == "$VERSION" ]] || fail "the built broker says version '$version', expected $VERSION"

mkdir -p "$OUT/bin" "$OUT/sbin"
install -m 0755 "$BUILD_DIR/out/client/mosquitto_pub" "$BUILD_DIR/out/client/mosquitto_sub" \
    "$BUILD_DIR/out/apps/mosquitto_passwd/mosquitto_passwd" "$OUT/bin/"
# The broker last: its presence is what marks the build done.
install -m 0755 "$BUILD_DIR/out/src/mosquitto" "$OUT/sbin/mosquitto.tmp"
mv "$OUT/sbin/mosquitto.tmp" "$OUT/sbin/mosquitto"
rm -rf "$BUILD_DIR"
build_info "\"source\": \"debian $SUITE\""
step "built $OUT/sbin/mosquitto in $(elapsed)"
