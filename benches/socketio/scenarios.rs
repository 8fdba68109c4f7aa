//! The two measurements, run against one server with its fleet joined: fan-out of the
//! leader's `set_tempo` to every follower, and the 16 ms ticks of a playing session.

use crate::eio;
use crate::fleet::{self, Client, Shared};
use crate::servers::Server;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The ticks' nominal interval (both servers' `SCROLL_TICK_INTERVAL`, 16 ms by default).
pub const TICK_INTERVAL_MS: f64 = 16.0;

/// How long after the last send the fan-out waits for stragglers.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);

/// Ticks before the window opens: the first ones after `play` are not steady state.
const TICK_WARMUP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct FanoutStats {
    pub events: u32,
    pub followers: usize,
    pub delivered: u64,
    /// Leader's send to a follower's receipt, over every delivery, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Per event, send to the last follower's receipt: median and worst, ms.
    pub last_p50_ms: f64,
    pub last_max_ms: f64,
    /// Server CPU from the first send to the last receipt, per delivery.
    pub cpu_per_delivery_us: f64,
    pub server_cpu_pct: f64,
    pub driver_cpu_pct: f64,
}

#[derive(Debug, Clone)]
pub struct TickStats {
    /// Ticks per second per follower: mean and the slowest follower.
    pub rate_mean: f64,
    pub rate_min: f64,
    /// Gaps in a follower's `seq` (ticks the server skipped or dropped for it).
    pub missing: u64,
    /// |inter-arrival gap - 16 ms| over every follower's consecutive ticks, ms.
    pub jitter_p50_ms: f64,
    pub jitter_p99_ms: f64,
    pub jitter_max_ms: f64,
    pub server_cpu_s: f64,
    pub server_cpu_pct: f64,
    pub cpu_per_tick_us: f64,
    pub driver_cpu_pct: f64,
}

/// The `q` quantile (0 to 1) of sorted values (nearest rank); 0 for none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sort(values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
}

/// CPU seconds this process (the load driver) has used so far.
fn driver_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| crate::servers::parse_cpu_seconds(&stat))
        .unwrap_or(0.0)
}

/// CPU readings of the server and the driver over one window.
struct Window {
    start: Instant,
    server: f64,
    driver: f64,
}

impl Window {
    fn open(server: &Server) -> Result<Self, String> {
        Ok(Self {
            start: Instant::now(),
            server: server.cpu_seconds()?,
            driver: driver_cpu_seconds(),
        })
    }

    /// (wall seconds, server CPU seconds, driver CPU seconds) since `open`.
    fn close(&self, server: &Server) -> Result<(f64, f64, f64), String> {
        Ok((
            self.start.elapsed().as_secs_f64(),
            server.cpu_seconds()? - self.server,
            driver_cpu_seconds() - self.driver,
        ))
    }
}

/// The leader sends `events` `set_tempo`s `spacing` apart; every follower's receipt of each
/// resulting `state_update` is timed against the leader's send (one process, one clock).
pub async fn fanout(
    server: &Server,
    leader: &Client,
    followers: &[Client],
    shared: &Shared,
    events: u32,
    spacing: Duration,
) -> Result<FanoutStats, String> {
    let expected = u64::from(events) * followers.len() as u64;
    shared.follower_updates.store(0, Relaxed);
    shared.record_updates.store(true, Relaxed);
    let window = Window::open(server)?;
    for event in 0..events {
        tokio::time::sleep_until((window.start + spacing * event).into()).await;
        let data = serde_json::json!({ "tempo": fleet::tempo_of(event) });
        leader
            .send(eio::event("set_tempo", &data), Some(event))
            .await?;
    }
    let deadline = Instant::now() + DELIVERY_GRACE;
    while shared.follower_updates.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (wall, server_cpu, driver_cpu) = window.close(server)?;
    shared.record_updates.store(false, Relaxed);

    let mut sent = vec![None; events as usize];
    for &(event, at) in &leader.log.lock().unwrap().sent {
        sent[event as usize] = Some(at);
    }
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut last = vec![0.0f64; events as usize];
    for follower in followers {
        let log = follower.log.lock().unwrap();
        let mut seen = vec![false; events as usize];
        for &(event, at) in &log.updates {
            let (Some(sent_at), false) = (sent[event as usize], seen[event as usize]) else {
                continue;
            };
            seen[event as usize] = true;
            let ms = at.saturating_duration_since(sent_at).as_secs_f64() * 1e3;
            latencies.push(ms);
            last[event as usize] = last[event as usize].max(ms);
        }
    }
    let delivered = latencies.len() as u64;
    sort(&mut latencies);
    sort(&mut last);
    Ok(FanoutStats {
        events,
        followers: followers.len(),
        delivered,
        p50_ms: quantile(&latencies, 0.5),
        p99_ms: quantile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        last_p50_ms: quantile(&last, 0.5),
        last_max_ms: last.last().copied().unwrap_or(0.0),
        cpu_per_delivery_us: server_cpu * 1e6 / delivered.max(1) as f64,
        server_cpu_pct: server_cpu * 100.0 / wall,
        driver_cpu_pct: driver_cpu * 100.0 / wall,
    })
}

/// The leader plays; after a warm-up, every follower's ticks are recorded for `window`;
/// then the leader pauses.
pub async fn ticks(
    server: &Server,
    leader: &Client,
    followers: &[Client],
    shared: &Shared,
    window_len: Duration,
) -> Result<TickStats, String> {
    leader
        .send(eio::event("play", &serde_json::json!({})), None)
        .await?;
    tokio::time::sleep(TICK_WARMUP).await;
    shared.record_ticks.store(true, Relaxed);
    let window = Window::open(server)?;
    tokio::time::sleep(window_len).await;
    let (wall, server_cpu, driver_cpu) = window.close(server)?;
    shared.record_ticks.store(false, Relaxed);
    leader
        .send(eio::event("pause", &serde_json::json!({})), None)
        .await?;

    let mut rates = Vec::with_capacity(followers.len());
    let mut jitter = Vec::new();
    let mut missing = 0u64;
    let mut delivered = 0u64;
    for follower in followers {
        let log = follower.log.lock().unwrap();
        delivered += log.ticks.len() as u64;
        rates.push(log.ticks.len() as f64 / wall);
        for pair in log.ticks.windows(2) {
            let ((seq_a, at_a), (seq_b, at_b)) = (pair[0], pair[1]);
            missing += seq_b.saturating_sub(seq_a).saturating_sub(1);
            let gap_ms = at_b.saturating_duration_since(at_a).as_secs_f64() * 1e3;
            jitter.push((gap_ms - TICK_INTERVAL_MS).abs());
        }
    }
    sort(&mut rates);
    sort(&mut jitter);
    Ok(TickStats {
        rate_mean: rates.iter().sum::<f64>() / rates.len().max(1) as f64,
        rate_min: rates.first().copied().unwrap_or(0.0),
        missing,
        jitter_p50_ms: quantile(&jitter, 0.5),
        jitter_p99_ms: quantile(&jitter, 0.99),
        jitter_max_ms: jitter.last().copied().unwrap_or(0.0),
        server_cpu_s: server_cpu,
        server_cpu_pct: server_cpu * 100.0 / wall,
        cpu_per_tick_us: server_cpu * 1e6 / delivered.max(1) as f64,
        driver_cpu_pct: driver_cpu * 100.0 / wall,
    })
}
