#!/usr/bin/env bash
# bandsync beside uWebSockets.js (benches/reference/uws) and the floor (benches/reference/floor:
# one bare send per recipient, nothing else), one run: each scenario of issue 12 against a
# fresh bandsync and a fresh uWS reference server serving the same protocol (and, at n =
# 1,000 and for the joins, a fresh floor; at n = 1,000 also the floor sending through
# io_uring, as bandsync's engine does, where the kernel allows it), the server pinned to CPU 1 and the load client (one
# thread) to CPU 0, all measured the same way (/proc of the spawned pid). One JSON line per
# run on stdout; a Markdown table of every figure and the ratios bandsync / uWS and bandsync /
# floor on stderr. Loopback only; five to twelve minutes.
#
#   scripts/compare.sh > compare.jsonl
#   COMPARE_SECONDS=10 scripts/compare.sh > compare.jsonl    # longer measuring windows
#
# Needs Node 20 and jq; installs the reference server's npm packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "compare.sh needs jq" >&2; exit 1; }
benches/reference/install.sh
cargo build --release -p bandsync -p bandsync-bench -p floor --bin bandsync --bin bandsync-bench \
  --bin floor >&2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

secs=${COMPARE_SECONDS:-5}
bench="${CARGO_TARGET_DIR:-target}/release/bandsync-bench"
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {
  local server=$1
  shift
  "${pin[@]}" "$bench" --spawn --spawn-server "$server" --server-cpus 1 \
    --no-progress --threads 1 "$@" | tee -a "$out"
}

# The issue's table (20 set_tempo/s; 10,000 joins over 500 sessions), then n = 10,000.
status=0
floors=(floor floor-uring)
[ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ] || floors=(floor)
for server in bandsync uws "${floors[@]}"; do run "$server" fanout -n 1000 --rate 20 -d "$secs" || status=1; done
for server in bandsync uws "${floors[@]}"; do run "$server" ticks -n 1000 -d "$secs" || status=1; done
for server in bandsync uws floor; do run "$server" connect -n 10000 --sessions 500 -d 2 || status=1; done
# 10,000 connections opening while ticks already flow take a minute or more on a busy machine.
big=(--timeout "$((secs + 240))")
for server in bandsync uws; do run "$server" fanout -n 10000 --rate 20 -d "$secs" "${big[@]}" || status=1; done
for server in bandsync uws; do run "$server" ticks -n 10000 -d "$secs" "${big[@]}" || status=1; done

jq -rs '
  def pick($sc; $n; $srv; f): (map(select(.scenario == $sc and .n == $n and .server == $srv)) | first | f) // null;
  def show: if . == null then "-" else tostring end;
  def ratio($a; $b):
    if ($a | type) == "number" and ($b | type) == "number" and $b != 0
    then ($a / $b * 100 | round / 100 | tostring) else "-" end;
  def row($what; $sc; $n; f):
    pick($sc; $n; "bandsync"; f) as $b | pick($sc; $n; "uws"; f) as $u
    | pick($sc; $n; "floor"; f) as $f | pick($sc; $n; "floor-uring"; f) as $r
    | "| \($what) | \($b | show) | \($u | show) | \(ratio($b; $u)) | \($f | show) | \(ratio($b; $f)) | \($r | show) | \(ratio($b; $r)) |";
  def fanout($n):
    row("fanout n=\($n): server CPU per delivery (us)"; "fanout"; $n; .server_cpu.us_per_delivery),
    row("fanout n=\($n): kernel share of server CPU (%)"; "fanout"; $n; .server_cpu.kernel_percent),
    row("fanout n=\($n): latency p50 (us)"; "fanout"; $n; .latency_us.p50),
    row("fanout n=\($n): latency p99 (us)"; "fanout"; $n; .latency_us.p99),
    row("fanout n=\($n): lost deliveries"; "fanout"; $n; .lost),
    row("fanout n=\($n): load client CPU per message (us)"; "fanout"; $n; .client_cpu.us_per_msg);
  def ticks($n):
    row("ticks n=\($n): ticks/s per client (mean)"; "ticks"; $n; .ticks_per_s_per_client.mean),
    row("ticks n=\($n): missing seq"; "ticks"; $n; .missing_seq),
    row("ticks n=\($n): server CPU per tick delivered (us)"; "ticks"; $n; .server_cpu.us_per_tick),
    row("ticks n=\($n): kernel share of server CPU (%, skewed by the 16 ms timer)"; "ticks"; $n; .server_cpu.kernel_percent),
    row("ticks n=\($n): lag p99 (us)"; "ticks"; $n; .lag_us.p99),
    row("ticks n=\($n): load client CPU per message (us)"; "ticks"; $n; .client_cpu.us_per_msg);
  "| figure | bandsync | uWS | bandsync / uWS | floor | bandsync / floor | floor, io_uring | bandsync / that |",
  "|---|---|---|---|---|---|---|---|",
  fanout(1000), ticks(1000),
  row("connect 10,000 over 500 sessions: RSS per idle connection (KiB)"; "connect"; 10000; .rss_kib.per_connection),
  row("connect 10,000: joins per second"; "connect"; 10000; .joins_per_s),
  row("connect 10,000: server CPU per join (us)"; "connect"; 10000; .server_cpu.us_per_connection),
  row("connect 10,000: kernel share of server CPU (%)"; "connect"; 10000; .server_cpu.kernel_percent),
  row("connect 10,000: load client CPU per join (us)"; "connect"; 10000; .client_cpu.us_per_connection),
  fanout(10000), ticks(10000),
  (.[] | select(.error) | "error: \(.scenario) n=\(.n) on \(.server): \(.error)")
' "$out" >&2
exit "$status"
