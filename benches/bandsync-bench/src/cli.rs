//! The command line: flags and their help (checked and turned into a plan in `plan.rs`).

use crate::reference::ServerKind;
use bandsync_client::args::parse_secs;
use bandsync_client::protocol::repo::Encoding;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

const SCHEMA: &str = "\
OUTPUT
  stdout: one JSON object per scenario, one line each. Always: scenario, n, [sessions, members,
  rate_hz,] duration_s, tick_interval_ms, connect_concurrency, url, spawned, window_s (measured
  window), timed_out, [error,] connections {connected, failed, closed_early, [first_error]},
  client_cpu {cpu_ms, percent_of_core, kernel_percent, us_per_msg}, server_cpu (null without
  a server pid) {cpu_ms, percent_of_core, kernel_percent, us_per_delivery | us_per_tick |
  us_per_connection}, server_errors, undecodable. Latencies are in microseconds as {count,
  min, mean, p50, p90, p99, p999, max}. kernel_percent is the kernel's share of the CPU time,
  as the kernel samples it at its tick (approximate; skewed for the timer-driven ticks).
  fanout, mixed: sent, expected_deliveries, deliveries, lost, latency_us (leader send to
    follower receive, one monotonic clock).
  ticks, sse, mixed: ticks, expected_ticks_per_s, ticks_per_s_per_client {mean, min, max},
    missing_seq, out_of_order, jitter_us (|arrival gap - seq step * interval|), lag_us
    (receive wall clock - serverTime), negative_lag.
  connect: join_latency_us, connect_s, joins_per_s, frames_per_join, rss_kib {before, after,
    per_connection},
    hold {seconds, server_cpu_percent}.
  churn: churn {drop_every_s, away_s, last_version (resumes sent lastVersion), state_events_sent,
    skipped_leader_away, first_version, last_version_seen, versions, pairs (clients x
    versions), as_event, replayed, via_snapshot (not seen as an event, covered by a later
    snapshot), missing, duplicates, out_of_order, delivered_share ((as_event + via_snapshot)
    / pairs), event_share (as_event / pairs), clients_converged, replayed_events, resumes and
    leader_resumes {attempted, resumed, kept_identity, kept_role, failed, kept_role_share}},
    resources {rss_kib_before, rss_kib_after, fds_before, fds_after} (server, window edges).
  cluster-fanout (--spawn): instances (K), server_cpus, baseline and cluster, each {window_s,
    sent, expected_deliveries, deliveries, lost, latency_us (every follower), instances [{label
    (single; A = the leader's, B, ...), followers {connected, ...}, expected_deliveries,
    deliveries, lost, latency_us, server {cpu_ms, percent_of_core, deliveries,
    us_per_delivery, rss_kib_before/after, fds_before/after, redis_round_trips {purpose: n},
    server_metrics}}], server_us_per_delivery (all instances' CPU / all deliveries),
    server_and_redis_us_per_delivery, redis {state_changes, commands (INFO
    total_commands_processed delta, Lua inner calls included), commands_per_change,
    commands_per_s, commit_round_trips_per_change, round_trips_per_change (the instances'
    bandsync_redis_commands_total), cpu_ms, percent_of_core, us_per_change}, client_cpu};
    ratios [{followers_on (A, B, ..., all), latency_p50, latency_p99, us_per_delivery,
    [us_per_delivery_with_redis]}] = cluster / baseline.
  cluster-churn (--spawn): the churn fields (resumes.moved: resumes on another instance than
    the one left; server_cpu and resources: instance A), seed (of the random instance picks),
    and cluster {window_s, instances [server as above, without deliveries], redis (as above,
    per state change sent)}.
  mixed --sample-every: samples [{t_s, rss_kib, fds, deliveries, latency_p50_us,
    latency_p99_us, latency_max_us, ticks, missing_seq}] (latency of each interval), and
    resources from the first and last sample.
  audio: [preset,] receivers, receiver_transport, uplink, chunk_ms, sample_rate, channels,
    format, chunk_bytes, deflate (always false: the bench's WebSocket cannot negotiate it),
    share_audio_rate (what a --spawn server got, else null); sent (chunks), expected_deliveries
    (accepted chunks x receivers of their session), deliveries (distinct chunks received in
    the window), lost, latency_us (sharer send instant to receiver receive instant, keyed by
    session and sequence; poll receivers add up to 100 ms of polling), server_cpu.us_per_delivery
    (per chunk delivered), and audio {sharers, chunks_accepted, chunks_refused,
    receivers_with_loss, max_lost_per_receiver, duplicates, out_of_order, corrupt, unmatched,
    uplink_bytes_per_s, relayed_bytes_per_s (PCM), received_wire_bytes_per_s (frames, event
    data or poll bodies), send_lateness_us (sharer send after its deadline), [post_us (REST
    uplink round trip),] [polls, empty_polls]}. Receivers join before the first chunk, so no
    one gets a join burst and every accepted chunk is expected by every receiver.
  repo-fanout: one line per case: listeners, encoding, composition_s, connected (had
    `connected` before the POST), received (had the whole audio_buffer), failed, [first_error,]
    post_ms (the POST's round trip: render, serialize, queue), render_time_ms,
    listeners_notified, samples, verified_frames (decoded by the one listener that parses;
    must equal samples), complete_ms {first, p50, p99, last} (POST sent -> listener has the
    message's last byte), message_bytes, bytes_per_listener, bytes_total, throughput_mb_s,
    server_cpu {cpu_ms, percent_of_core} (POST -> last listener), server_rss_kib, client_cpu.
    Each case uses a fresh repository; the next one starts once the server let go of the
    listeners. Then a Markdown table of all cases on stderr.
  clock-accuracy: n, jitter_sd_ms, jitter_model, seed, truth_ms, truth_rtt_ms, phases [{name
    (symmetric, asymmetric), up_base_ms, down_base_ms, injected_up/down {chunks, mean_ms, sd_ms,
    min_ms, p50_ms, p99_ms, max_ms, drawn_mean_ms, drawn_sd_ms}, checkpoints [{t_s,
    clients_with_estimate, abs_error_ms, bias_ms, error_bound_ms}]}] (spreads: count, p50..max).
  clock-agreement: n clients, tempo_changes, changes_sent, difference_ms (every pair, ms),
    worst_pair_p99_ms, in_flight, injected_up/down, final_offset_error_ms.
  server_metrics {counters, mean_us}: deltas of the server's own /metrics over the scenario
    (ticks_dropped_total, slow_client_disconnects_total, ...; histogram means in µs), when served.
  n counts the measured connections (mixed: sessions x members, leaders included; audio:
  receivers, sessions x receivers); CPU is read
  from /proc/PID/stat in 10 ms ticks, so windows under a second give coarse CPU figures.
  stderr: a short summary per scenario, progress bars on a terminal.

EXIT STATUS
  0 all scenarios ran; 1 a scenario failed (its JSON has `error`); 2 bad flags;
  3 --timeout hit (partial JSON printed); 130 interrupted.

EXAMPLES
  bandsync-bench --spawn fanout -n 1000 -d 5
  bandsync-bench --spawn --spawn-server uws fanout -n 1000 -d 5   # the uWebSockets.js reference
  bandsync-bench --spawn --spawn-server floor fanout -n 1000 -d 5 # one bare send per recipient
  BATCH_INTERVAL_MS=0 bandsync-bench --spawn --server-arg=--scroll-tick-interval=16 ticks,sse
  bandsync-bench --url ws://127.0.0.1:3001 --server-pid $(pgrep -x bandsync) connect -n 10000
  bandsync-bench --spawn audio-seed -d 5 --receiver-transport sse
  bandsync-bench --spawn audio --sessions 20 --receivers 4 --uplink ws --format i16 --chunk-ms 50
  bandsync-bench --spawn churn --clients 1000 --duration 120 --drop-every 15 --away 2
  bandsync-bench --spawn mixed --sessions 100 --members 10 -d 1800 --sample-every 300
  bandsync-bench --spawn --server-cpus 1 cluster-fanout -n 1000 -d 10 --instances 2
  bandsync-bench --spawn cluster-churn --clients 1000 -d 60 --drop-every 15 --away 2
  bandsync-bench --spawn repo-fanout --listeners 100,1000 --encodings json,f32,i16
  bandsync-bench --spawn clock-accuracy -n 20 --jitter-ms 5 --asymmetry-ms 10

AUDIO AND THE SERVER
  --spawn sets BEARER_TOKEN=--token for the server, --share-audio-rate 20 (twice the chunk
  rate when higher: 100 ms chunks are exactly the default limit of 10/s per session), and
  --max-share-sessions S+1 when S >= 50; for every scenario it lifts the per-address limits
  (--max-connections-per-ip, --share-sessions-per-ip, --share-starts-per-minute), since the
  whole load comes from 127.0.0.1. A --server-arg or environment variable of the same
  setting wins. With --url the server must have BEARER_TOKEN equal to --token, and limits
  that admit one address's whole load.

CLUSTER (cluster-fanout, cluster-churn; --spawn only)
  The bench starts --redis-server on a free loopback port (--save \"\" --appendonly no), waits for
  PONG, then --instances bandsync instances with REDIS_URL pointing at it and a REDIS_PREFIX
  unique to the run, and waits until each /health says \"redis\":\"up\" with every instance
  alive. --server-cpus pins Redis too. All of them are killed by pid when the scenario ends.
  cluster-fanout's baseline runs first on one instance started without REDIS_URL.";

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    s.parse()
}

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
    /// Every scenario above, in that order (not the audio ones).
    All,
    /// Music Share relay: S sharers stream real-time audio, R receivers per session.
    Audio,
    /// N followers of one session each drop every --drop-every s and resume --away s
    /// later, while the leader changes the state --rate times a second: delivery of
    /// every version, resumes that kept their role.
    Churn,
    /// The seed's three load tests, each an `audio` run: 10 sessions x 1 receiver,
    /// 5 x 10, 50 x 5.
    AudioSeed,
    /// fanout across a Redis cluster the bench starts (--spawn): first N followers on one
    /// instance without Redis (the baseline), then the leader on instance A and N followers
    /// split evenly over --instances: latency per instance, CPU per delivery per
    /// instance, Redis commands per change, and the ratios.
    ClusterFanout,
    /// churn across a Redis cluster the bench starts (--spawn): followers split evenly
    /// over --instances, and every resume (the leader's too) on a random instance.
    ClusterChurn,
    /// Repository streams: one test composition broadcast to each of --listeners counts of
    /// SSE listeners, in each of --encodings: time until the last listener has all of it,
    /// server CPU, bytes.
    RepoFanout,
    /// N clients, each behind its own jittered fault-proxy link: offset error at 0.5, 1, 2
    /// and 5 s after joining, with symmetric jitter and then a fixed asymmetry.
    ClockAccuracy,
    /// Two clients behind independent jittered links: the difference between the
    /// positions they compute at the same instants while the tempo changes.
    ClockAgreement,
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
            Scenario::Audio => "audio",
            Scenario::AudioSeed => "audio-seed",
            Scenario::Churn => "churn",
            Scenario::ClusterFanout => "cluster-fanout",
            Scenario::ClusterChurn => "cluster-churn",
            Scenario::RepoFanout => "repo-fanout",
            Scenario::ClockAccuracy => "clock-accuracy",
            Scenario::ClockAgreement => "clock-agreement",
        }
    }

    /// Whether it runs against a Redis cluster the bench spawns.
    pub fn is_cluster(self) -> bool {
        matches!(self, Scenario::ClusterFanout | Scenario::ClusterChurn)
    }
}

/// How audio receivers get the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RxTransport {
    Ws,
    Sse,
    Poll,
}

/// How sharers send the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Uplink {
    Rest,
    Ws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PcmFormat {
    F32,
    I16,
}

impl RxTransport {
    pub fn name(self) -> &'static str {
        match self {
            RxTransport::Ws => "ws",
            RxTransport::Sse => "sse",
            RxTransport::Poll => "poll",
        }
    }
}

impl Uplink {
    pub fn name(self) -> &'static str {
        match self {
            Uplink::Rest => "rest",
            Uplink::Ws => "ws",
        }
    }
}

impl PcmFormat {
    pub fn name(self) -> &'static str {
        match self {
            PcmFormat::F32 => "f32",
            PcmFormat::I16 => "i16",
        }
    }

    pub fn bytes_per_sample(self) -> usize {
        match self {
            PcmFormat::F32 => 4,
            PcmFormat::I16 => 2,
        }
    }
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
    /// scenario, wait for /health, kill it afterwards. It inherits the environment, plus
    /// BEARER_TOKEN set to --token.
    #[arg(long)]
    pub spawn: bool,
    /// Which server --spawn starts: bandsync, the uWebSockets.js reference server that
    /// serves the same protocol (fanout, ticks and connect only; needs Node 20 and
    /// benches/reference/install.sh), or the floor (the same scenarios; one bare send per
    /// recipient; cargo build --release -p floor; floor-uring: its sends through
    /// io_uring). Pinned and measured like bandsync.
    #[arg(long, value_enum, value_name = "SERVER", default_value = "bandsync")]
    pub spawn_server: ServerKind,
    /// Node.js for --spawn-server uws (a path, or a name looked up on PATH).
    #[arg(long, value_name = "PATH", default_value = "node")]
    pub node: PathBuf,
    /// The uWS reference server's script [default: benches/reference/uws/server.mjs of the
    /// source tree this bench was built from].
    #[arg(long, value_name = "PATH")]
    pub uws_script: Option<PathBuf>,
    /// The floor server's binary [default: floor next to this executable].
    #[arg(long, value_name = "PATH")]
    pub floor_bin: Option<PathBuf>,
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
    /// Measured time in seconds (connect: how long the connections are held)
    /// [default: 5; 10 for audio and audio-seed].
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// set_tempo per second per leader [default: 10 for fanout, 1 for mixed].
    #[arg(long, value_name = "HZ", allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Sessions for connect, mixed and audio (audio: one sharer each).
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub sessions: u64,
    /// audio: receivers per share session.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub receivers: u64,
    /// audio: how receivers get the audio: binary frames over /ws (after join_session),
    /// `audio_chunk` events on /sse/{id}, or polling GET /api/share/{id}/audio?since=N
    /// every 100 ms (as the seed's client does).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = RxTransport::Ws)]
    pub receiver_transport: RxTransport,
    /// audio: how sharers send it: base64 f32 JSON POSTs to /api/share/{id}/audio (the
    /// seed's client), or binary frames over /ws after share_start.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Uplink::Rest)]
    pub uplink: Uplink,
    /// audio: ms of audio per chunk; a sharer sends 1000/MS chunks a second in real time.
    /// 100 ms is exactly the server's default limit of 10 chunks/s per session, so a
    /// --spawn server gets --share-audio-rate 20 (or twice the chunk rate, if higher).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub chunk_ms: u32,
    /// audio: sample rate, Hz.
    #[arg(long, value_name = "HZ", default_value_t = 44_100)]
    pub sample_rate: u32,
    /// audio: interleaved channels.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub channels: u16,
    /// audio: sample format (i16 needs --uplink ws: the REST API carries f32 only).
    #[arg(long, value_enum, value_name = "FMT", default_value_t = PcmFormat::F32)]
    pub format: PcmFormat,
    /// audio: the share API's token, sent whole as `Authorization` (and in share_start).
    /// A --spawn server gets it as BEARER_TOKEN.
    #[arg(long, value_name = "TOKEN", default_value = "Bearer Token")]
    pub token: String,
    /// churn: seconds between two drops of one client (drops are staggered so 1/S of
    /// the clients drop each second).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "15")]
    pub drop_every: Duration,
    /// churn: seconds a dropped client stays away before it resumes.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "2")]
    pub away: Duration,
    /// churn: resume without `lastVersion` (a client that does not ask for a replay).
    #[arg(long)]
    pub no_last_version: bool,
    /// cluster-*: bandsync instances sharing one Redis (2..=8).
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub instances: usize,
    /// cluster-*: the redis-server to start (a path, or a name looked up on PATH).
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// mixed: sample the server's RSS, open fds and the interval's latency every SECS
    /// (and at both ends) into `samples`: the soak (`scripts/soak.sh`).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub sample_every: Option<Duration>,
    /// repo-fanout: listener counts, one case each (comma-separated).
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "100,1000"
    )]
    pub listeners: Vec<u64>,
    /// repo-fanout: encodings the listeners ask for, one case each (json, f32, i16).
    #[arg(long, value_name = "ENC,..", value_delimiter = ',', default_value = "json,f32,i16",
          value_parser = parse_encoding)]
    pub encodings: Vec<Encoding>,
    /// repo-fanout: seconds of the composition posted in each case.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub composition_secs: f64,
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
    #[command(flatten)]
    pub clock: crate::clock_plan::ClockArgs,
}
