#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS (default 600), in one process
# (libFuzzer's default: the machine is shared). New inputs go to a work corpus outside
# the repository; `cmin.sh` folds them back into corpus/ afterwards.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly compiler, or a stable one
# with RUSTC_BOOTSTRAP=1 (set here). Logs: $FUZZ_WORK/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=${*:-frame_decoder last_event_id share_bodies http_routing inflater deflate_reader socketio_packets}
work=${FUZZ_WORK:-target/corpus-work}
target_dir=${FUZZ_TARGET_DIR:-target}
export RUSTC_BOOTSTRAP=1
for t in $targets; do
    mkdir -p "$work/$t"
    extra=()
    if [ -f "dict/$t.dict" ]; then extra=("-dict=dict/$t.dict"); fi
    # The server targets leave each input's engine thread to exit on its own, which
    # LeakSanitizer would scan for after every input; safe Rust cannot leak by mistake
    # in the way it looks for, so skip it there.
    case $t in share_bodies | http_routing) extra+=("-detect_leaks=0") ;; esac
    cargo fuzz run --target-dir "$target_dir" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        "${extra[@]}" >"$work/$t.log" 2>&1 || { echo "$t FAILED: see $work/$t.log"; exit 1; }
    tail -n 30 "$work/$t.log" | grep -E '^(#[0-9]+|Done|stat::)' | tail -n 12
done
