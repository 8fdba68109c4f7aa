//! `bandsync-bench`: load and latency benchmarks for a bandsync server.
//!
//! Each scenario (see `--help`) opens its connections with bounded concurrency, measures
//! for a fixed window and prints one JSON line on stdout, a summary on stderr. Every run
//! is bounded by `--timeout`; a cut-short run still prints what it measured.
//!
//! Module map: `cli` + `plan` (flags), `target` (the server: `--url` or `--spawn`), `fleet` +
//! `wire` + `listener` (many cheap receiving connections), `leader` (the senders),
//! `recorder` + `report` + `procfs` + `metrics` (measurements and output), one file per
//! scenario; `audio` (the Music Share relay) has its sharers in `audio_tx` and its
//! receivers in `audio_rx`; `churn` has its leader in `churn_leader`, its followers in
//! `churn_member` and its bookkeeping in `churn_tally`; `soak` samples long `mixed` runs.
//! The cluster scenarios: `cluster` starts Redis (spoken to through `resp`) and the
//! instances, `spread` places clients on them, `probe` reads every process at the
//! window's edges; `cluster_fanout` + `cluster_report` compare with one instance, and
//! `cluster-churn` is `churn` given several instances. `repo-fanout` (repository streams)
//! has its cases in `repo_fanout`, its listeners in `repo_listener`, its output in
//! `repo_report`. `reference` spawns a reference server (uWebSockets.js) in bandsync's
//! place for fanout, ticks and connect. The clock scenarios (`clock_job`) put a
//! fault proxy in front of each client: `clock_accuracy`, `clock_agreement`, sharing
//! `clock_link`, with their flags in `clock_plan`.

mod audio;
mod audio_plan;
mod audio_rx;
mod audio_tx;
mod churn;
mod churn_leader;
mod churn_member;
mod churn_tally;
mod cli;
mod clock_accuracy;
mod clock_agreement;
mod clock_job;
mod clock_link;
mod clock_plan;
mod cluster;
mod cluster_fanout;
mod cluster_report;
mod connect;
mod fanout;
mod fleet;
mod handshake;
mod leader;
mod listener;
mod metrics;
mod mixed;
mod plan;
mod probe;
mod procfs;
mod progress;
mod recorder;
mod reference;
mod repo_fanout;
mod repo_listener;
mod repo_report;
mod report;
mod resp;
mod soak;
mod spread;
mod target;
mod ticks;
mod wire;

use clap::{CommandFactory, Parser};
use cli::{Cli, Scenario};
pub use plan::Settings;
use plan::{tempo_slots, Job, Plan};
use recorder::{lock, Recorder};
use report::{AudioParams, Params, Sections};
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;
use target::Endpoints;
use tokio::time::Instant;

/// How a scenario ended.
pub enum Outcome {
    Done,
    Failed,
    TimedOut,
    Interrupted,
}

fn sections(scenario: Scenario) -> Sections {
    Sections {
        latency: matches!(
            scenario,
            Scenario::Fanout | Scenario::Mixed | Scenario::Audio
        ),
        ticks: matches!(scenario, Scenario::Ticks | Scenario::Sse | Scenario::Mixed),
        joins: scenario == Scenario::Connect,
    }
}

async fn dispatch(
    scenario: Scenario,
    s: &Settings,
    eps: &[Endpoints],
    probe: Option<&probe::Probe>,
    rec: std::sync::Arc<Recorder>,
) -> anyhow::Result<()> {
    let ep = &eps[0];
    match scenario {
        Scenario::Fanout => fanout::run(s, ep, rec).await,
        Scenario::Ticks => ticks::run(s, ep, rec, false).await,
        Scenario::Sse => ticks::run(s, ep, rec, true).await,
        Scenario::Connect => connect::run(s, ep, rec).await,
        Scenario::Mixed => mixed::run(s, ep, rec).await,
        Scenario::Audio => audio::run(s, ep, rec).await,
        Scenario::Churn | Scenario::ClusterChurn => churn::run(s, eps, probe, rec).await,
        Scenario::All | Scenario::AudioSeed => unreachable!("expanded by the cli"),
        Scenario::ClusterFanout => unreachable!("run by cluster_fanout::job"),
        Scenario::RepoFanout => unreachable!("run by repo_fanout::job"),
        Scenario::ClockAccuracy | Scenario::ClockAgreement => {
            unreachable!("run by clock_job::job")
        }
    }
}

/// Prints a report: its JSON line on stdout, its summary on stderr.
pub fn emit(report: &impl serde::Serialize, human: &str) {
    let json = serde_json::to_string(report).expect("reports serialize");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{json}");
    let _ = stdout.flush();
    eprintln!("{human}");
}

/// Starts what a scenario runs against: one server, or a cluster (with the probe that
/// reads its processes).
async fn start(
    opts: &target::SpawnOptions,
    scenario: Scenario,
    tag: &str,
    s: &Settings,
    extras: &target::ServerExtras,
) -> anyhow::Result<(Vec<Endpoints>, Option<probe::Probe>, cluster::ServerGuard)> {
    if scenario.is_cluster() {
        let k = s.cluster.instances;
        let (eps, redis, guard) = cluster::spawn(opts, tag, extras, k, &s.session_base).await?;
        let probe = probe::Probe {
            instances: (0..k).map(spread::label).zip(eps.iter().cloned()).collect(),
            redis: Some(redis),
        };
        Ok((eps, Some(probe), cluster::ServerGuard::Cluster(guard)))
    } else {
        let (ep, guard) = target::spawn(opts, tag, extras).await?;
        Ok((vec![ep], None, cluster::ServerGuard::One(guard)))
    }
}

/// Runs one scenario against its server (spawned for it with --spawn) and prints its
/// report, complete or not.
async fn run_one(plan: &Plan, job: &Job, index: usize, deadline: Instant) -> Outcome {
    let scenario = job.scenario;
    let s = plan.job_settings(job, index);
    let extras = target::server_extras(plan, scenario, &s);
    if scenario == Scenario::ClusterFanout {
        let (report, outcome) = cluster_fanout::job(plan, &s, &extras, deadline).await;
        emit(&report, &report.human());
        return outcome;
    }
    if matches!(scenario, Scenario::ClockAccuracy | Scenario::ClockAgreement) {
        let (line, outcome) = clock_job::job(plan, &s, &extras, deadline, scenario).await;
        emit(&line, &line.human());
        return outcome;
    }
    if scenario == Scenario::RepoFanout {
        // Each case's line is printed as it ends; then the table of all of them.
        let (reports, outcome) = repo_fanout::job(plan, &s, &extras, deadline).await;
        eprintln!("{}", repo_report::table(&reports));
        return outcome;
    }
    let mut params = Params {
        preset: job.preset.map(|p| p.name),
        n: s.n,
        duration_s: s.duration.as_secs_f64(),
        tick_interval_ms: s.tick_interval_ms,
        connect_concurrency: s.concurrency,
        spawned: plan.spawn.is_some(),
        server: plan.spawn.as_ref().map(|o| o.server.name()),
        ..Params::default()
    };
    match scenario {
        Scenario::Fanout | Scenario::Churn => params.rate_hz = Some(s.rate),
        Scenario::ClusterChurn => {
            params.rate_hz = Some(s.rate);
            params.instances = Some(s.cluster.instances);
        }
        Scenario::Connect => params.sessions = Some(s.sessions),
        Scenario::Mixed => {
            params.n = s.sessions * s.members;
            params.sessions = Some(s.sessions);
            params.members = Some(s.members);
            params.rate_hz = Some(s.rate);
        }
        Scenario::Audio => {
            let a = &s.audio;
            params.n = s.sessions * a.receivers;
            params.sessions = Some(s.sessions);
            params.audio = Some(AudioParams {
                receivers: a.receivers,
                receiver_transport: a.transport.name(),
                uplink: a.uplink.name(),
                chunk_ms: a.chunk_ms,
                sample_rate: a.sample_rate,
                channels: a.channels,
                format: a.format.name(),
                chunk_bytes: a.chunk_bytes(),
                deflate: false,
                share_audio_rate: extras
                    .args
                    .iter()
                    .position(|arg| arg == "--share-audio-rate")
                    .and_then(|i| extras.args.get(i + 1)?.parse().ok()),
            });
        }
        _ => {}
    }
    let started = match (&plan.spawn, &plan.url) {
        (Some(opts), _) => {
            let tag = job.preset.map_or(scenario.name(), |p| p.name);
            let starting = start(opts, scenario, tag, &s, &extras);
            match tokio::time::timeout_at(deadline, starting).await {
                Ok(Ok((eps, probe, guard))) => Ok((eps, probe, Some(guard))),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err("timed out starting the server".into()),
            }
        }
        (None, Some((ws_url, http_base))) => Ok((
            vec![Endpoints {
                ws_url: ws_url.clone(),
                http_base: http_base.clone(),
                pid: plan.server_pid,
            }],
            None,
            None,
        )),
        (None, None) => Err("no server: give --url or --spawn".into()),
    };
    let (eps, probe, guard, error) = match started {
        Ok((eps, probe, guard)) => (eps, probe, guard, None),
        Err(e) => (Vec::new(), None, None, Some(e)),
    };
    let ep = eps.first().cloned();
    params.url = ep.as_ref().map(|e| e.ws_url.clone()).unwrap_or_default();
    let pid = ep.as_ref().and_then(|e| e.pid);
    let rec = Recorder::new(
        scenario.name(),
        params,
        pid,
        tempo_slots(scenario, &s),
        plan.progress,
    );

    let (outcome, error) = match (ep, error) {
        (Some(ep), None) => {
            let before = metrics::scrape(&ep.http_base).await;
            let work = dispatch(scenario, &s, &eps, probe.as_ref(), rec.clone());
            let result = tokio::select! {
                result = tokio::time::timeout_at(deadline, work) => match result {
                    Ok(Ok(())) => (Outcome::Done, None),
                    Ok(Err(e)) => (Outcome::Failed, Some(format!("{e:#}"))),
                    Err(_) => (Outcome::TimedOut, Some("--timeout reached; partial results".into())),
                },
                _ = tokio::signal::ctrl_c() => (Outcome::Interrupted, Some("interrupted".into())),
            };
            if let (Some(before), Some(after)) = (before, metrics::scrape(&ep.http_base).await) {
                lock(&rec.extra).server_metrics = Some(metrics::delta(&before, &after));
            }
            result
        }
        (_, error) => (Outcome::Failed, error),
    };
    rec.end_window();
    let report = report::build(
        &rec,
        sections(scenario),
        matches!(outcome, Outcome::TimedOut),
        error,
    );
    emit(&report, &report::human(&report));
    drop(guard); // the spawned servers go now, after the last /proc reading
    outcome
}

async fn run_all(plan: Plan) -> ExitCode {
    let deadline = Instant::now() + plan.timeout;
    let mut code = ExitCode::SUCCESS;
    for (index, job) in plan.jobs.iter().enumerate() {
        match run_one(&plan, job, index, deadline).await {
            Outcome::Done => {}
            Outcome::Failed => code = ExitCode::FAILURE,
            Outcome::TimedOut => return ExitCode::from(3),
            Outcome::Interrupted => return ExitCode::from(130),
        }
    }
    code
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (a spawned server inherits it).
fn raise_nofile(needed: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "RLIMIT_NOFILE is below what this run needs; connections may fail (raise the hard limit)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise RLIMIT_NOFILE: {e}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let prefix = cli.session_prefix.clone();
    let plan = match cli.validate(format!("{prefix}-{}-{unix_ms}", std::process::id())) {
        Ok(plan) => plan,
        Err(e) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit(),
    };
    let s = &plan.settings;
    let audio = plan
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.scenario == Scenario::Audio)
        .map(|(i, j)| {
            let a = plan.job_settings(j, i);
            a.sessions * (a.audio.receivers + 2)
        })
        .max()
        .unwrap_or(0);
    let repo_listeners = if plan.jobs.iter().any(|j| j.scenario == Scenario::RepoFanout) {
        s.repo.listeners.iter().copied().max().unwrap_or(0)
    } else {
        0
    };
    raise_nofile(
        s.n.max(s.sessions * s.members)
            .max(audio)
            .max(repo_listeners)
            + s.sessions
            + 256,
    );
    if plan.spawn.is_none()
        && plan.jobs.iter().any(|j| j.scenario == Scenario::Audio)
        && s.audio.chunk_ms <= 100
    {
        tracing::warn!(
            "--chunk-ms {} sends {:.0} chunks/s per session: a server with the default SHARE_AUDIO_RATE (10/s) has little or no headroom for that",
            s.audio.chunk_ms,
            s.audio.chunks_per_s()
        );
    }
    if plan.rate.is_some_and(|r| r > 90.0) {
        tracing::warn!(
            "--rate above ~90/s meets the server's default per-socket rate limit (100/s)"
        );
    }

    // One thread (as scripts/bench.sh and compare.sh run it): a current-thread runtime,
    // whose wake-ups skip the cross-thread scheduler (a receive is all syscall otherwise).
    let builder = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(plan.threads);
        b
    };
    let runtime = match { builder }.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bandsync-bench: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run_all(plan));
    // Aborted connection tasks may still be closing; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}
