//! `repo-fanout`: one composition broadcast to N listeners of a repository stream, for
//! each listener count and each encoding (`--listeners 100,1000`, `--encodings
//! json,f32,i16`).
//!
//! Each case takes a fresh repository (so no listener is sent an earlier composition),
//! opens its N listeners (one of them the verifier, see `repo_listener.rs`), waits until
//! every one has its `connected` message, reads the server's CPU, posts one test
//! composition and stops the clock when the last listener has the last byte of its
//! `audio_buffer`. Then the listeners close and the next case waits until the server has
//! let go of them, so cases do not overlap.

use crate::plan::Plan;
use crate::procfs::{read_cpu, read_rss_kib, CpuUsage};
use crate::repo_listener::{self, Arrival, Case};
use crate::repo_report::{CaseReport, Cpu};
use crate::target::{self, ServerExtras};
use crate::{Outcome, Settings};
use bandsync_client::protocol::repo::{Encoding, TestRequest, MAX_DURATION, MIN_DURATION};
use bandsync_client::repo::{http_client, post_test};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What `repo-fanout` reads.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    /// One case per listener count, per encoding.
    pub listeners: Vec<u64>,
    pub encodings: Vec<Encoding>,
    /// Seconds of the composition posted in each case.
    pub composition_s: f64,
}

impl RepoSettings {
    pub(crate) fn check(&self) -> Result<(), String> {
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_owned()) };
        check(
            !self.listeners.is_empty() && self.listeners.iter().all(|n| (1..=20_000).contains(n)),
            "repo-fanout: --listeners must be counts of 1..=20000",
        )?;
        check(
            !self.encodings.is_empty() && self.listeners.len() * self.encodings.len() <= 64,
            "repo-fanout: at most 64 cases (--listeners x --encodings)",
        )?;
        check(
            (MIN_DURATION..=MAX_DURATION).contains(&self.composition_s),
            "repo-fanout: --composition-secs must be 0.25..=20",
        )
    }

    /// The time the cases may take: a minute each, plus a minute per 1,000 listeners.
    pub(crate) fn budget(&self) -> Duration {
        let cases = self.encodings.len() as u64;
        let per_listener_count: u64 = self.listeners.iter().map(|n| 60 + n * 60 / 1000).sum();
        Duration::from_secs(30 + cases * per_listener_count)
    }
}

/// How long a listener waits for the composition once the test was posted.
const PATIENCE: Duration = Duration::from_secs(120);
/// How long the server may take to notice that a case's listeners left.
const DRAIN: Duration = Duration::from_secs(15);

/// What each case needs besides its listener count and encoding.
struct Target {
    http: reqwest::Client,
    base: Arc<str>,
    pid: Option<u32>,
}

/// One listener count, one encoding.
async fn run_case(
    t: &Target,
    s: &Settings,
    listeners: u64,
    encoding: Encoding,
) -> anyhow::Result<CaseReport> {
    let repo: Arc<str> = format!("{}-{}-{listeners}", s.session_base, encoding.as_str()).into();
    let mut report = CaseReport::new(listeners, encoding, s.repo.composition_s);
    let ready = Arc::new(AtomicU64::new(0));
    let case = Case {
        http: t.http.clone(),
        base: t.base.clone(),
        repo: repo.clone(),
        encoding,
        connecting: Arc::new(Semaphore::new(s.concurrency)),
        ready: ready.clone(),
        patience: PATIENCE,
    };
    // Listeners that failed (at any time): with `ready`, says when all have connected or
    // given up.
    let gone = Arc::new(AtomicU64::new(0));
    let counted = |gone: &Arc<AtomicU64>, failed: bool| {
        if failed {
            gone.fetch_add(1, Relaxed);
        }
    };
    let mut counting = JoinSet::new();
    let verifier = {
        let (case, gone) = (case.clone(), gone.clone());
        tokio::spawn(async move {
            let result = repo_listener::verify(case).await;
            counted(&gone, result.is_err());
            result
        })
    };
    for _ in 1..listeners {
        let (case, gone) = (case.clone(), gone.clone());
        counting.spawn(async move {
            let result = repo_listener::count(case).await;
            counted(&gone, result.is_err());
            result
        });
    }
    let connect_deadline = Instant::now() + crate::wire::CONNECT_TIMEOUT * 2;
    while ready.load(Relaxed) + gone.load(Relaxed) < listeners && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.connected = ready.load(Relaxed);
    anyhow::ensure!(report.connected > 0, "no listener could connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cpu_before = t.pid.and_then(|pid| read_cpu(Some(pid)));
    let client_before = read_cpu(None);
    let request = TestRequest {
        duration: Some(s.repo.composition_s),
        ..TestRequest::default()
    };
    let posted = Instant::now();
    let answer = post_test(&t.http, &t.base, &repo, &request).await;
    report.post_ms = Some(ms(posted.elapsed()));
    let answer = answer?;
    report.answer(&answer);

    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = counting.join_next().await {
        match joined {
            Ok(Ok(arrival)) => arrivals.push(arrival),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    match verifier.await {
        Ok(Ok((arrival, frames))) => {
            arrivals.push(arrival);
            report.verified_frames = Some(frames as u64);
        }
        Ok(Err(e)) => errors.push(format!("verifier: {e}")),
        Err(e) => errors.push(format!("verifier: {e}")),
    }
    let last = arrivals.iter().map(|a| a.at).max();
    let end = last.unwrap_or_else(Instant::now);
    let wall = end.saturating_duration_since(posted);
    report.server_cpu = match (cpu_before, t.pid.and_then(|pid| read_cpu(Some(pid)))) {
        (Some(a), Some(b)) => Some(Cpu::from(CpuUsage::between(a, b, wall))),
        _ => None,
    };
    report.server_rss_kib = t.pid.and_then(|pid| read_rss_kib(Some(pid)));
    if let (Some(a), Some(b)) = (client_before, read_cpu(None)) {
        report.client_cpu = Some(Cpu::from(CpuUsage::between(a, b, wall)));
    }
    report.arrivals(posted, &arrivals, errors);
    wait_released(t, &repo).await;
    Ok(report)
}

/// Waits until the server counts no listener of `repo` (bounded by [`DRAIN`]).
async fn wait_released(t: &Target, repo: &str) {
    let Ok(path) = bandsync_client::repo::repo_path(repo) else {
        return;
    };
    let url = format!("{}/health/repo/{path}", t.base);
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        let body = match t.http.get(&url).send().await {
            Ok(r) => r.bytes().await.ok(),
            Err(_) => None,
        };
        let body: Option<serde_json::Value> = body.and_then(|b| serde_json::from_slice(&b).ok());
        if body.is_some_and(|b| b["activeClients"].as_u64() == Some(0)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(repo, "the server still counts listeners of the last case");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every case, on one server (spawned for the job with --spawn). Prints each case's JSON
/// line as it ends; returns the reports for the summary.
pub async fn job(
    plan: &Plan,
    s: &Settings,
    extras: &ServerExtras,
    deadline: tokio::time::Instant,
) -> (Vec<CaseReport>, Outcome) {
    let mut reports = Vec::new();
    let started = match (&plan.spawn, &plan.url) {
        (Some(opts), _) => {
            match tokio::time::timeout_at(deadline, target::spawn(opts, "repo-fanout", extras))
                .await
            {
                Ok(Ok((ep, guard))) => Ok((ep.http_base, ep.pid, Some(guard))),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err("timed out starting the server".into()),
            }
        }
        (None, Some((_, http_base))) => Ok((http_base.clone(), plan.server_pid, None)),
        (None, None) => Err("no server: give --url or --spawn".into()),
    };
    let (base, pid, guard) = match started {
        Ok(started) => started,
        Err(e) => {
            reports.push(CaseReport::failed(s, e));
            return (reports, Outcome::Failed);
        }
    };
    let http = match http_client() {
        Ok(http) => http,
        Err(e) => {
            reports.push(CaseReport::failed(s, e.to_string()));
            return (reports, Outcome::Failed);
        }
    };
    let t = Target {
        http,
        base: base.into(),
        pid,
    };
    let mut outcome = Outcome::Done;
    'cases: for &listeners in &s.repo.listeners {
        for &encoding in &s.repo.encodings {
            let case = run_case(&t, s, listeners, encoding);
            let report = tokio::select! {
                r = tokio::time::timeout_at(deadline, case) => match r {
                    Ok(Ok(report)) => report,
                    Ok(Err(e)) => {
                        outcome = Outcome::Failed;
                        CaseReport::error(listeners, encoding, s.repo.composition_s, format!("{e:#}"))
                    }
                    Err(_) => {
                        outcome = Outcome::TimedOut;
                        CaseReport::error(listeners, encoding, s.repo.composition_s, "--timeout reached".into())
                    }
                },
                _ = tokio::signal::ctrl_c() => {
                    outcome = Outcome::Interrupted;
                    CaseReport::error(listeners, encoding, s.repo.composition_s, "interrupted".into())
                }
            };
            if report.error.is_some() && matches!(outcome, Outcome::Done) {
                outcome = Outcome::Failed;
            }
            crate::emit(&report, &report.line());
            reports.push(report);
            if matches!(outcome, Outcome::TimedOut | Outcome::Interrupted) {
                break 'cases;
            }
        }
    }
    drop(guard);
    (reports, outcome)
}
