//! The command line: flags and their help (checked and turned into a plan in `plan.rs`).

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

const SCHEMA: &str = "\
OUTPUT
  stdout: one JSON object per scenario, one line each. Always: scenario, n, [sessions, members,
  rate_hz,] duration_s, tick_interval_ms, connect_concurrency, url, spawned, window_s (measured
  window), timed_out, [error,] connections {connected, failed, closed_early, [first_error]},
  client_cpu {cpu_ms, percent_of_core, us_per_msg}, server_cpu (null without a server pid)
  {cpu_ms, percent_of_core, us_per_delivery | us_per_tick | us_per_connection}, server_errors,
  undecodable. Latencies are in microseconds as {count, min, mean, p50, p90, p99, p999, max}.
  fanout, mixed: sent, expected_deliveries, deliveries, lost, latency_us (leader send to
    follower receive, one monotonic clock).
  ticks, sse, mixed: ticks, expected_ticks_per_s, ticks_per_s_per_client {mean, min, max},
    missing_seq, out_of_order, jitter_us (|arrival gap - seq step * interval|), lag_us
    (receive wall clock - serverTime), negative_lag.
  connect: join_latency_us, connect_s, joins_per_s, rss_kib {before, after, per_connection},
    hold {seconds, server_cpu_percent}.
  server_metrics {counters, mean_us}: deltas of the server's own /metrics over the scenario
    (ticks_dropped_total, slow_client_disconnects_total, ...; histogram means in µs), when served.
  n counts the measured connections (mixed: sessions x members, leaders included); CPU is read
  from /proc/PID/stat in 10 ms ticks, so windows under a second give coarse CPU figures.
  stderr: a short summary per scenario, progress bars on a terminal.

EXIT STATUS
  0 all scenarios ran; 1 a scenario failed (its JSON has `error`); 2 bad flags;
  3 --timeout hit (partial JSON printed); 130 interrupted.

EXAMPLES
  bandsync-bench --spawn fanout -n 1000 -d 5
  BATCH_INTERVAL_MS=0 bandsync-bench --spawn --server-arg=--scroll-tick-interval=16 ticks,sse
  bandsync-bench --url ws://127.0.0.1:3001 --server-pid $(pgrep -x bandsync) connect -n 10000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One leader sends set_tempo R/s; latency to N followers.
    Fanout,
    /// N WebSocket followers of a playing session: jitter, lag, missing seq.
    Ticks,
    /// N connections joining S sessions: join latency, joins/s, server memory.
    Connect,
    /// N SSE listeners of a playing session: jitter, lag, missing seq.
    Sse,
    /// S sessions of M members, leaders change tempo while playing.
    Mixed,
    /// Every scenario above, in that order.
    All,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Ticks => "ticks",
            Scenario::Connect => "connect",
            Scenario::Sse => "sse",
            Scenario::Mixed => "mixed",
            Scenario::All => "all",
        }
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s} is not a positive number of seconds"))
}

#[derive(Debug, Parser)]
#[command(
    name = "bandsync-bench",
    version,
    about = "Load and latency benchmarks for a bandsync server (or anything speaking its contract)",
    after_help = SCHEMA
)]
pub struct Cli {
    /// Scenarios to run, in order (comma-separated or repeated).
    #[arg(value_enum, value_delimiter = ',', value_name = "SCENARIO")]
    pub scenarios: Vec<Scenario>,
    /// Same as the positional SCENARIO list.
    #[arg(
        long = "scenario",
        value_enum,
        value_delimiter = ',',
        value_name = "SCENARIO"
    )]
    pub scenario_flag: Vec<Scenario>,
    /// Server to load: ws://HOST:PORT (path defaults to /ws; SSE uses http://HOST:PORT).
    #[arg(long, default_value = "ws://127.0.0.1:3001", conflicts_with = "spawn")]
    pub url: String,
    /// Start target/release/bandsync (next to this binary) on a free loopback port for each
    /// scenario, wait for /health, kill it afterwards. It inherits the environment.
    #[arg(long)]
    pub spawn: bool,
    /// Server binary for --spawn instead of the one next to this executable.
    #[arg(long, value_name = "PATH", requires = "spawn")]
    pub server_bin: Option<PathBuf>,
    /// Extra flag for the spawned server (repeat; use --server-arg=--flag=value).
    #[arg(
        long = "server-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "spawn"
    )]
    pub server_args: Vec<String>,
    /// Pin the spawned server to these CPUs with taskset (when installed), e.g. 1.
    #[arg(long, value_name = "CPUS", requires = "spawn")]
    pub server_cpus: Option<String>,
    /// Pid of the --url server, for its CPU and memory (/proc/PID).
    #[arg(long, value_name = "PID", conflicts_with = "spawn")]
    pub server_pid: Option<u32>,
    /// Connections measured: followers (fanout, ticks), listeners (sse), joiners (connect).
    #[arg(short = 'n', long = "clients", value_name = "N", default_value_t = 100)]
    pub n: u64,
    /// Measured time in seconds (connect: how long the connections are held).
    #[arg(short = 'd', long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub duration: Duration,
    /// set_tempo per second per leader [default: 10 for fanout, 1 for mixed].
    #[arg(long, value_name = "HZ", allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Sessions for connect and mixed.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub sessions: u64,
    /// Members per session for mixed (one leader, the rest followers).
    #[arg(long, value_name = "M", default_value_t = 10)]
    pub members: u64,
    /// At most this many connections being opened at once.
    #[arg(long, value_name = "K", default_value_t = 64)]
    pub connect_concurrency: usize,
    /// The server's SCROLL_TICK_INTERVAL (ms), the expected gap between ticks.
    #[arg(long, value_name = "MS", default_value_t = 16.0)]
    pub tick_interval_ms: f64,
    /// Give up after this many seconds overall, print what was measured, exit 3
    /// [default: (duration + 60) per scenario].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Worker threads of the load client [default: number of CPUs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Session id prefix (the pid and a timestamp are appended, so runs never share one).
    #[arg(long, value_name = "PREFIX", default_value = "bench")]
    pub session_prefix: String,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Allow a --url host that is not loopback.
    #[arg(long)]
    pub allow_remote: bool,
}
