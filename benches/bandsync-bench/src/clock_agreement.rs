//! `clock-agreement`: N clients (at least two) behind independent jittered links follow one
//! playing session; every few ms each computes the position at the same true instant (one
//! process, one wall clock: each reads it through its own skewed local clock and its own
//! offset estimate), and the difference of every pair is reported in ms (beats × 60000 /
//! tempo). More than two clients give many independent pairs, so the percentiles describe
//! the estimator rather than one draw of two links.
//!
//! A leader on a direct connection changes the tempo every [`CHANGE_EVERY`]. It schedules
//! each change [`SCHEDULE_LEAD_MS`] ahead (`set_tempo` with `at`) when the server accepts
//! that, so both clients know of it before its instant; a server that refuses scheduling
//! gets immediate changes, and the samples between a change's instant and the moment both
//! clients have it are reported apart (`in_flight`): there the clients disagree by
//! design, by the tempo difference times the link delay.

use crate::clock_link::{self, drive, lock, spread, Injected, Shared, Spread, View};
use crate::clock_plan::ClockArgs;
use crate::plan::Settings;
use anyhow::Context as _;
use bandsync_client::protocol::client::{Play, Schedule, SetTempo};
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, Role};
use bandsync_client::{wall_clock_ms, WsClient};
use faultproxy::{FaultProxy, Faults, Link};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long the clients heartbeat before the comparison starts: the join burst.
pub const WARM_UP: Duration = Duration::from_millis(2_500);

/// How often the leader changes the tempo (alternately to 150 and 120 bpm).
pub const CHANGE_EVERY: Duration = Duration::from_millis(2_500);

/// How far ahead a scheduled change is sent: past the worst link delay, so both clients
/// hold it before its instant.
pub const SCHEDULE_LEAD_MS: f64 = 500.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub jitter_sd_ms: f64,
    pub jitter_model: &'static str,
    pub seed: u64,
    pub sample_every_ms: u64,
    /// "scheduled" (set_tempo with `at`) or "immediate (...why)".
    pub tempo_changes: String,
    pub changes_sent: u64,
    /// |position A − position B| in ms, at every sample but those `in_flight`.
    pub difference_ms: Spread,
    /// The samples where one client applies a change the other has not received yet (only
    /// immediate changes: a scheduled one reaches both before its instant).
    pub in_flight: Spread,
    pub injected_up: Injected,
    pub injected_down: Injected,
    /// Each client's offset error against the truth at the end, ms.
    pub final_offset_error_ms: Vec<f64>,
    /// The p99 of each pair's difference, the worst pair's.
    pub worst_pair_p99_ms: f64,
}

/// Runs the scenario for `s.duration` of comparison against the server at `ws_url`.
pub async fn run(ws_url: &str, s: &Settings, c: &ClockArgs) -> anyhow::Result<Report> {
    let upstream = clock_link::socket_addr(ws_url).await?;
    let (truth, _) = clock_link::truth(ws_url)
        .await
        .context("measuring the truth")?;
    let session = format!("{}-clock-agreement", s.session_base);
    let mut leader = WsClient::connect(ws_url).await?;
    leader
        .join(&session, Some(Role::Leader), None)
        .await
        .context("the leader joins")?;
    // A change is acknowledged by the state_update every member gets (no id); a no-op by
    // a sync_response and a refusal by an error, both with the id.
    command(&mut leader, ClientEvent::SetTempo(SetTempo::new(120.0)))
        .await
        .context("set_tempo 120")?;
    command(&mut leader, ClientEvent::Play(Play::new(Some(0.0))))
        .await
        .context("play")?;

    let link = Link {
        jitter_sd_ms: c.jitter_ms,
        jitter: c.jitter_model.proxy(),
        ..Link::default()
    };
    let mut proxies = Vec::new();
    let mut views: Vec<Shared> = Vec::new();
    let mut tasks = Vec::new();
    let until = Instant::now() + WARM_UP + s.duration + Duration::from_millis(200);
    for i in 0..s.n.max(2) {
        let faults = Faults {
            up: link,
            down: link,
            seed: c.clock_seed.wrapping_add(i),
        };
        let proxy = FaultProxy::start(upstream, faults).await?;
        let mut ws = WsClient::connect(&format!("ws://{}/ws", proxy.addr())).await?;
        let view = Arc::new(Mutex::new(View::new(clock_link::skew_ms(c.clock_seed, i))));
        let snapshot = ws
            .join(&session, Some(Role::Follower), None)
            .await
            .with_context(|| format!("follower {i}'s join through the proxy"))?;
        lock(&view)
            .timeline
            .apply(&ServerEvent::Snapshot(snapshot.clone()));
        let v = view.clone();
        tasks.push(tokio::spawn(async move {
            let result = drive(&mut ws, &v, until, &[]).await;
            let _ = ws.close().await;
            result
        }));
        proxies.push(proxy);
        views.push(view);
    }
    tokio::time::sleep(WARM_UP).await;

    let sampling = sample(&views, s.duration, Duration::from_millis(c.sample_every_ms));
    let changing = change_tempo(&mut leader, truth, s.duration);
    let ((pairs, in_flight), (changes_sent, mode)) = tokio::join!(sampling, changing);
    // Before the followers stop reading: after that the proxies hold what the server sends.
    let (injected_up, injected_down) = clock_link::injected(&proxies);
    for (i, task) in tasks.into_iter().enumerate() {
        task.await?
            .with_context(|| format!("follower {i} through its proxy"))?;
    }
    let _ = leader.close().await;
    let error = |v: &Shared| {
        let v = lock(v);
        v.clock.offset().map_or(f64::NAN, |o| o - (truth - v.skew))
    };
    Ok(Report {
        jitter_sd_ms: c.jitter_ms,
        jitter_model: c.jitter_model.name(),
        seed: c.clock_seed,
        sample_every_ms: c.sample_every_ms,
        tempo_changes: mode,
        changes_sent,
        worst_pair_p99_ms: pairs
            .iter()
            .map(|p| spread(p.clone()).p99)
            .fold(0.0, f64::max),
        difference_ms: spread(pairs.concat()),
        in_flight: spread(in_flight),
        injected_up,
        injected_down,
        final_offset_error_ms: views.iter().map(error).collect(),
    })
}

/// Compares every pair of views every `every` for `duration`: (each pair's differences,
/// the samples where one has an immediate change in effect that the other has not).
async fn sample(
    views: &[Shared],
    duration: Duration,
    every: Duration,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let pairs: Vec<(usize, usize)> = (0..views.len())
        .flat_map(|i| (i + 1..views.len()).map(move |j| (i, j)))
        .collect();
    let mut agreed = vec![Vec::new(); pairs.len()];
    let mut in_flight = Vec::new();
    let mut tick = tokio::time::interval(every);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        tick.tick().await;
        let wall = wall_clock_ms();
        let at: Vec<_> = views
            .iter()
            .map(|v| lock(v).position_at_wall(wall))
            .collect();
        for (k, &(i, j)) in pairs.iter().enumerate() {
            let (Some((pa, ta, va)), Some((pb, tb, vb))) = (at[i], at[j]) else {
                continue;
            };
            let ms = (pa - pb).abs() * 60_000.0 / ta;
            // One has a change the other has not, and it is in effect: an immediate change
            // on its way (a scheduled one is known ahead, so both apply it at its instant).
            if va != vb && ta != tb {
                in_flight.push(ms);
            } else {
                agreed[k].push(ms);
            }
        }
    }
    (agreed, in_flight)
}

/// Changes the tempo every [`CHANGE_EVERY`] for `duration`: scheduled `SCHEDULE_LEAD_MS`
/// ahead if the server takes `at`, else at once. Returns (changes sent, how).
async fn change_tempo(leader: &mut WsClient, truth: f64, duration: Duration) -> (u64, String) {
    let mut scheduled = true;
    let mut mode = "scheduled (set_tempo with at, 500 ms ahead)".to_owned();
    let mut sent = 0;
    let end = Instant::now() + duration;
    loop {
        // Reads what the session sends the leader (ticks) meanwhile, so its socket never
        // backs up and its pings are answered.
        let wake = Instant::now() + CHANGE_EVERY;
        while let Ok(Ok(_)) = tokio::time::timeout_at(wake, leader.next()).await {}
        if Instant::now() + Duration::from_millis(600) > end {
            break;
        }
        let tempo = if sent % 2 == 0 { 150.0 } else { 120.0 };
        let schedule = Schedule {
            at: scheduled.then(|| wall_clock_ms() + truth + SCHEDULE_LEAD_MS),
            quantum: None,
        };
        let event = ClientEvent::SetTempo(SetTempo { tempo, schedule });
        match command(leader, event).await {
            Ok(ServerEvent::Error(e)) if scheduled => {
                scheduled = false;
                mode = format!("immediate (the server refused at: {:?})", e.code);
                let now = ClientEvent::SetTempo(SetTempo::new(tempo));
                if let Ok(ServerEvent::StateUpdate(_)) = command(leader, now).await {
                    sent += 1;
                }
            }
            Ok(ServerEvent::StateUpdate(_)) => sent += 1,
            Ok(other) => {
                mode = format!("{mode}; stopped: {} in reply", other.type_name());
                break;
            }
            Err(e) => {
                mode = format!("{mode}; stopped: {e:#}");
                break;
            }
        }
    }
    (sent, mode)
}

/// Sends a leader's command and waits for what answers it: the `state_update` it caused,
/// or the `sync_response` or `error` carrying its id.
async fn command(leader: &mut WsClient, event: ClientEvent) -> anyhow::Result<ServerEvent> {
    let id = leader.send(event).await?;
    let frame = leader
        .wait_for(
            |f| matches!(f.event, ServerEvent::StateUpdate(_)) || f.id.as_ref() == Some(&id),
            Duration::from_secs(5),
        )
        .await?;
    Ok(frame.event)
}

impl Report {
    pub fn human(&self) -> String {
        format!(
            "clock-agreement: {} clients, jitter SD {} ms ({}), tempo changes: {} x {}\n  difference p50 {:.3} p99 {:.3} max {:.3} ms over {} pair samples (worst pair's p99 {:.3}); in flight {} samples, max {:.3} ms\n  {}\n  final offset errors {:.3?} ms",
            self.final_offset_error_ms.len(),
            self.jitter_sd_ms,
            self.jitter_model,
            self.changes_sent,
            self.tempo_changes,
            self.difference_ms.p50,
            self.difference_ms.p99,
            self.difference_ms.max,
            self.difference_ms.count,
            self.worst_pair_p99_ms,
            self.in_flight.count,
            self.in_flight.max,
            crate::clock_accuracy::injected_text(&self.injected_up, &self.injected_down),
            self.final_offset_error_ms,
        )
    }
}
