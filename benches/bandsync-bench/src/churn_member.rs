//! One churning follower: joins, reads, drops its socket on schedule, comes back after
//! `away` with its resume token (and, unless told not to, the last version it saw), and
//! records every version it receives into its [`VersionTally`].
//!
//! A drop is a plain TCP close without a WebSocket close frame or `leave_session`: what a
//! network loss looks like to the server, which then holds the identity for the recovery
//! window. Followers read with a borrowed view of each frame (like `wire.rs`): ticks arrive
//! 62.5 times a second per client while the leader plays.
//!
//! Against a cluster (several URLs) a follower joins its home instance and resumes on a
//! random one each time, as a client behind a load balancer would.

use crate::churn_tally::VersionTally;
use crate::spread::Picker;
use crate::wire::{Ws, CONNECT_TIMEOUT};
use bandsync_client::protocol::{encode_client_frame, ClientEvent, JoinSession, RequestId};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The fields of a server frame the churn clients look at.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub data: Data<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data<'a> {
    pub version: Option<u64>,
    #[serde(default)]
    pub replayed: bool,
    #[serde(default)]
    pub resumed: bool,
    #[serde(borrow)]
    pub client_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub resume_token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
}

/// Resume outcomes, shared by every client of the run.
#[derive(Debug, Default)]
pub struct ResumeCounters {
    pub attempted: AtomicU64,
    /// `snapshot.resumed` was true.
    pub resumed: AtomicU64,
    /// ... with the same `clientId`.
    pub kept_identity: AtomicU64,
    /// ... and the same role as before the drop.
    pub kept_role: AtomicU64,
    /// Reconnects (resumed or not) on another instance than the one the client left.
    pub moved: AtomicU64,
    /// Reconnects that failed (connect, handshake, join) or joined as someone new.
    pub failed: AtomicU64,
    /// Replayed `state_update`s received.
    pub replayed_events: AtomicU64,
    pub server_errors: AtomicU64,
    pub first_error: std::sync::Mutex<Option<String>>,
}

impl ResumeCounters {
    pub fn note_error(&self, e: impl FnOnce() -> String) {
        let mut first = crate::recorder::lock(&self.first_error);
        if first.is_none() {
            *first = Some(e());
        }
    }
}

/// Who this client is, as its last snapshot said.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    pub client_id: String,
    pub role: String,
    pub token: String,
}

/// A follower's `join_session`, fresh or resuming (token, and `lastVersion` if sent).
pub fn join_text(session: &str, resume: Option<(&str, Option<u64>)>) -> String {
    let join = JoinSession {
        session_id: session.to_owned(),
        resume_token: resume.map(|(token, _)| token.to_owned()),
        last_version: resume.and_then(|(_, last)| last),
        ..JoinSession::default()
    };
    encode_client_frame(&ClientEvent::JoinSession(join), Some(&RequestId::from(1)))
}

/// Opens a socket and sends `join` (the reply is read by the caller's frame loop).
pub async fn open(url: &str, join: &str, connecting: &Semaphore) -> Result<Ws, String> {
    let _permit = connecting.acquire().await.map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("connect timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    ws.send(Message::text(join))
        .await
        .map_err(|e| format!("send join: {e}"))?;
    Ok(ws)
}

/// When and how a follower churns.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Every instance's URL; the client joins `urls[home]` first.
    pub urls: Arc<[Arc<str>]>,
    pub home: usize,
    pub session: Arc<str>,
    /// The first drop; then one every `every`, while a whole drop fits before `until`.
    pub first_drop: Instant,
    pub every: Duration,
    pub away: Duration,
    pub until: Instant,
    /// Send `lastVersion` when resuming.
    pub last_version: bool,
}

/// What one follower's frame loop did with a frame.
enum Seen {
    Nothing,
    /// Its snapshot arrived: the join (or resume) is complete.
    Joined,
}

/// A follower: its tally and identity.
pub struct Follower {
    pub tally: VersionTally,
    id: Identity,
    /// The identity before the drop whose resume is pending.
    resuming: Option<Identity>,
    counters: Arc<ResumeCounters>,
    /// The instance it is on, and what picks the next one.
    at: usize,
    picker: Picker,
}

impl Follower {
    pub fn new(counters: Arc<ResumeCounters>, seed: u64) -> Self {
        Self {
            tally: VersionTally::default(),
            id: Identity::default(),
            resuming: None,
            counters,
            at: 0,
            picker: Picker::new(seed),
        }
    }

    fn on_text(&mut self, text: &str) -> Seen {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return Seen::Nothing;
        };
        let d = &frame.data;
        match &*frame.kind {
            "state_update" | "sync_response" => {
                if let Some(v) = d.version {
                    self.tally.event(v, d.replayed);
                    if d.replayed {
                        self.counters.replayed_events.fetch_add(1, Relaxed);
                    }
                }
                Seen::Nothing
            }
            "snapshot" => {
                self.tally.snapshot(d.version.unwrap_or(0));
                let now = Identity {
                    client_id: d.client_id.as_deref().unwrap_or("").to_owned(),
                    role: d.role.as_deref().unwrap_or("").to_owned(),
                    token: d.resume_token.as_deref().unwrap_or("").to_owned(),
                };
                if let Some(before) = self.resuming.take() {
                    resumed(&self.counters, &before, &now, d.resumed);
                }
                self.id = now;
                Seen::Joined
            }
            "error" | "rate_limit_exceeded" => {
                self.counters.server_errors.fetch_add(1, Relaxed);
                let code = d
                    .code
                    .as_deref()
                    .unwrap_or("rate_limit_exceeded")
                    .to_owned();
                self.counters
                    .note_error(|| format!("server sent {} ({code})", frame.kind));
                Seen::Nothing
            }
            _ => Seen::Nothing,
        }
    }

    /// Reads `ws` while `work` runs; `None` if the socket ended first.
    pub async fn read_while<T>(
        &mut self,
        ws: &mut Ws,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => { self.on_text(text.as_str()); }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                },
            }
        }
    }

    /// Reads until the snapshot of a join arrives (or the socket ends).
    async fn await_snapshot(&mut self, ws: &mut Ws) -> Result<(), String> {
        let deadline = tokio::time::sleep(CONNECT_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Seen::Joined = self.on_text(text.as_str()) {
                            return Ok(());
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return Err(format!("closed during join: {frame:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("during join: {e}")),
                    None => return Err("ended during join".into()),
                },
                () = &mut deadline => return Err("no snapshot within the connect timeout".into()),
            }
        }
    }

    /// Connects and joins as a fresh follower.
    pub async fn join(&mut self, c: &Churn, connecting: &Semaphore) -> Result<Ws, String> {
        let mut ws = open(&c.urls[c.home], &join_text(&c.session, None), connecting).await?;
        self.await_snapshot(&mut ws).await?;
        self.at = c.home;
        Ok(ws)
    }

    /// Drops and resumes on schedule until `c.until`, then reads until `stop`.
    pub async fn churn(
        &mut self,
        mut ws: Ws,
        c: &Churn,
        connecting: &Semaphore,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut next_drop = c.first_drop;
        while next_drop + c.away + Duration::from_secs(1) <= c.until {
            let reading = self.read_while(&mut ws, tokio::time::sleep_until(next_drop));
            if reading.await.is_none() {
                // The server ended it before our drop: resume on schedule all the same.
                self.counters
                    .note_error(|| "the server closed a follower before its drop".into());
                tokio::time::sleep_until(next_drop).await;
            }
            drop(ws); // the TCP connection ends without a close frame
            tokio::time::sleep(c.away).await;
            ws = match self.resume(c, connecting).await {
                Some(ws) => ws,
                None => return,
            };
            next_drop += c.every;
        }
        let stopped = stop.changed();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => { self.on_text(text.as_str()); }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                _ = &mut stopped => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }

    /// Reconnects with the resume token, retrying once a second until `c.until`.
    async fn resume(&mut self, c: &Churn, connecting: &Semaphore) -> Option<Ws> {
        loop {
            let before = self.id.clone();
            let last = c.last_version.then(|| self.tally.newest());
            let join = join_text(&c.session, Some((&before.token, last)));
            self.counters.attempted.fetch_add(1, Relaxed);
            self.resuming = Some(before);
            let to = self.picker.pick(c.urls.len());
            let result = match open(&c.urls[to], &join, connecting).await {
                Ok(mut ws) => self.await_snapshot(&mut ws).await.map(|()| ws),
                Err(e) => Err(e),
            };
            match result {
                Ok(ws) => {
                    if to != self.at {
                        self.counters.moved.fetch_add(1, Relaxed);
                    }
                    self.at = to;
                    return Some(ws);
                }
                Err(e) => {
                    self.resuming = None;
                    self.counters.failed.fetch_add(1, Relaxed);
                    self.counters.note_error(|| format!("resume: {e}"));
                    if Instant::now() + Duration::from_secs(1) >= c.until {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Counts one resume's outcome: `before` is who the client was, `now` its new snapshot.
pub fn resumed(counters: &ResumeCounters, before: &Identity, now: &Identity, resumed: bool) {
    if !resumed {
        counters.failed.fetch_add(1, Relaxed);
        counters.note_error(|| "a resume joined as a new member (resumed: false)".into());
        return;
    }
    counters.resumed.fetch_add(1, Relaxed);
    if now.client_id == before.client_id {
        counters.kept_identity.fetch_add(1, Relaxed);
        if now.role == before.role {
            counters.kept_role.fetch_add(1, Relaxed);
        }
    }
}
