#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and black-box tests (including the
# headless-Chromium page test). Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
# The cluster tests skip without redis-server on a developer's machine; here it is there.
export BANDSYNC_REQUIRE_REDIS=1
# tests/openapi.rs skips without schemathesis on a developer's machine; here it must run.
export BANDSYNC_REQUIRE_SCHEMATHESIS=1
# tests/operations.rs skips the alert rules without promtool on a developer's machine.
export BANDSYNC_REQUIRE_PROMTOOL=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The sound output (`receive --play`, `follow --click`) is behind the client's `playback`
# feature, which the default build leaves out: lint it too, so it never rots unseen.
cargo clippy -p bandsync-client --all-targets --features playback -- -D warnings
echo "== cargo test"
cargo test --workspace
# The suite's servers run on two runtime workers, where the engine has a thread of its own.
# On one core it is a task of the runtime's worker instead (ENGINE_PLACEMENT=auto): these
# suites, which drive the engine hardest (ticks, scheduled changes at their instants, the
# batching window, backpressure, resume, pings, shutdown, audio), run again with it placed
# there.
echo "== cargo test, the engine as a runtime task (ENGINE_PLACEMENT=worker)"
ENGINE_PLACEMENT=worker cargo test --workspace --test ticks --test scheduling \
  --test batching_window --test ws_protocol --test room_stats --test sse --test shutdown \
  --test backpressure --test resume --test resume_replay --test liveness --test share_ws \
  --test robustness
# Where the kernel allows io_uring (IO_URING=auto), the engine batches its fan-out's socket
# writes through it, and the suite above ran that way. The portable path, one send each
# (IO_URING=off, or a kernel without io_uring), runs again here under the suites that write
# the most: ticks, fan-outs, slow and paused readers, deflate, audio, shutdown.
echo "== cargo test, one send per socket write (IO_URING=off)"
IO_URING=off cargo test --workspace --test ticks --test ws_protocol --test room_stats \
  --test backpressure --test liveness --test deflate --test share_ws --test shutdown \
  --test robustness
