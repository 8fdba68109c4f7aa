//! `churn`: N followers of one session, each dropping its connection every `drop_every`
//! and coming back `away` later with its resume token (and the last version it saw), the
//! drops staggered so 1/`drop_every` of the clients drop each second; the leader changes
//! the state `rate` times a second and churns too. Measures the share of (client, version)
//! pairs delivered as events or covered by a snapshot, the resumes that kept identity and
//! role, and the server's memory and descriptors before and after.
//!
//! Given several instances of a cluster (`cluster-churn`), followers join them in turn
//! and every resume goes to a random one; a [`Probe`] then reads what the window cost each
//! instance and Redis.

use crate::churn_leader::{ChurnLeader, LeaderPlan};
use crate::churn_member::{Churn, Follower, ResumeCounters};
use crate::churn_tally::{delivery, Delivery};
use crate::fanout::SETTLE;
use crate::probe::Probe;
use crate::procfs::{read_fd_count, read_rss_kib};
use crate::progress::WindowBar;
use crate::recorder::{lock, Recorder};
use crate::soak::Resources;
use crate::target::Endpoints;
use crate::Settings;
use anyhow::bail;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long after the last change clients may take to see it (and a late resume to land).
const DRAIN: Duration = Duration::from_secs(3);

/// Resume outcomes in the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resumes {
    pub attempted: u64,
    pub resumed: u64,
    pub kept_identity: u64,
    pub kept_role: u64,
    pub failed: u64,
    /// Reconnects that landed on another instance than the one left (cluster only).
    pub moved: u64,
    /// Share of attempts that came back with the same identity and role.
    pub kept_role_share: f64,
}

impl Resumes {
    fn of(c: &ResumeCounters) -> Self {
        let attempted = c.attempted.load(Relaxed);
        let kept_role = c.kept_role.load(Relaxed);
        Self {
            attempted,
            resumed: c.resumed.load(Relaxed),
            kept_identity: c.kept_identity.load(Relaxed),
            kept_role,
            failed: c.failed.load(Relaxed),
            moved: c.moved.load(Relaxed),
            kept_role_share: if attempted > 0 {
                (kept_role as f64 / attempted as f64 * 1e6).round() / 1e6
            } else {
                0.0
            },
        }
    }
}

/// What a churn run measured (the `churn` object of its JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnResults {
    pub drop_every_s: f64,
    pub away_s: f64,
    /// Whether followers resumed with `lastVersion` (asking for a replay).
    pub last_version: bool,
    /// State changes the leader sent, and those skipped while it was away.
    pub state_events_sent: u64,
    pub skipped_leader_away: u64,
    /// The versions counted: after the window opened, up to the last one.
    pub first_version: u64,
    pub last_version_seen: u64,
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Replayed `state_update`s the followers received.
    pub replayed_events: u64,
    pub resumes: Resumes,
    pub leader_resumes: Resumes,
    /// Seeds the instance picks (cluster only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The summary line.
pub fn human(c: &ChurnResults, clients: u64) -> String {
    let d = &c.delivery;
    let moved = match c.seed {
        Some(_) => format!(
            "; on another instance {} (leader {})",
            c.resumes.moved, c.leader_resumes.moved
        ),
        None => String::new(),
    };
    format!(
        "   churn: {} versions x {clients} clients: delivered {:.4} (as events {:.4}: {} replayed; {} via snapshot, {} missing); resumes kept role {}/{} (leader {}/{}){moved}\n",
        d.versions,
        d.delivered_share,
        d.event_share,
        d.replayed,
        d.via_snapshot,
        d.missing,
        c.resumes.kept_role,
        c.resumes.attempted,
        c.leader_resumes.kept_role,
        c.leader_resumes.attempted
    )
}

fn resources(pid: Option<u32>) -> (Option<u64>, Option<u64>) {
    (
        pid.and_then(|p| read_rss_kib(Some(p))),
        pid.and_then(read_fd_count),
    )
}

/// `eps`: the instances (one, or a cluster's with `probe` reading them and Redis); the
/// leader and the first follower join `eps[0]`.
pub async fn run(
    s: &Settings,
    eps: &[Endpoints],
    probe: Option<&Probe>,
    rec: Arc<Recorder>,
) -> anyhow::Result<()> {
    let c = &s.churn;
    let ep = &eps[0];
    let session: Arc<str> = format!("{}-churn", s.session_base).into();
    let urls: Arc<[Arc<str>]> = eps.iter().map(|e| e.ws_url.as_str().into()).collect();
    let seed = s.cluster.seed;
    let counters = Arc::new(ResumeCounters::default());
    let leader_counters = ResumeCounters::default();
    let connecting = Arc::new(Semaphore::new(s.concurrency));
    let mut leader = ChurnLeader::join(urls.clone(), &session, seed).await?;

    // Followers join, then read until told when the window starts.
    let (go_tx, go_rx) = watch::channel(None::<(Instant, Instant)>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel(64);
    let mut tasks = JoinSet::new();
    for i in 0..s.n {
        let (urls, session, counters, connecting) = (
            urls.clone(),
            session.clone(),
            counters.clone(),
            connecting.clone(),
        );
        let (mut go, stop, ready) = (go_rx.clone(), stop_rx.clone(), ready_tx.clone());
        let (n, every, away, replay) = (s.n, c.drop_every, c.away, c.last_version);
        tasks.spawn(async move {
            let mut f = Follower::new(counters, crate::spread::client_seed(seed, i + 1));
            let mut plan = Churn {
                home: crate::spread::home(i, urls.len()),
                urls,
                session,
                first_drop: Instant::now(),
                every,
                away,
                until: Instant::now(),
                last_version: replay,
            };
            let mut ws = match f.join(&plan, &connecting).await {
                Ok(ws) => ws,
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return f.tally;
                }
            };
            let _ = ready.send(Ok(())).await;
            drop(ready);
            let go_at = async { go.wait_for(Option::is_some).await.ok().and_then(|g| *g) };
            let Some((start, until)) = f.read_while(&mut ws, go_at).await.flatten() else {
                return f.tally;
            };
            plan.first_drop = start + every.mul_f64((i as f64 + 0.5) / n as f64);
            plan.until = until;
            f.churn(ws, &plan, &connecting, stop).await;
            f.tally
        });
    }
    drop(ready_tx);
    for _ in 0..s.n {
        match ready_rx.recv().await {
            Some(Ok(())) => {
                rec.connected.fetch_add(1, Relaxed);
            }
            Some(Err(e)) => {
                rec.connect_failed.fetch_add(1, Relaxed);
                rec.note_error(|| e);
            }
            None => break,
        }
    }
    if rec.connected.load(Relaxed) == 0 {
        bail!("no follower could join");
    }
    leader.read_until(Instant::now() + SETTLE).await?;

    let before = resources(ep.pid);
    let probed_before = match probe {
        Some(p) => Some(p.read().await),
        None => None,
    };
    rec.begin_window();
    let bar = WindowBar::start(&rec, s.duration);
    let first_version = leader.version + 1;
    let start = Instant::now();
    let until = start + s.duration;
    let _ = go_tx.send(Some((start, until)));
    let plan = LeaderPlan {
        start,
        until,
        period: Duration::from_secs_f64(1.0 / s.rate),
        first_drop: start + c.drop_every / 2,
        every: c.drop_every,
        away: c.away,
    };
    let driven = leader.drive(plan, &leader_counters).await;
    if driven.is_ok() {
        leader.read_until(Instant::now() + DRAIN).await?;
    }
    let after = resources(ep.pid);
    let probed_after = match probe {
        Some(p) => Some(p.read().await),
        None => None,
    };
    rec.end_window();
    drop(bar);

    let _ = stop_tx.send(true);
    let mut tallies = Vec::with_capacity(s.n as usize);
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(tally) = joined {
                tallies.push(tally);
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    let last = leader.version;
    let results = ChurnResults {
        drop_every_s: c.drop_every.as_secs_f64(),
        away_s: c.away.as_secs_f64(),
        last_version: c.last_version,
        state_events_sent: leader.sent,
        skipped_leader_away: leader.skipped,
        first_version,
        last_version_seen: last,
        delivery: delivery(&tallies, first_version, last),
        replayed_events: counters.replayed_events.load(Relaxed),
        resumes: Resumes::of(&counters),
        leader_resumes: Resumes::of(&leader_counters),
        seed: probe.map(|_| seed),
    };
    rec.server_errors
        .fetch_add(counters.server_errors.load(Relaxed), Relaxed);
    if let Some(e) = lock(&counters.first_error).clone() {
        rec.note_error(|| e);
    }
    {
        let mut extra = lock(&rec.extra);
        extra.churn = Some(results);
        extra.resources = Some(Resources::between(before, after));
        if let (Some(p), Some(b), Some(a)) = (probe, &probed_before, &probed_after) {
            extra.cluster = Some(crate::probe::usage(p, b, a, leader.sent, None));
        }
    }
    leader.close().await;
    driven
}
