#!/usr/bin/env bash
# The soak: the mixed scenario (100 sessions x 10 members, every leader playing and changing
# tempo once a second) for 30 minutes against a freshly spawned release server, with the
# server's resident memory, open file descriptors and the interval's tempo latency sampled
# at the start, every 5 minutes and at the end. Healthy means no growth between the first
# and last samples. The JSON line goes to stdout, a table to stderr. Loopback only; it
# stops by itself (the bench's --timeout is the duration plus a minute).
#
#   scripts/soak.sh > soak.jsonl                              # 30 minutes
#   SOAK_SECONDS=180 SOAK_SAMPLE_SECONDS=60 scripts/soak.sh   # a 3-minute check
#
# SOAK_SESSIONS / SOAK_MEMBERS change the shape; extra arguments go to bandsync-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SOAK_SECONDS:-1800}
every=${SOAK_SAMPLE_SECONDS:-300}
cargo build --release -p bandsync -p bandsync-bench --bin bandsync --bin bandsync-bench >&2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench="${CARGO_TARGET_DIR:-target}/release/bandsync-bench"
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"${pin[@]}" "$bench" --spawn --server-cpus 1 --no-progress --threads 1 mixed \
  --sessions "${SOAK_SESSIONS:-100}" --members "${SOAK_MEMBERS:-10}" \
  -d "$secs" --sample-every "$every" "$@" | tee "$out"

if command -v jq >/dev/null; then
  jq -r '
    "soak: \(.window_s) s, \(.connections.connected) connections (\(.connections.closed_early) closed early), tempo deliveries \(.deliveries)/\(.expected_deliveries) (lost \(.lost)), p99 over the run \(.latency_us.p99) us, missing seq \(.missing_seq)",
    "t_s\trss_kib\tfds\tp50_us\tp99_us\tmax_us\tdeliveries\tmissing_seq",
    (.samples[] | "\(.t_s)\t\(.rss_kib)\t\(.fds)\t\(.latency_p50_us)\t\(.latency_p99_us)\t\(.latency_max_us)\t\(.deliveries)\t\(.missing_seq)"),
    "end - start: RSS \(.resources.rss_kib_after - .resources.rss_kib_before) KiB, fds \(.resources.fds_after - .resources.fds_before)"
  ' "$out" >&2
fi
