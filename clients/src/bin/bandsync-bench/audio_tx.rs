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
use bandsync_client::bench_stats::{rest_chunk_body, sine_pcm, ChunkSchedule, SeqSet};
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
    let frames = bandsync_client::bench_stats::frames_per_chunk(a.sample_rate, a.chunk_ms);
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

struct RestSharer {
    http: reqwest::Client,
    base: String,
    id: String,
    token: String,
}

impl RestSharer {
    async fn start(ep: &Endpoints, id: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let sharer = Self {
            http,
            base: ep.http_base.clone(),
            id: id.to_owned(),
            token: token.to_owned(),
        };
        let body = format!("{{\"sessionId\":\"{id}\"}}");
        let (status, text) = sharer
            .post(format!("{}/api/share/start", sharer.base), body)
            .await?;
        if status != 200 {
            bail!(
                "POST /api/share/start {id}: HTTP {status}: {text}{}",
                if status == 401 {
                    " (--token must equal the server's BEARER_TOKEN)"
                } else {
                    ""
                }
            );
        }
        Ok(sharer)
    }

    async fn post(&self, url: String, body: String) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }

    async fn send(
        &mut self,
        run: &AudioRun,
        session: usize,
        seq: i64,
        payload: &Payload,
    ) -> anyhow::Result<bool> {
        let a = &run.settings;
        let body = rest_chunk_body(
            &payload.base64,
            a.sample_rate,
            a.channels,
            wall_clock_ms() as u64,
            seq,
        );
        let url = format!("{}/api/share/{}/audio", self.base, self.id);
        let sent = std::time::Instant::now();
        run.book.mark(session, seq, sent);
        run.rec.sent.fetch_add(1, Relaxed);
        let result = self.post(url, body).await;
        run.post_us
            .record(session, sent.elapsed().as_micros() as u64);
        match result {
            Ok((200, _)) => {
                run.chunk_accepted(session);
                Ok(true)
            }
            Ok((status, text)) => {
                run.refused.fetch_add(1, Relaxed);
                run.rec
                    .note_error(|| format!("POST audio refused: HTTP {status}: {text}"));
                Ok(false)
            }
            Err(e) => {
                run.refused.fetch_add(1, Relaxed);
                run.rec.note_error(|| format!("{e:#}"));
                Ok(false)
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let url = format!("{}/api/share/{}/stop", self.base, self.id);
        let (status, text) = self.post(url, String::new()).await?;
        if status != 200 {
            bail!("POST /api/share/{}/stop: HTTP {status}: {text}", self.id);
        }
        Ok(())
    }
}

struct WsSharer {
    ws: Ws,
    id: String,
    session: usize,
}

/// Request ids of the WebSocket sharer's requests.
const SHARE_START_ID: u64 = 2;
const SHARE_STOP_ID: u64 = 3;

impl WsSharer {
    async fn start(ep: &Endpoints, id: &str, session: usize, token: &str) -> anyhow::Result<Self> {
        let join = wire::join_text(id, Role::Follower);
        let ws = tokio::time::timeout(
            CONNECT_TIMEOUT,
            wire::connect_join_with(&ep.ws_url, &join, WebSocketConfig::default()),
        )
        .await
        .map_err(|_| anyhow!("sharer connect+join timed out"))?
        .map_err(|e| anyhow!("sharer of {id}: {e}"))?;
        let mut sharer = Self {
            ws,
            id: id.to_owned(),
            session,
        };
        let start = ClientEvent::ShareStart(ShareStart {
            token: token.to_owned(),
        });
        sharer
            .ws
            .send(Message::text(encode_client_frame(
                &start,
                Some(&RequestId::from(SHARE_START_ID)),
            )))
            .await
            .context("sending share_start")?;
        let reply = sharer.reply(SHARE_START_ID).await?;
        match reply.get("type").and_then(|t| t.as_str()) {
            Some("share_started") => Ok(sharer),
            _ => bail!("share_start {id} refused: {reply}"),
        }
    }

    /// Reads until the reply to request `id`, skipping everything else.
    async fn reply(&mut self, id: u64) -> anyhow::Result<serde_json::Value> {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let value: serde_json::Value = serde_json::from_str(text.as_str())
                            .with_context(|| format!("non-JSON frame: {}", text.as_str()))?;
                        if value.get("id").and_then(|v| v.as_u64()) == Some(id) {
                            return Ok(value);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => bail!("server closed the sharer: {frame:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::Error::new(e).context("sharer socket")),
                    None => bail!("sharer connection ended"),
                }
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("no reply to request {id} from the server"))?
    }

    async fn while_reading<T>(
        &mut self,
        run: &AudioRun,
        work: impl Future<Output = T>,
    ) -> anyhow::Result<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                msg = self.ws.next() => self.on_incoming(run, msg)?,
            }
        }
    }

    fn on_incoming(
        &self,
        run: &AudioRun,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> anyhow::Result<()> {
        match msg {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Lite>(text.as_str()) else {
                    run.rec.undecodable.fetch_add(1, Relaxed);
                    return Ok(());
                };
                match &*frame.kind {
                    "rate_limit_exceeded" => {
                        // The chunk just sent was refused: it is not expected anywhere.
                        run.refused.fetch_add(1, Relaxed);
                        run.accepted.fetch_sub(1, Relaxed);
                        let receivers = run.joined[self.session].load(Relaxed);
                        run.rec.expected.fetch_sub(receivers, Relaxed);
                        run.rec.server_errors.fetch_add(1, Relaxed);
                        run.rec
                            .note_error(|| format!("sharer got {}", text.as_str()));
                    }
                    "error" => {
                        run.rec.server_errors.fetch_add(1, Relaxed);
                        run.rec
                            .note_error(|| format!("sharer got {}", text.as_str()));
                    }
                    _ => {}
                }
                Ok(())
            }
            Some(Ok(Message::Close(frame))) => bail!("server closed the sharer: {frame:?}"),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("sharer socket")),
            None => bail!("sharer connection ended"),
        }
    }

    async fn send(
        &mut self,
        run: &AudioRun,
        session: usize,
        seq: i64,
        payload: &Payload,
    ) -> anyhow::Result<bool> {
        let a = &run.settings;
        let header = AudioHeader {
            sequence: seq,
            timestamp: wall_clock_ms(),
            sample_rate: a.sample_rate,
            channels: a.channels,
            format: run.format,
        };
        let frame = header.encode(&payload.pcm);
        run.book.mark(session, seq, std::time::Instant::now());
        run.rec.sent.fetch_add(1, Relaxed);
        self.ws
            .send(Message::binary(frame))
            .await
            .context("sending an audio frame")?;
        run.chunk_accepted(session);
        Ok(true)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let stop = encode_client_frame(
            &ClientEvent::ShareStop,
            Some(&RequestId::from(SHARE_STOP_ID)),
        );
        self.ws
            .send(Message::text(stop))
            .await
            .context("sending share_stop")?;
        let reply = self.reply(SHARE_STOP_ID).await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
        match reply.get("type").and_then(|t| t.as_str()) {
            Some("share_ended") => Ok(()),
            _ => bail!("share_stop {} refused: {reply}", self.id),
        }
    }
}
