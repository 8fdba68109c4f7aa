#!/usr/bin/env bash
# Folds the inputs a run found ($FUZZ_WORK/<target>) into the checked-in corpus/<target>,
# minimised with `cargo fuzz cmin` (only inputs that add coverage are kept). Coverage here
# means edges (-use_counters=0) and a greedy set cover (-set_cover_merge=1): hit-count
# features would keep thousands of files, and the repository keeps a few hundred KB.
#
#   fuzz/cmin.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
targets=${*:-frame_decoder last_event_id share_bodies http_routing inflater deflate_reader socketio_packets}
work=${FUZZ_WORK:-target/corpus-work}
target_dir=${FUZZ_TARGET_DIR:-target}
export RUSTC_BOOTSTRAP=1
for t in $targets; do
    merged="$work/$t.merged"
    rm -rf "$merged"
    mkdir -p "$merged"
    cp corpus/"$t"/* "$work/$t"/* "$merged"/ 2>/dev/null || true
    cargo fuzz cmin --target-dir "$target_dir" "$t" "$merged" -- -rss_limit_mb=2048 -timeout=20 \
        -use_counters=0 -set_cover_merge=1 \
        >"$work/$t.cmin.log" 2>&1
    # Keep the hand-written seeds (readable names) and add what cmin kept beyond them.
    for f in "$merged"/*; do
        name=$(basename "$f")
        [ -e "corpus/$t/$name" ] || cp "$f" "corpus/$t/$name"
    done
    echo "$t: $(ls corpus/"$t" | wc -l) files, $(du -sh corpus/"$t" | cut -f1)"
done
