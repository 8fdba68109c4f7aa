#!/usr/bin/env bash
# Runs every load scenario of BENCHMARKS.md against a freshly spawned release server and
# prints one JSON line per scenario on stdout (summaries on stderr). The server is pinned
# to CPU 1 and the load client to CPU 0 (when taskset is installed). Loopback only; every
# run stops by itself. Takes about ten minutes.
#
#   scripts/bench.sh > bench.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p bandsync -p bandsync-bench --bin bandsync --bin bandsync-bench >&2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench="${CARGO_TARGET_DIR:-target}/release/bandsync-bench"
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
run() { "${pin[@]}" "$bench" --spawn --server-cpus 1 --no-progress --threads 1 "$@"; }

for n in 100 1000 10000; do run fanout -n "$n" -d 5; done
BATCH_INTERVAL_MS=0 run fanout -n 1000 -d 5
for n in 100 1000 10000; do run ticks -n "$n" -d 5; done
for n in 100 1000 10000; do run connect -n "$n" --sessions $((n / 10)) -d 2; done
run connect -n 5000 --sessions 500 -d 2
for n in 100 1000; do run sse -n "$n" -d 5; done
run mixed --sessions 100 --members 10 -d 5
run audio-seed -d 5
run audio-seed -d 5 --uplink ws
run audio-seed -d 5 --receiver-transport sse
