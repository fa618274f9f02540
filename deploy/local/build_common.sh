# Shared by the build_*.sh scripts (sourced, not run): one cached build per version, with
# progress. The caller sets OUT (the cache folder), LOG and STARTED, then calls
# `build_begin NAME VERSION DONE_FILE`; that returns only when there is work to do.
#
# * Run from a terminal, all output also goes to $LOG; run by `kotaflow stack up`, the
#   caller logs our output.
# * "==> [elapsed] step" lines name the step being run; `build_heartbeat` adds a line every
#   30 s naming the step still running, for builds that print nothing for minutes.
# * One build at a time per version: a second caller waits on the lock instead of racing,
#   then finds the result and exits 0.

elapsed() { local s=$(( $(date +%s) - STARTED )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
step() { echo "$*" > "$OUT/.step"; echo "==> [$(elapsed)] $*"; }
fail() { echo "==> FAILED after $(elapsed): $*" >&2; exit 1; }

build_begin() {
    local name="$1" version="$2" done_file="$3"
    mkdir -p "$OUT"
    if [[ -t 1 ]]; then exec > >(tee -a "$LOG") 2>&1; fi
    exec 9>"$OUT/.build.lock"
    if ! flock -n 9; then
        echo "==> another build of $name $version is running; waiting for it to finish"
        flock 9
    fi
    if [[ -x "$done_file" ]]; then
        echo "==> $name $version already built at $done_file"
        exit 0
    fi
    trap 'rm -f "$OUT/.step"' EXIT
}

build_heartbeat() {
    ( while sleep 30; do echo "==> [$(elapsed)] still working: $(cat "$OUT/.step" 2>/dev/null)"; done ) &
    HEARTBEAT=$!
    trap 'kill $HEARTBEAT 2>/dev/null; rm -f "$OUT/.step"' EXIT
}

# Writes $OUT/build-info.json: version, build seconds, time, and any extra "key": "value"
# pairs given as arguments (already JSON-quoted, e.g. '"source": "debian trixie"').
build_info() {
    local extra=""
    for pair in "$@"; do extra+="$pair, "; done
    printf '{"version": "%s", %s"build_seconds": %d, "built_at": "%s"}\n' \
        "$VERSION" "$extra" "$(( $(date +%s) - STARTED ))" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        > "$OUT/build-info.json"
}
