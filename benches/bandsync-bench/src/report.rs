//! The JSON line each scenario prints (schema in `--help`), and its human summary.
//!
//! Typed structs rather than `serde_json::json!`: field order is part of the output's
//! readability (scenario, n, params, duration, results) and a struct keeps it.

use crate::procfs::CpuUsage;
use crate::recorder::Recorder;
use bandsync_bench::bench_stats::LatencySummary;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// What the run was asked to do (echoed in the report).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Params {
    /// The preset step this run is (`audio-seed-1`..`-3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<&'static str>,
    /// Connections measured (followers, listeners or joiners; all members for `mixed`;
    /// receivers for `audio`).
    pub n: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
    /// cluster-*: bandsync instances sharing the Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioParams>,
    pub duration_s: f64,
    pub tick_interval_ms: f64,
    pub connect_concurrency: usize,
    pub url: String,
    pub spawned: bool,
    /// The server --spawn started (`bandsync`, `uws`); absent with --url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<&'static str>,
}

/// What an `audio` run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct AudioParams {
    pub receivers: u64,
    pub receiver_transport: &'static str,
    pub uplink: &'static str,
    pub chunk_ms: u32,
    pub sample_rate: u32,
    pub channels: u16,
    pub format: &'static str,
    /// PCM bytes per chunk, in `format`.
    pub chunk_bytes: usize,
    /// Whether WebSocket receivers negotiated permessage-deflate: never here
    /// (tokio-tungstenite cannot); the server sends audio frames uncompressed anyway.
    pub deflate: bool,
    /// The SHARE_AUDIO_RATE the bench gave a spawned server (`null`: not set by the bench,
    /// the server's own or the user's).
    pub share_audio_rate: Option<u32>,
}

/// What an `audio` run measured besides the delivery counts and latency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioResults {
    /// Share sessions started (one sharer each).
    pub sharers: u64,
    /// Chunks the server took (REST: answered 200; WebSocket: sent).
    pub chunks_accepted: u64,
    /// Chunks refused (429, other errors, `rate_limit_exceeded` over WebSocket).
    pub chunks_refused: u64,
    /// Receivers that missed at least one accepted chunk, and the most one missed.
    pub receivers_with_loss: u64,
    pub max_lost_per_receiver: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Chunks whose size or header did not match what was sent.
    pub corrupt: u64,
    /// Chunks no sharer of this run sent (a burst from another run's session).
    pub unmatched: u64,
    /// PCM bytes per second the sharers got accepted, and the receivers got (relayed).
    pub uplink_bytes_per_s: f64,
    pub relayed_bytes_per_s: f64,
    /// Bytes per second the receivers read as audio messages (frames, event data, poll
    /// bodies): base64 and JSON overhead included.
    pub received_wire_bytes_per_s: f64,
    /// How late the sharers sent after each chunk's deadline (client load check).
    pub send_lateness_us: Option<LatencySummary>,
    /// REST uplink: the POST's round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_us: Option<LatencySummary>,
    /// Poll receivers: requests, and those answered 204.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_polls: Option<u64>,
}

/// Results only some scenarios have.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joins_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_s: Option<f64>,
    /// connect: frames the clients received while joining, per join (the snapshot and
    /// what the others' joins sent them): servers that send more do more work per join.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_join: Option<f64>,
    /// connect: joins done in each 100 ms of the window (whole intervals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joins_per_100ms: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kib: Option<Rss>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// The server's own counters over the scenario (`GET /metrics`, when it answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<crate::metrics::ServerMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioResults>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<crate::churn::ChurnResults>,
    /// The server's memory and open descriptors at the window's edges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<crate::soak::Resources>,
    /// `mixed --sample-every`: the server and the latency sampled through the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<crate::soak::Sample>>,
    /// cluster-churn: what the window cost each instance and Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::probe::Usage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rss {
    pub before: u64,
    pub after: u64,
    pub per_connection: f64,
}

/// The server idling with every connection open (pings, keep-alives only).
#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    pub seconds: f64,
    pub server_cpu_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    #[serde(flatten)]
    pub params: Params,
    pub window_s: f64,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub connections: Connections,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_latency_us: Option<LatencySummary>,
    #[serde(flatten)]
    pub extra: Extra,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Fanout>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ticks: Option<Ticks>,
    pub client_cpu: Cpu,
    /// `null` when the server's pid is unknown (`--url` without `--server-pid`).
    pub server_cpu: Option<Cpu>,
    pub server_errors: u64,
    pub undecodable: u64,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub connected: u64,
    pub failed: u64,
    pub closed_early: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Fanout {
    pub sent: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub latency_us: Option<LatencySummary>,
}

#[derive(Debug, Serialize)]
pub struct Ticks {
    pub ticks: u64,
    pub expected_ticks_per_s: f64,
    pub ticks_per_s_per_client: PerClient,
    pub missing_seq: u64,
    pub out_of_order: u64,
    pub jitter_us: Option<LatencySummary>,
    pub lag_us: Option<LatencySummary>,
    pub negative_lag: u64,
}

#[derive(Debug, Serialize)]
pub struct PerClient {
    pub mean: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Cpu {
    pub cpu_ms: f64,
    pub percent_of_core: f64,
    /// Share of `cpu_ms` spent in the kernel, percent (what no server's code can shave);
    /// sampled, see `CpuUsage::kernel_us`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_percent: Option<f64>,
    /// Client: per frame received. Server (mixed only): per delivery or tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_msg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_delivery: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_tick: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_connection: Option<f64>,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Cpu {
    fn from(u: CpuUsage) -> Self {
        Self {
            cpu_ms: round(u.cpu_us as f64 / 1000.0, 1),
            percent_of_core: round(u.percent_of_core(), 1),
            kernel_percent: u.kernel_percent().map(|p| round(p, 1)),
            us_per_msg: None,
            us_per_delivery: None,
            us_per_tick: None,
            us_per_connection: None,
        }
    }
}

/// Which sections a scenario reports.
#[derive(Debug, Clone, Copy)]
pub struct Sections {
    pub latency: bool,
    pub ticks: bool,
    pub joins: bool,
}

/// Builds the report from what `rec` holds now.
pub fn build(rec: &Recorder, sections: Sections, timed_out: bool, error: Option<String>) -> Report {
    let window = rec.window();
    let wall = window.map_or(std::time::Duration::ZERO, |(a, b)| b.at - a.at);
    let secs = wall.as_secs_f64();
    let usage = |pick: fn(&crate::recorder::Mark) -> Option<_>| {
        let (a, b) = window?;
        Some(CpuUsage::between(pick(&a)?, pick(&b)?, wall))
    };
    let frames = rec.frames.load(Relaxed);
    let deliveries = rec.deliveries.load(Relaxed);
    let ticks = rec.ticks.load(Relaxed);
    let connected = rec.connected.load(Relaxed);

    let mut client_cpu = Cpu::from(usage(|m| m.client).unwrap_or(CpuUsage::between(
        Default::default(),
        Default::default(),
        wall,
    )));
    // connect counts no frames worth dividing by; it reports per connection below.
    client_cpu.us_per_msg = (!sections.joins)
        .then(|| usage(|m| m.client)?.us_per(frames))
        .flatten()
        .map(|v| round(v, 2));
    let server_cpu = usage(|m| m.server).map(|u| {
        let mut cpu = Cpu::from(u);
        let per = |count: u64| u.us_per(count).map(|v| round(v, 2));
        match (sections.latency, sections.ticks) {
            // mixed: tempo deliveries and ticks share the server's time.
            (true, true) => cpu.us_per_msg = per(deliveries + ticks),
            (true, false) => cpu.us_per_delivery = per(deliveries),
            (false, true) => cpu.us_per_tick = per(ticks),
            (false, false) => {}
        }
        if sections.joins {
            cpu.us_per_connection = per(connected);
        }
        cpu
    });
    if sections.joins {
        client_cpu.us_per_connection = usage(|m| m.client)
            .and_then(|u| u.us_per(connected))
            .map(|v| round(v, 2));
    }

    let fanout = sections.latency.then(|| {
        let expected = rec.expected.load(Relaxed);
        Fanout {
            sent: rec.sent.load(Relaxed),
            expected_deliveries: expected,
            deliveries,
            lost: expected.saturating_sub(deliveries),
            latency_us: LatencySummary::of(&rec.latency.merged()),
        }
    });
    let ticks_section = sections.ticks.then(|| {
        let per_s = |count: u64| (secs > 0.0).then(|| round(count as f64 / secs, 2));
        let range = rec.per_client_tick_range();
        Ticks {
            ticks,
            expected_ticks_per_s: round(1.0 / rec.tick_interval.as_secs_f64(), 2),
            ticks_per_s_per_client: PerClient {
                mean: if secs > 0.0 {
                    round(ticks as f64 / connected.max(1) as f64 / secs, 2)
                } else {
                    0.0
                },
                min: range.and_then(|r| per_s(r.0)),
                max: range.and_then(|r| per_s(r.1)),
            },
            missing_seq: rec.missing.load(Relaxed),
            out_of_order: rec.out_of_order.load(Relaxed),
            jitter_us: LatencySummary::of(&rec.jitter.merged()),
            lag_us: LatencySummary::of(&rec.lag.merged()),
            negative_lag: rec.negative_lag.load(Relaxed),
        }
    });
    Report {
        scenario: rec.scenario,
        params: rec.params.clone(),
        window_s: round(secs, 3),
        timed_out,
        error,
        connections: Connections {
            connected,
            failed: rec.connect_failed.load(Relaxed),
            closed_early: rec.closed_early.load(Relaxed),
            first_error: rec.first_error(),
        },
        join_latency_us: sections
            .joins
            .then(|| LatencySummary::of(&rec.join_latency.merged()))
            .flatten(),
        extra: crate::recorder::lock(&rec.extra).clone(),
        fanout,
        ticks: ticks_section,
        client_cpu,
        server_cpu,
        server_errors: rec.server_errors.load(Relaxed),
        undecodable: rec.undecodable.load(Relaxed),
    }
}

fn pct(s: &Option<LatencySummary>) -> String {
    match s {
        Some(s) => format!(
            "p50 {} p90 {} p99 {} p99.9 {} max {} µs",
            s.p50, s.p90, s.p99, s.p999, s.max
        ),
        None => "n/a".into(),
    }
}

/// A few lines for a person (stderr).
pub fn human(r: &Report) -> String {
    let p = &r.params;
    let mut out = format!(
        "== {}{} n={} window {:.1}s: {} connected, {} failed, {} closed early{}\n",
        r.scenario,
        p.preset.map_or(String::new(), |name| format!(" [{name}]")),
        p.n,
        r.window_s,
        r.connections.connected,
        r.connections.failed,
        r.connections.closed_early,
        if r.timed_out { " [TIMED OUT]" } else { "" }
    );
    if let Some(j) = &r.join_latency_us {
        let _ = writeln!(out, "   connect+join: {}", pct(&Some(*j)));
    }
    if let Some(f) = &r.fanout {
        let _ = writeln!(
            out,
            "   latency: {}; deliveries {}/{} (lost {})",
            pct(&f.latency_us),
            f.deliveries,
            f.expected_deliveries,
            f.lost
        );
    }
    if let Some(a) = &r.extra.audio {
        let _ = writeln!(
            out,
            "   audio: {} sharers, {} chunks accepted ({} refused), {:.0} kB/s in, {:.0} kB/s relayed; {} receivers lost chunks (max {})",
            a.sharers,
            a.chunks_accepted,
            a.chunks_refused,
            a.uplink_bytes_per_s / 1000.0,
            a.relayed_bytes_per_s / 1000.0,
            a.receivers_with_loss,
            a.max_lost_per_receiver
        );
    }
    if let Some(c) = &r.extra.churn {
        out.push_str(&crate::churn::human(c, r.connections.connected));
    }
    if let Some(samples) = &r.extra.samples {
        out.push_str(&crate::soak::human(samples));
    }
    if let Some(res) = &r.extra.resources {
        out.push_str(&res.human());
    }
    if let Some(cluster) = &r.extra.cluster {
        out.push_str(&cluster.human());
    }
    if let Some(t) = &r.ticks {
        let _ = writeln!(
            out,
            "   ticks: {:.2}/s/client (expect {}), missing seq {}, jitter {}, lag {}",
            t.ticks_per_s_per_client.mean,
            t.expected_ticks_per_s,
            t.missing_seq,
            pct(&t.jitter_us),
            pct(&t.lag_us)
        );
    }
    let _ = write!(
        out,
        "   client CPU {:.1}% of a core ({} µs/msg)",
        r.client_cpu.percent_of_core,
        r.client_cpu
            .us_per_msg
            .map_or("n/a".into(), |v| v.to_string())
    );
    if let Some(s) = &r.server_cpu {
        let _ = write!(out, "; server CPU {:.1}% of a core", s.percent_of_core);
        for (what, v) in [
            ("msg", s.us_per_msg),
            ("delivery", s.us_per_delivery),
            ("tick", s.us_per_tick),
            ("connection", s.us_per_connection),
        ] {
            if let Some(v) = v {
                let _ = write!(out, ", {v} µs/{what}");
            }
        }
    }
    if let Some(e) = &r.error {
        let _ = write!(out, "\n   error: {e}");
    }
    out
}
