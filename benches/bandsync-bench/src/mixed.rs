//! `mixed`: S sessions of M members each (one leader, M-1 followers); every leader plays
//! and changes tempo R times a second (default once), the leaders' phases spread evenly
//! over the period: many bands at once. Reports tempo latency and ticks together. With
//! `--sample-every` it is the soak: server memory, descriptors and latency sampled through
//! the run (`soak.rs`).

use crate::fanout::{DRAIN, SETTLE};
use crate::fleet::{self, Member, Transport};
use crate::leader::{Leader, TempoCounter};
use crate::progress::WindowBar;
use crate::recorder::{lock, Recorder};
use crate::soak;
use crate::target::Endpoints;
use crate::wire::Track;
use crate::Settings;
use anyhow::{bail, Context as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Setup,
    Go { start: Instant, until: Instant },
    Stop,
}

struct Band {
    url: Arc<str>,
    session: Arc<str>,
    /// This leader's offset within the tempo period, so leaders do not all send at once.
    phase: Duration,
    followers: Arc<AtomicU64>,
}

/// One leader's life: join and play, report ready, wait for `Go` while reading, drive the
/// tempo, then read until `Stop`.
async fn lead(
    band: Band,
    rec: Arc<Recorder>,
    rate: f64,
    counter: TempoCounter,
    ready: mpsc::Sender<Result<(), String>>,
    mut phase: watch::Receiver<Phase>,
    permit: OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let joined = async {
        let mut leader = Leader::join(&band.url, &band.session, rec.clone()).await?;
        leader.play().await?;
        anyhow::Ok(leader)
    }
    .await;
    drop(permit);
    let mut leader = match joined {
        Ok(leader) => {
            let _ = ready.send(Ok(())).await;
            leader
        }
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}"))).await;
            return Err(e);
        }
    };
    let go = leader
        .while_reading(phase.wait_for(|p| *p != Phase::Setup))
        .await?
        .map(|p| *p)
        .context("bench ended")?;
    if let Phase::Go { start, until } = go {
        leader
            .drive_tempo(start + band.phase, rate, until, &counter, &band.followers)
            .await?;
        leader
            .while_reading(phase.wait_for(|p| *p == Phase::Stop))
            .await?
            .ok();
    }
    leader.close().await;
    Ok(())
}

pub async fn run(s: &Settings, ep: &Endpoints, rec: Arc<Recorder>) -> anyhow::Result<()> {
    let url: Arc<str> = ep.ws_url.as_str().into();
    let counter: TempoCounter = Arc::new(AtomicU64::new(0));
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready_rx) = mpsc::channel(s.sessions as usize);
    let period = Duration::from_secs_f64(1.0 / s.rate);
    let mut bands = Vec::new();
    let mut leaders = JoinSet::new();
    let joining = Arc::new(Semaphore::new(s.concurrency));
    for i in 0..s.sessions {
        let permit = joining.clone().acquire_owned().await.expect("never closed");
        let band = Band {
            url: url.clone(),
            session: format!("{}-mixed-{i}", s.session_base).into(),
            phase: period.mul_f64(i as f64 / s.sessions as f64),
            followers: Arc::new(AtomicU64::new(0)),
        };
        bands.push((band.session.clone(), band.followers.clone()));
        let task = lead(
            band,
            rec.clone(),
            s.rate,
            counter.clone(),
            ready_tx.clone(),
            phase_rx.clone(),
            permit,
        );
        leaders.spawn(task);
    }
    drop(ready_tx);
    // Leaders keep their sender for life: count the S answers rather than wait for close.
    let mut failed = None;
    for _ in 0..s.sessions {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                failed.get_or_insert(e);
            }
            None => break,
        }
    }
    if let Some(e) = failed {
        bail!("a leader could not start: {e}");
    }

    let members = bands
        .iter()
        .flat_map(|(session, followers)| {
            (1..s.members).map(move |_| (session.clone(), followers.clone()))
        })
        .enumerate()
        .map(|(hint, (session, followers))| Member {
            session,
            hint,
            joined: Some(followers),
        })
        .collect();
    let transport = Transport::Ws { url };
    let track = Track {
        ticks: true,
        latency: true,
    };
    let fleet = fleet::open(&rec, &transport, members, s.concurrency, track).await;
    tokio::time::sleep(SETTLE).await;

    rec.begin_window();
    let bar = WindowBar::start(&rec, s.duration);
    let start = Instant::now();
    let until = start + s.duration;
    let _ = phase_tx.send(Phase::Go { start, until });
    let sampler = s
        .sample_every
        .map(|every| tokio::spawn(soak::sample(rec.clone(), ep.pid, start, every, until)));
    tokio::time::sleep_until(until).await;
    let drain_end = Instant::now() + DRAIN;
    while Instant::now() < drain_end && rec.deliveries.load(Relaxed) < rec.expected.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rec.end_window();
    drop(bar);
    if let Some(sampler) = sampler {
        if let Ok(samples) = sampler.await {
            let mut extra = lock(&rec.extra);
            let edge =
                |s: Option<&soak::Sample>| (s.and_then(|s| s.rss_kib), s.and_then(|s| s.fds));
            extra.resources = Some(soak::Resources::between(
                edge(samples.first()),
                edge(samples.last()),
            ));
            extra.samples = Some(samples);
        }
    }

    let _ = phase_tx.send(Phase::Stop);
    fleet.stop(Duration::from_secs(3)).await;
    let mut first_error = None;
    while let Some(joined) = leaders.join_next().await {
        if let Ok(Err(e)) = joined {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e.context("a leader failed")),
        None => Ok(()),
    }
}
