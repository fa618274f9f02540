#!/usr/bin/env bash
# Build InfluxDB's server (influxd) from its Go module source, once per machine.
#
# Why a build: no package registry we can reach ships an influxd binary and no container
# engine runs here, but the Go module proxy has the source and crates.io has the Rust crates
# its Flux engine links. The result is cached outside the repository:
#     <cache>/influxdb/<version>/influxd          (cache: $KOTAFLOW_CACHE_DIR or ~/.cache/kotaflow)
# Go's module and build caches and cargo's registry are left in place, so a rebuild is cheap.
#
# Usage: build_influxdb.sh [--version v2.7.12] [--out DIR]
#   Lines starting with "==>" name the step being run, with the elapsed time; run from a
#   terminal, all output also goes to DIR/build.log.
#   Exits 0 without work when DIR/influxd already exists.
set -euo pipefail

# shellcheck source=deploy/local/build_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/build_common.sh"
build_args influxdb "v2.7.12" "$@"
MODULE="github.com/influxdata/influxdb/v2"

build_begin influxd "$VERSION" "$OUT/influxd"
# Cargo's link-time optimisation and Go's final link print nothing for minutes.
build_heartbeat

# Toolchains: the machine's Go and Rust; never let either fetch another toolchain.
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
export GOTOOLCHAIN=local
# libflux pins an old Rust in rust-toolchain.toml that cannot be installed here.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"
export CGO_ENABLED=1
command -v go >/dev/null || fail "go not found (need Go >= 1.23 on PATH or in /usr/local/go/bin)"
command -v cargo >/dev/null || fail "cargo not found (need Rust stable via rustup)"
command -v cc >/dev/null || fail "a C compiler (cc) is needed for cgo: apt-get install build-essential"

step "toolchains: $(go version | cut -d' ' -f3-), $(rustc --version), $(cc --version | head -1)"

step "fetching $MODULE@$VERSION source from the Go module proxy"
MODULE_DIR=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[[ -n "$MODULE_DIR" && -d "$MODULE_DIR" ]] || fail "go mod download $MODULE@$VERSION gave no source directory"

# The module cache is read-only and go.mod has a replace directive (so `go install` refuses):
# build from a writable copy instead.
step "copying source to $BUILD_DIR/src"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
cp -r "$MODULE_DIR" "$BUILD_DIR/src"
chmod -R u+w "$BUILD_DIR/src"
# Module zips drop the executable bit, and cgo execs $PKG_CONFIG directly.
chmod +x "$BUILD_DIR/src/scripts/pkg-config.sh"
cd "$BUILD_DIR/src"

# Flux's Rust library (libflux) is normally built silently inside `go build` by InfluxData's
# pkg-config wrapper. Building it first, in the very directory the wrapper uses
# (<GOCACHE>/pkgconfig/<module>@<version>/libflux), streams cargo's progress and pins a Rust
# failure to its own step; the wrapper's own cargo run then finds it up to date.
FLUX_VERSION=$(go list -m -f '{{.Version}}' github.com/influxdata/flux)
FLUX_DIR=$(go mod download -json "github.com/influxdata/flux@$FLUX_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\{0,1\}$/\1/p')
FLUX_COPY="$(go env GOCACHE)/pkgconfig/github.com/influxdata/flux@$FLUX_VERSION"
if [[ ! -d "$FLUX_COPY" ]]; then
    mkdir -p "$(dirname "$FLUX_COPY")"
    cp -r "$FLUX_DIR" "$FLUX_COPY.tmp"
    chmod -R u+w "$FLUX_COPY.tmp"
    mv "$FLUX_COPY.tmp" "$FLUX_COPY"
fi
# flux-core says `deny(warnings)` under its "strict" feature, which flux turns on. Lints that
# rustc gained after the pinned 1.72 (mismatched_lifetime_syntaxes, dead_code on structs never
# constructed) would fail it. Cap lints at "warn" for the crates cargo does not cap itself, so
# every real error stays an error. A wrapper, not RUSTFLAGS: with --target, RUSTFLAGS skips
# build dependencies, and flux's build script depends on flux-core. Exported so that the cargo
# run inside `go build` sees the same setup and finds libflux up to date.
mkdir -p "$OUT/tools"
cat > "$OUT/tools/rustc-cap-lints" <<'WRAPPER'
#!/bin/sh
# RUSTC_WRAPPER for libflux: cargo runs "$0 rustc ARGS"; add --cap-lints warn to compilations.
case " $* " in
    *" --cap-lints "*) exec "$@" ;;
    *" --crate-name "*) exec "$@" --cap-lints warn ;;
    *) exec "$@" ;;
esac
WRAPPER
chmod +x "$OUT/tools/rustc-cap-lints"
export RUSTC_WRAPPER="$OUT/tools/rustc-cap-lints"
RUST_TARGET=$(rustc -vV | sed -n 's/^host: //p')
step "building libflux (Flux $FLUX_VERSION, Rust, target $RUST_TARGET) - the slow part"
(cd "$FLUX_COPY/libflux" && cargo build --release --target "$RUST_TARGET") \
    || fail "cargo build of libflux in $FLUX_COPY/libflux (see $LOG)"

step "building influxd $VERSION (Go, without the web UI)"
export PKG_CONFIG="$BUILD_DIR/src/scripts/pkg-config.sh"
go build -v \
    -tags sqlite_foreign_keys,sqlite_json \
    -ldflags "-s -w -X main.version=$VERSION -X main.commit=$VERSION-module" \
    -o "$OUT/influxd.tmp" ./cmd/influxd \
    || fail "go build ./cmd/influxd in $BUILD_DIR/src (see $LOG)"

"$OUT/influxd.tmp" version || fail "the built influxd does not run"
mv "$OUT/influxd.tmp" "$OUT/influxd"
rm -rf "$BUILD_DIR"
build_info
step "built $OUT/influxd in $(elapsed)"
