//! The sharers of the `audio` scenario: one per share session, over the REST API (base64
//! f32 JSON POSTs, as the seed's client sends them) or over `/ws` (`share_start`, then
//! binary audio frames).

use crate::audio::AudioRun;
use crate::cli::Uplink;
use crate::recorder::lock;
use crate::target::Endpoints;
use crate::wire::{self, Lite, Ws, CONNECT_TIMEOUT};
use crate::Settings;
use anyhow::{anyhow, bail, Context as _};
use bandsync_bench::bench_stats::{rest_chunk_body, sine_pcm, ChunkSchedule, SeqSet};
use bandsync_client::protocol::audio::AudioHeader;
use bandsync_client::protocol::client::ShareStart;
use bandsync_client::protocol::{encode_client_frame, ClientEvent, RequestId, Role};
use bandsync_client::wall_clock_ms;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

mod rest;
mod ws;

use rest::RestSharer;
use ws::WsSharer;

/// One REST request may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a WebSocket sharer waits for a reply (`share_started`, `share_ended`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the run is, for every sharer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SharerPhase {
    Setup,
    Go { start: Instant, until: Instant },
    Stop,
}

/// What every sharer of a run sends: the same chunk of PCM, new header each time.
struct Payload {
    pcm: Vec<u8>,
    /// Base64 of `pcm` (REST).
    base64: String,
}

/// The running sharers.
pub struct Sharers {
    tasks: JoinSet<anyhow::Result<()>>,
    started: u64,
    sent_rx: mpsc::Receiver<()>,
}

impl Sharers {
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Returns once every sharer has sent its last chunk (or given up).
    pub async fn wait_sent(&mut self) {
        for _ in 0..self.started {
            if self.sent_rx.recv().await.is_none() {
                return;
            }
        }
    }

    /// Waits up to `grace` for every sharer to stop its share; the first error, if any.
    pub async fn finish(mut self, grace: Duration) -> Option<anyhow::Error> {
        let mut first = None;
        let all = async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok(Err(e)) => {
                        first.get_or_insert(e);
                    }
                    Err(e) if e.is_panic() => {
                        first.get_or_insert(anyhow!("a sharer panicked"));
                    }
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(grace, all).await;
        first
    }
}

/// Sends `()` once, when told or when dropped (a sharer that fails mid-stream must not
/// leave the run waiting for it).
struct SentSignal(Option<mpsc::Sender<()>>);

impl SentSignal {
    fn done(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for SentSignal {
    fn drop(&mut self) {
        self.done();
    }
}

/// Starts every share session (at most `--connect-concurrency` at once) and returns when
/// all have started; fails if any could not.
pub async fn start_all(
    run: &Arc<AudioRun>,
    ep: &Endpoints,
    s: &Settings,
    phase: watch::Receiver<SharerPhase>,
) -> anyhow::Result<Sharers> {
    let a = &s.audio;
    let frames = bandsync_bench::bench_stats::frames_per_chunk(a.sample_rate, a.chunk_ms);
    let pcm = sine_pcm(
        frames,
        a.channels,
        a.sample_rate,
        a.format == crate::cli::PcmFormat::I16,
    );
    let payload = Arc::new(Payload {
        base64: base64::engine::general_purpose::STANDARD.encode(&pcm),
        pcm,
    });
    let sessions = run.ids.len();
    let (ready_tx, mut ready_rx) = mpsc::channel(sessions);
    let (sent_tx, sent_rx) = mpsc::channel(sessions);
    let joining = Arc::new(Semaphore::new(s.concurrency));
    let mut tasks = JoinSet::new();
    for index in 0..sessions {
        let permit = joining.clone().acquire_owned().await.expect("never closed");
        tasks.spawn(share(
            run.clone(),
            index,
            ep.clone(),
            payload.clone(),
            ready_tx.clone(),
            SentSignal(Some(sent_tx.clone())),
            phase.clone(),
            permit,
        ));
    }
    drop(ready_tx);
    let mut failed = None;
    let mut started = 0;
    for _ in 0..sessions {
        match ready_rx.recv().await {
            Some(Ok(())) => started += 1,
            Some(Err(e)) => {
                failed.get_or_insert(e);
            }
            None => break,
        }
    }
    if let Some(e) = failed {
        tasks.abort_all();
        bail!("a sharer could not start its share: {e}");
    }
    Ok(Sharers {
        tasks,
        started,
        sent_rx,
    })
}

/// One sharer's life: start the share, wait for `Go`, stream in real time, wait for
/// `Stop`, stop the share.
#[allow(clippy::too_many_arguments)]
async fn share(
    run: Arc<AudioRun>,
    index: usize,
    ep: Endpoints,
    payload: Arc<Payload>,
    ready: mpsc::Sender<Result<(), String>>,
    mut sent: SentSignal,
    mut phase: watch::Receiver<SharerPhase>,
    permit: OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let id = run.ids[index].clone();
    let started = match run.settings.uplink {
        Uplink::Rest => RestSharer::start(&ep, &id, &run.settings.token)
            .await
            .map(Link::Rest),
        Uplink::Ws => WsSharer::start(&ep, &id, index, &run.settings.token)
            .await
            .map(|w| Link::Ws(Box::new(w))),
    };
    drop(permit);
    let mut link = match started {
        Ok(link) => {
            let _ = ready.send(Ok(())).await;
            link
        }
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}"))).await;
            return Err(e);
        }
    };
    let go = link
        .while_reading(&run, phase.wait_for(|p| *p != SharerPhase::Setup))
        .await?
        .map(|p| *p)
        .ok();
    let mut accepted = SeqSet::new(run.capacity);
    if let Some(SharerPhase::Go { start, until }) = go {
        let schedule = ChunkSchedule {
            period: Duration::from_millis(u64::from(run.settings.chunk_ms)),
            phase: ChunkSchedule::spread(
                Duration::from_millis(u64::from(run.settings.chunk_ms)),
                index as u64,
                run.ids.len() as u64,
            ),
            duration: until - start,
        };
        let streamed = async {
            for k in 0..schedule.count().min(run.capacity) {
                let due = start + schedule.due(k);
                link.while_reading(&run, tokio::time::sleep_until(due))
                    .await?;
                let late = Instant::now().saturating_duration_since(due);
                run.lateness.record(index, late.as_micros() as u64);
                if link.send(&run, index, k as i64, &payload).await? {
                    accepted.insert(k as i64);
                }
            }
            anyhow::Ok(())
        }
        .await;
        sent.done();
        lock(&run.accepted_sets)[index] = Some(accepted);
        streamed?;
    }
    sent.done();
    link.while_reading(&run, phase.wait_for(|p| *p == SharerPhase::Stop))
        .await?
        .ok();
    link.stop().await
}

/// A sharer's connection to the server.
enum Link {
    Rest(RestSharer),
    /// Boxed: a WebSocket stream is several hundred bytes.
    Ws(Box<WsSharer>),
}

impl Link {
    /// Runs `work` while answering the socket (WebSocket pings, refusals).
    async fn while_reading<T>(
        &mut self,
        run: &AudioRun,
        work: impl Future<Output = T>,
    ) -> anyhow::Result<T> {
        match self {
            Link::Rest(_) => Ok(work.await),
            Link::Ws(ws) => ws.while_reading(run, work).await,
        }
    }

    /// Sends chunk `seq`; true when the server took it (as far as the sharer knows).
    async fn send(
        &mut self,
        run: &AudioRun,
        session: usize,
        seq: i64,
        payload: &Payload,
    ) -> anyhow::Result<bool> {
        match self {
            Link::Rest(r) => r.send(run, session, seq, payload).await,
            Link::Ws(w) => w.send(run, session, seq, payload).await,
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Link::Rest(r) => r.stop().await,
            Link::Ws(w) => w.stop().await,
        }
    }
}
