#!/usr/bin/env bash
# Build Telegraf from its Go module source with only the plugins `kotaflow bench peers` uses,
# once per machine.
#
# Why a build: no registry we reach ships a telegraf binary, but the Go module proxy has
# github.com/influxdata/telegraf. Telegraf's "custom" build tag leaves every plugin out
# except those named by a tag (inputs.mqtt_consumer, outputs.kafka, ...): a smaller binary
# and a shorter build. The result is cached outside the repository, like the stack's influxd:
#     <cache>/telegraf/<version>/telegraf      (cache: $KOTAFLOW_CACHE_DIR or ~/.cache/kotaflow)
# Go's module and build caches are left in place, so a rebuild with other tags is cheap.
#
# Usage: build_telegraf.sh [--version v1.37.2] [--out DIR]
#   Lines starting with "==>" name the step being run, with the elapsed time; run from a
#   terminal, all output also goes to DIR/build.log.
#   Exits 0 without work when DIR/telegraf already exists.
set -euo pipefail

# shellcheck source=deploy/local/build_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local/build_common.sh"
build_args telegraf "v1.37.2" "$@"
MODULE="github.com/influxdata/telegraf"
# The plugins the peer configurations in benchmarks/peers/telegraf_config.py use, and the
# parsers and serializers they name (one tag each; see plugins/*/all/<name>.go).
TAGS="custom"
TAGS+=",inputs.mqtt_consumer,inputs.kafka_consumer,inputs.internal"
TAGS+=",outputs.kafka,outputs.influxdb_v2,outputs.discard"
TAGS+=",aggregators.basicstats"
TAGS+=",parsers.json_v2,parsers.json,parsers.influx,parsers.value"
TAGS+=",serializers.influx,serializers.json,serializers.template"

build_begin telegraf "$VERSION" "$OUT/telegraf"
# Go's final link prints nothing for minutes.
build_heartbeat

export PATH="$PATH:/usr/local/go/bin"
export GOTOOLCHAIN=local
export CGO_ENABLED=0
command -v go >/dev/null || fail "go not found (need Go >= 1.25 on PATH or in /usr/local/go/bin)"
step "toolchain: $(go version | cut -d' ' -f3-); tags $TAGS"

step "fetching $MODULE@$VERSION source from the Go module proxy"
MODULE_DIR=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[[ -n "$MODULE_DIR" && -d "$MODULE_DIR" ]] || fail "go mod download $MODULE@$VERSION gave no source directory"

# The module cache is read-only: build in a writable copy (and `go install pkg@version`
# cannot take build tags for a main module's own go.mod settings).
step "copying source to $BUILD_DIR/src"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
cp -r "$MODULE_DIR" "$BUILD_DIR/src"
chmod -R u+w "$BUILD_DIR/src"
cd "$BUILD_DIR/src"

step "building telegraf $VERSION (Go, plugins: ${TAGS#custom,}) - the slow part (go fetches only the modules these plugins need)"
go build -v \
    -tags "$TAGS" \
    -ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=${VERSION#v}" \
    -o "$OUT/telegraf.tmp" ./cmd/telegraf 2>&1 \
    | awk '{ n++; if (n % 50 == 0) printf "    compiled %d packages (now %s)\n", n, $0; fflush() }' \
    || fail "go build ./cmd/telegraf in $BUILD_DIR/src (see $LOG)"
[[ -x "$OUT/telegraf.tmp" ]] || fail "go build ./cmd/telegraf made no binary (see $LOG)"

"$OUT/telegraf.tmp" --version || fail "the built telegraf does not run"
mv "$OUT/telegraf.tmp" "$OUT/telegraf"
rm -rf "$BUILD_DIR"
build_info "\"tags\": \"$TAGS\""
step "built $OUT/telegraf in $(elapsed)"
