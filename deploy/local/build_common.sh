# Shared by the build_*.sh scripts (sourced, not run): one cached build per version, with
# progress. The caller runs `build_args CACHE_NAME DEFAULT_VERSION "$@"` (sets VERSION, OUT,
# BUILD_DIR, LOG, STARTED), then `build_begin NAME VERSION DONE_FILE`, which returns only
# when there is work to do.
#
# * Run from a terminal, all output also goes to $LOG; run by `kotaflow stack up`, the
#   caller logs our output.
# * "==> [elapsed] step" lines name the step being run; `build_heartbeat` adds a line every
#   30 s naming the step still running, for builds that print nothing for minutes.
# * One build at a time per version: a second caller waits on the lock instead of racing,
#   then finds the result and exits 0.

# --version V, --out DIR, --help (the script's leading comment). OUT defaults to
# <cache>/CACHE_NAME/VERSION, cache being $KOTAFLOW_CACHE_DIR or ~/.cache/kotaflow.
build_args() {
    local cache_name="$1"
    VERSION="$2"
    shift 2
    OUT=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --version) VERSION="$2"; shift 2 ;;
            --out) OUT="$2"; shift 2 ;;
            -h|--help) sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) echo "$(basename "$0"): unknown argument $1" >&2; exit 2 ;;
        esac
    done
    OUT="${OUT:-${KOTAFLOW_CACHE_DIR:-$HOME/.cache/kotaflow}/$cache_name/$VERSION}"
    BUILD_DIR="$OUT/build"
    LOG="$OUT/build.log"
    STARTED=$(date +%s)
}

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
