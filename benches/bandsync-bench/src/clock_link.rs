//! What both clock scenarios share: a client behind its own fault-proxy link, heartbeating
//! at the estimator's cadence while it follows the session, with a local clock skewed from
//! the wall clock; the truth it is measured against; and percentiles.

use bandsync_client::protocol::client::Heartbeat;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::ClientEvent;
use bandsync_client::{wall_clock_ms, ClockEstimate, ClockEstimator, Incoming, Timeline, WsClient};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One client's view of the shared timeline: its clock estimate and its transport.
#[derive(Debug, Default)]
pub struct View {
    pub clock: ClockEstimator,
    /// The transport, and any change announced ahead of its instant.
    pub timeline: Timeline,
    /// This client's local clock minus the wall clock, ms.
    pub skew: f64,
}

impl View {
    pub fn new(skew: f64) -> Self {
        Self {
            skew,
            ..Self::default()
        }
    }

    /// The position this client computes at wall time `wall_ms` (its local clock there,
    /// plus its offset, is its idea of server time), with the tempo in effect and the
    /// session version it knows.
    pub fn position_at_wall(&self, wall_ms: f64) -> Option<(f64, f64, u64)> {
        let server = wall_ms + self.skew + self.clock.offset()?;
        let transport = self.timeline.transport_at(server)?;
        Some((
            transport.position_at(server),
            transport.tempo,
            self.timeline.version(),
        ))
    }

    fn apply(&mut self, event: &ServerEvent) {
        self.timeline.apply(event);
    }
}

pub type Shared = Arc<Mutex<View>>;

pub fn lock(view: &Shared) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|e| e.into_inner())
}

/// Heartbeats (at [`ClockEstimator::next_heartbeat_in`]) and applies every event to
/// `view` until `until`; at each of `checkpoints` (after the first heartbeat) it records
/// the estimate. Returns those estimates (`None` where there was none yet).
pub async fn drive(
    ws: &mut WsClient,
    view: &Shared,
    until: Instant,
    checkpoints: &[Duration],
) -> anyhow::Result<Vec<Option<ClockEstimate>>> {
    let skew = lock(view).skew;
    let local = || wall_clock_ms() + skew;
    let started = Instant::now();
    let mut recorded = Vec::with_capacity(checkpoints.len());
    loop {
        let next_checkpoint = checkpoints.get(recorded.len()).map(|c| started + *c);
        let wait = lock(view).clock.next_heartbeat_in(local());
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            _ = tokio::time::sleep_until(next_checkpoint.unwrap_or(until)), if next_checkpoint.is_some() => {
                recorded.push(lock(view).clock.estimate());
            }
            _ = tokio::time::sleep(wait) => {
                let t0 = local();
                ws.send(ClientEvent::Heartbeat(Heartbeat { t0 })).await?;
                lock(view).clock.heartbeat_sent(t0);
            }
            incoming = ws.next() => match incoming? {
                Incoming::Frame { frame, wall_ms, .. } => {
                    let mut v = lock(view);
                    match &frame.event {
                        ServerEvent::HeartbeatResponse(r) => {
                            v.clock.add_heartbeat(r, wall_ms + skew);
                        }
                        ServerEvent::Error(e) => anyhow::bail!("server error: {e:?}"),
                        event => v.apply(event),
                    }
                }
                Incoming::Closed { code, reason } => anyhow::bail!("closed: {code:?} {reason}"),
            },
        }
    }
    Ok(recorded)
}

/// The server's clock minus this machine's wall clock, from the shortest of 50 direct
/// round trips (no proxy): (offset, its round trip). On one machine it is ~0; measuring it
/// makes the truth independent of that.
pub async fn truth(ws_url: &str) -> anyhow::Result<(f64, f64)> {
    let mut ws = WsClient::connect(ws_url).await?;
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..50 {
        let s = ws.heartbeat(Duration::from_secs(5)).await?;
        if best.is_none_or(|(_, rtt)| s.round_trip < rtt) {
            best = Some((s.offset, s.round_trip));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = ws.close().await;
    best.ok_or_else(|| anyhow::anyhow!("no heartbeat answered"))
}

/// The `host:port` of a `ws://` URL, resolved.
pub async fn socket_addr(ws_url: &str) -> anyhow::Result<SocketAddr> {
    let url = reqwest::Url::parse(ws_url)?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let first = tokio::net::lookup_host((host, port)).await?.next();
    first.ok_or_else(|| anyhow::anyhow!("{ws_url}: no address"))
}

/// A skew in ±500 ms for client `i` (splitmix64 of the seed), so each client must find a
/// different, non-zero offset.
pub fn skew_ms(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 1_000.0
}

/// p50, p95, p99 and max of `values` (nearest rank), or zeros when empty.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn spread(mut values: Vec<f64>) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    values.sort_by(f64::total_cmp);
    let rank =
        |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    Spread {
        count: values.len(),
        p50: rank(0.50),
        p95: rank(0.95),
        p99: rank(0.99),
        max: values[values.len() - 1],
    }
}

/// The proxy's one-way delays, per direction, for the report: as measured (read to
/// write: the drawn delay, the timer's rounding, the order rule and any time the host kept
/// the bench off the CPU) and as drawn by the model.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Injected {
    pub chunks: u64,
    pub mean_ms: f64,
    pub sd_ms: f64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub drawn_mean_ms: f64,
    pub drawn_sd_ms: f64,
}

/// Summarizes the recorded delays of many links together (up, down).
pub fn injected(proxies: &[faultproxy::FaultProxy]) -> (Injected, Injected) {
    let (mut up, mut down, mut up_drawn, mut down_drawn) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in proxies {
        let (u, d) = p.delays();
        up.extend(u);
        down.extend(d);
        let (u, d) = p.drawn();
        up_drawn.extend(u);
        down_drawn.extend(d);
    }
    let one = |v: &[f64], drawn: &[f64]| {
        let s = faultproxy::stats::summarize(v);
        let d = faultproxy::stats::summarize(drawn);
        let ranks = spread(v.to_vec());
        Injected {
            chunks: v.len() as u64,
            mean_ms: s.mean_ms,
            sd_ms: s.sd_ms,
            min_ms: s.min_ms,
            p50_ms: ranks.p50,
            p99_ms: ranks.p99,
            max_ms: s.max_ms,
            drawn_mean_ms: d.mean_ms,
            drawn_sd_ms: d.sd_ms,
        }
    };
    (one(&up, &up_drawn), one(&down, &down_drawn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_nearest_ranks() {
        let s = spread((1..=100).map(f64::from).collect());
        assert_eq!(
            (s.count, s.p50, s.p95, s.p99, s.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(spread(Vec::new()).count, 0);
    }

    #[test]
    fn skews_differ_and_stay_within_half_a_second() {
        let skews: Vec<f64> = (0..50).map(|i| skew_ms(13, i)).collect();
        assert!(skews.iter().all(|s| s.abs() <= 500.0));
        assert!(skews.windows(2).all(|w| w[0] != w[1]));
    }
}
