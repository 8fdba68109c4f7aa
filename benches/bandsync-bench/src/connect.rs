//! `connect`: N connections, each joining one of S sessions, at most
//! `--connect-concurrency` at a time: connect+join latency, joins per second, the joins done
//! in each 100 ms (the pace), and the server's resident memory before and after (KiB per
//! connection). Then the connections are held for D seconds to show what the server spends
//! idling with them (pings).

use crate::fleet::{self, Member, Transport};
use crate::procfs::{read_cpu, read_rss_kib, CpuUsage};
use crate::progress::WindowBar;
use crate::recorder::{lock, Recorder};
use crate::report::{Hold, Rss};
use crate::target::Endpoints;
use crate::wire::Track;
use crate::Settings;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Time for the server to finish per-join work (room_stats) before RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// How often the joins done so far are sampled while connecting.
const PACE_EVERY: Duration = Duration::from_millis(100);

pub async fn run(s: &Settings, ep: &Endpoints, rec: Arc<Recorder>) -> anyhow::Result<()> {
    let sessions: Vec<Arc<str>> = (0..s.sessions)
        .map(|i| format!("{}-connect-{i}", s.session_base).into())
        .collect();
    let members = (0..s.n as usize)
        .map(|hint| Member {
            session: sessions[hint % sessions.len()].clone(),
            hint,
            joined: None,
        })
        .collect();
    let transport = Transport::Ws {
        url: ep.ws_url.as_str().into(),
    };
    let track = Track {
        ticks: false,
        latency: false,
    };
    let rss_before = ep.pid.and_then(|pid| read_rss_kib(Some(pid)));

    rec.begin_window();
    let started = Instant::now();
    let (stop_pace, pace_stopped) = oneshot::channel();
    let pace = tokio::spawn(join_pace(rec.clone(), pace_stopped));
    let fleet = fleet::open(&rec, &transport, members, s.concurrency, track).await;
    let connect_s = started.elapsed().as_secs_f64();
    rec.end_window();
    let _ = stop_pace.send(());
    let joins_per_100ms = pace.await.unwrap_or_default();
    let connected = rec.connected.load(Relaxed);
    {
        let mut extra = lock(&rec.extra);
        extra.connect_s = Some((connect_s * 1000.0).round() / 1000.0);
        extra.joins_per_s = Some((connected as f64 / connect_s).round());
        let frames = rec.frames.load(Relaxed) as f64;
        extra.frames_per_join = Some((frames / connected.max(1) as f64 * 100.0).round() / 100.0);
        extra.joins_per_100ms = Some(joins_per_100ms);
    }

    tokio::time::sleep(SETTLE).await;
    if let (Some(pid), Some(before)) = (ep.pid, rss_before) {
        if let Some(after) = read_rss_kib(Some(pid)) {
            let per = (after as f64 - before as f64) / connected.max(1) as f64;
            lock(&rec.extra).rss_kib = Some(Rss {
                before,
                after,
                per_connection: (per * 100.0).round() / 100.0,
            });
        }
    }

    let bar = WindowBar::start(&rec, s.duration);
    let cpu_before = ep.pid.and_then(|pid| read_cpu(Some(pid)));
    let hold_start = Instant::now();
    tokio::time::sleep(s.duration).await;
    let cpu_after = ep.pid.and_then(|pid| read_cpu(Some(pid)));
    let wall = hold_start.elapsed();
    drop(bar);
    let percent = cpu_before
        .zip(cpu_after)
        .map(|(a, b)| (CpuUsage::between(a, b, wall).percent_of_core() * 10.0).round() / 10.0);
    lock(&rec.extra).hold = Some(Hold {
        seconds: (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        server_cpu_percent: percent,
    });

    fleet.stop(Duration::from_secs(5)).await;
    Ok(())
}

/// Joins done in each `PACE_EVERY` of the window (whole intervals only), until `stop`. A
/// server that slows down as connections pile up shows it here, and so does a run whose
/// joins came early: the coalesced `room_stats` then reach more members each, which
/// `frames_per_join` counts.
async fn join_pace(rec: Arc<Recorder>, mut stop: oneshot::Receiver<()>) -> Vec<u64> {
    let mut every = tokio::time::interval(PACE_EVERY);
    every.tick().await; // the first tick is at once
    let (mut pace, mut before) = (Vec::new(), 0);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = &mut stop => return pace,
        }
        let joined = rec.connected.load(Relaxed);
        pace.push(joined - before);
        before = joined;
    }
}
