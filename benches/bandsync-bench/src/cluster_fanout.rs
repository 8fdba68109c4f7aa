//! `cluster-fanout`: what fan-out costs once it crosses instances. Two phases, one report:
//! the baseline (one instance without Redis, the leader and all N followers on it), then
//! the cluster (Redis and K instances; the leader on A, the N followers split evenly over
//! all K). The leader sends unique `set_tempo`s at `--rate`, as in `fanout`.
//!
//! Each instance's followers are recorded apart (a [`Recorder`] each, every send stamped in
//! all of them), so latency is known per instance: on A a change goes leader -> A -> Redis
//! (commit script, publish) -> A -> followers; on B it arrives from Redis pub/sub. The
//! probe (`probe.rs`) reads every process at the window's edges for CPU per delivery per
//! instance and Redis commands per state change.

use crate::cluster::{self, RedisTarget, ServerGuard};
use crate::cluster_report::{self as out, Ratio};
use crate::fanout::{DRAIN, SETTLE};
use crate::fleet::{self, Member, Transport};
use crate::leader::{Leader, TempoCounter};
use crate::plan::{tempo_slots, Plan};
use crate::probe::{Probe, Reading};
use crate::progress::WindowBar;
use crate::recorder::{lock, Recorder};
use crate::report::{self, Params, Sections};
use crate::target::{self, Endpoints, ServerExtras};
use crate::{cli::Scenario, spread, Outcome, Settings};
use anyhow::bail;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The followers of one instance.
struct Group {
    label: String,
    ep: Endpoints,
    followers: u64,
    joined: Arc<AtomicU64>,
    rec: Arc<Recorder>,
}

/// One side of the comparison.
struct Phase {
    groups: Vec<Group>,
    probe: Probe,
    /// The probe's readings at the window's edges, kept as taken (a cut-short run still
    /// reports what it measured).
    readings: Mutex<(Option<Reading>, Option<Reading>)>,
}

impl Phase {
    fn new(s: &Settings, eps: Vec<Endpoints>, redis: Option<RedisTarget>, progress: bool) -> Self {
        let labels: Vec<String> = if redis.is_none() {
            vec!["single".into()]
        } else {
            (0..eps.len()).map(spread::label).collect()
        };
        let split = spread::split_even(s.n, eps.len());
        let params = Params {
            n: s.n,
            rate_hz: Some(s.rate),
            duration_s: s.duration.as_secs_f64(),
            tick_interval_ms: s.tick_interval_ms,
            connect_concurrency: s.concurrency,
            spawned: true,
            ..Params::default()
        };
        let slots = tempo_slots(Scenario::ClusterFanout, s);
        let groups = eps
            .iter()
            .zip(&labels)
            .zip(split)
            .map(|((ep, label), followers)| Group {
                label: label.clone(),
                ep: ep.clone(),
                followers,
                joined: Arc::new(AtomicU64::new(0)),
                // CPU comes from the probe, per instance: no server pid here.
                rec: Recorder::new("cluster-fanout", params.clone(), None, slots, progress),
            })
            .collect();
        let probe = Probe {
            instances: labels.into_iter().zip(eps).collect(),
            redis,
        };
        Self {
            groups,
            probe,
            readings: Mutex::new((None, None)),
        }
    }

    /// Joins the followers, then the measured window: sends, drains, closes the window.
    async fn measure(&self, s: &Settings) -> anyhow::Result<()> {
        let session: Arc<str> = format!("{}-cluster-fanout", s.session_base).into();
        let lead = &self.groups[0];
        let mut leader = Leader::join(&lead.ep.ws_url, &session, lead.rec.clone()).await?;
        let track = crate::wire::Track {
            ticks: false,
            latency: true,
        };
        let mut fleets = Vec::new();
        let mut hint = 0;
        for g in &self.groups {
            let members = (0..g.followers)
                .map(|_| {
                    hint += 1;
                    Member {
                        session: session.clone(),
                        hint,
                        joined: Some(g.joined.clone()),
                    }
                })
                .collect();
            let transport = Transport::Ws {
                url: g.ep.ws_url.as_str().into(),
            };
            let opening = fleet::open(&g.rec, &transport, members, s.concurrency, track);
            fleets.push(leader.while_reading(opening).await?);
        }
        if self.groups.iter().all(|g| g.joined.load(Relaxed) == 0) {
            let error = self.groups.iter().find_map(|g| g.rec.first_error());
            bail!("no follower could join: {}", error.unwrap_or_default());
        }
        leader.while_reading(tokio::time::sleep(SETTLE)).await?;

        let before = leader.while_reading(self.probe.read()).await?;
        lock(&self.readings).0 = Some(before);
        for g in &self.groups {
            g.rec.begin_window();
        }
        let bar = WindowBar::start(&lead.rec, s.duration);
        let start = Instant::now();
        let counter: TempoCounter = Arc::new(AtomicU64::new(0));
        let audiences: Vec<(&Recorder, &AtomicU64)> =
            self.groups.iter().map(|g| (&*g.rec, &*g.joined)).collect();
        leader
            .drive_tempo_to(start, s.rate, start + s.duration, &counter, &audiences)
            .await?;
        let all_in = || {
            self.groups
                .iter()
                .all(|g| g.rec.deliveries.load(Relaxed) >= g.rec.expected.load(Relaxed))
        };
        leader.idle_until(Instant::now() + DRAIN, all_in).await?;
        leader.while_reading(self.close_window()).await?;
        drop(bar);

        let stops = fleets.into_iter().map(|f| f.stop(Duration::from_secs(3)));
        futures_util::future::join_all(stops).await;
        leader.close().await;
        Ok(())
    }

    /// Ends the window once: the recorders, then the closing reading.
    async fn close_window(&self) {
        for g in &self.groups {
            g.rec.end_window();
        }
        let open = {
            let r = lock(&self.readings);
            r.0.is_some() && r.1.is_none()
        };
        if open {
            let after = self.probe.read().await;
            lock(&self.readings).1 = Some(after);
        }
    }

    fn result(&self, timed_out: bool, error: Option<String>) -> out::PhaseResult {
        let sections = Sections {
            latency: true,
            ticks: false,
            joins: false,
        };
        let reports: Vec<report::Report> = self
            .groups
            .iter()
            .map(|g| report::build(&g.rec, sections, timed_out, None))
            .collect();
        let deliveries: Vec<u64> = reports
            .iter()
            .map(|r| r.fanout.as_ref().map_or(0, |f| f.deliveries))
            .collect();
        let sent = self.groups[0].rec.sent.load(Relaxed);
        let usage = match &*lock(&self.readings) {
            (Some(before), Some(after)) => Some(crate::probe::usage(
                &self.probe,
                before,
                after,
                sent,
                Some(&deliveries),
            )),
            _ => None,
        };
        let frames: u64 = self.groups.iter().map(|g| g.rec.frames.load(Relaxed)).sum();
        let mut all = self.groups[0].rec.latency.merged();
        for g in &self.groups[1..] {
            let _ = all.add(g.rec.latency.merged());
        }
        out::PhaseResult::assemble(
            self.groups.iter().map(|g| g.label.clone()).zip(reports),
            usage,
            &all,
            frames,
            error,
        )
    }
}

/// The server of one phase: `redis` says which.
async fn start(
    plan: &Plan,
    s: &Settings,
    extras: &ServerExtras,
    cluster: bool,
) -> anyhow::Result<(Vec<Endpoints>, Option<RedisTarget>, ServerGuard)> {
    let Some(opts) = &plan.spawn else {
        bail!("cluster-fanout starts its own servers: add --spawn");
    };
    if cluster {
        let k = s.cluster.instances;
        let (eps, redis, guard) =
            cluster::spawn(opts, "cluster-fanout", extras, k, &s.session_base).await?;
        Ok((eps, Some(redis), ServerGuard::Cluster(guard)))
    } else {
        let mut extras = extras.clone();
        extras.unset.push("REDIS_URL".into());
        let (ep, guard) = target::spawn(opts, "cluster-fanout-single", &extras).await?;
        Ok((vec![ep], None, ServerGuard::One(guard)))
    }
}

/// Runs one phase on its own servers, which go when it ends.
async fn phase(
    plan: &Plan,
    s: &Settings,
    extras: &ServerExtras,
    cluster: bool,
    deadline: Instant,
) -> (Option<out::PhaseResult>, Outcome, Option<String>) {
    let (eps, redis, guard) =
        match tokio::time::timeout_at(deadline, start(plan, s, extras, cluster)).await {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return (None, Outcome::Failed, Some(format!("{e:#}"))),
            Err(_) => {
                let e = "timed out starting the servers".to_owned();
                return (None, Outcome::TimedOut, Some(e));
            }
        };
    let phase = Phase::new(s, eps, redis, plan.progress);
    let (outcome, error) = tokio::select! {
        result = tokio::time::timeout_at(deadline, phase.measure(s)) => match result {
            Ok(Ok(())) => (Outcome::Done, None),
            Ok(Err(e)) => (Outcome::Failed, Some(format!("{e:#}"))),
            Err(_) => (Outcome::TimedOut, Some("--timeout reached; partial results".into())),
        },
        _ = tokio::signal::ctrl_c() => (Outcome::Interrupted, Some("interrupted".into())),
    };
    phase.close_window().await;
    let timed_out = matches!(outcome, Outcome::TimedOut);
    let result = phase.result(timed_out, error.clone());
    drop(guard); // after the last reading of its processes
    (Some(result), outcome, error)
}

/// The whole job: baseline, then cluster; one report.
pub async fn job(
    plan: &Plan,
    s: &Settings,
    extras: &ServerExtras,
    deadline: Instant,
) -> (out::ClusterFanoutReport, Outcome) {
    let mut report = out::ClusterFanoutReport::new(s, plan.spawn.as_ref());
    let (baseline, mut outcome, error) = phase(plan, s, extras, false, deadline).await;
    report.baseline = baseline;
    report.note(error.map(|e| format!("baseline: {e}")));
    if !matches!(outcome, Outcome::TimedOut | Outcome::Interrupted) {
        let (cluster, cluster_outcome, error) = phase(plan, s, extras, true, deadline).await;
        report.cluster = cluster;
        report.note(error.map(|e| format!("cluster: {e}")));
        if !matches!(cluster_outcome, Outcome::Done) {
            outcome = cluster_outcome;
        }
    }
    report.timed_out = matches!(outcome, Outcome::TimedOut);
    if let (Some(b), Some(c)) = (&report.baseline, &report.cluster) {
        report.ratios = Ratio::between(b, c);
    }
    (report, outcome)
}
