//! The cheap receiving path: raw WebSocket followers and a frame sink shared with SSE.
//!
//! At 1,000+ connections the load client's own reading cost shows up in the latency it
//! measures, so followers do not go through [`bandsync_client::WsClient`] (which decodes
//! every frame into the full typed `ServerFrame`, allocating its strings). They read
//! tungstenite messages directly and decode a borrowed [`Lite`] view that keeps only
//! `type`, `seq`, `serverTime` and the transport's `tempo`; serde skips the rest without
//! allocating. Leaders, which are few, use `WsClient` (see `leader.rs`).

use crate::recorder::Recorder;
use bandsync_bench::bench_stats::{bench_tempo_index, SeqTracker};
use bandsync_client::protocol::{encode_client_frame, ClientEvent, JoinSession, RequestId, Role};
use bandsync_client::wall_clock_ms;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one connection (TCP, handshake, join) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The few fields of a server frame the bench looks at.
#[derive(Debug, Deserialize)]
pub struct Lite<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub data: LiteData<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiteData<'a> {
    pub seq: Option<u64>,
    pub server_time: Option<f64>,
    pub transport: Option<LiteTransport>,
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct LiteTransport {
    pub tempo: f64,
}

/// What a connection's frames are measured for.
#[derive(Debug, Clone, Copy)]
pub struct Track {
    pub ticks: bool,
    pub latency: bool,
}

/// Per-connection receiving state: everything lands in the shared [`Recorder`].
pub struct Sink {
    rec: Arc<Recorder>,
    hint: usize,
    track: Track,
    seq: SeqTracker,
    window_ticks: u64,
}

impl Sink {
    pub fn new(rec: Arc<Recorder>, hint: usize, track: Track) -> Self {
        Self {
            rec,
            hint,
            track,
            seq: SeqTracker::new(),
            window_ticks: 0,
        }
    }

    /// One frame's text, received at `at` (monotonic) / `wall_ms` (wall clock).
    pub fn on_text(&mut self, text: &str, at: Instant, wall_ms: f64) {
        let rec = &*self.rec;
        let measuring = rec.measuring();
        if measuring {
            rec.frames.fetch_add(1, Relaxed);
        }
        let Ok(frame) = serde_json::from_str::<Lite>(text) else {
            rec.undecodable.fetch_add(1, Relaxed);
            return;
        };
        match &*frame.kind {
            "scroll_tick" if self.track.ticks => {
                let Some(seq) = frame.data.seq else { return };
                let obs = self.seq.observe(seq, at, rec.tick_interval);
                if !measuring {
                    return;
                }
                self.window_ticks += 1;
                rec.ticks.fetch_add(1, Relaxed);
                if obs.missing > 0 {
                    rec.missing.fetch_add(obs.missing, Relaxed);
                }
                if obs.out_of_order {
                    rec.out_of_order.fetch_add(1, Relaxed);
                }
                if let Some(j) = obs.jitter_us {
                    rec.jitter.record(self.hint, j);
                }
                if let Some(server_time) = frame.data.server_time {
                    // Same machine, same wall clock: no offset to estimate.
                    let lag_ms = wall_ms - server_time;
                    if lag_ms < 0.0 {
                        rec.negative_lag.fetch_add(1, Relaxed);
                    }
                    rec.lag.record(self.hint, (lag_ms.max(0.0) * 1000.0) as u64);
                }
            }
            "state_update" if self.track.latency => {
                if let Some(index) = frame
                    .data
                    .transport
                    .and_then(|t| bench_tempo_index(t.tempo))
                {
                    rec.delivered(self.hint, index, at);
                }
            }
            "error" | "rate_limit_exceeded" => {
                rec.server_errors.fetch_add(1, Relaxed);
                let code = frame.data.code.as_deref().unwrap_or("rate_limit_exceeded");
                rec.note_error(|| format!("server sent {} ({code})", frame.kind));
            }
            _ => {}
        }
    }

    /// The connection ended before the run did.
    pub fn closed_early(&self, why: impl FnOnce() -> String) {
        self.rec.closed_early.fetch_add(1, Relaxed);
        self.rec.note_error(why);
    }

    /// The run is over for this connection: hand in its per-client tick count.
    pub fn finish(self) {
        if self.track.ticks {
            self.rec.client_finished(self.window_ticks);
        }
    }
}

/// `join_session` with a fixed id, encoded by the protocol crate.
pub fn join_text(session_id: &str, role: Role) -> String {
    let join = ClientEvent::JoinSession(JoinSession {
        session_id: session_id.to_owned(),
        name: None,
        role: Some(role),
        resume_token: None,
        ..Default::default()
    });
    encode_client_frame(&join, Some(&RequestId::from(1)))
}

/// `join_session` of a Music Share receiver: the share token authorizes it for the audio
/// (without one, a member gets the session's events but no share data).
pub fn receiver_join_text(session_id: &str, share_token: &str) -> String {
    let join = ClientEvent::JoinSession(JoinSession {
        session_id: session_id.to_owned(),
        role: Some(Role::Follower),
        share_token: Some(share_token.to_owned()),
        ..Default::default()
    });
    encode_client_frame(&join, Some(&RequestId::from(1)))
}

/// Small buffers: tungstenite's default 128 KiB read buffer is zero-filled up to its
/// capacity before every read (it was a fifth of the bench's CPU at 1,000 followers in a
/// profile) and costs 128 KiB of memory per connection. Frames here are ~300 bytes.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Connects, joins and waits for the `snapshot`. Frames before it are skipped.
pub async fn connect_join(url: &str, join: &str) -> Result<Ws, String> {
    connect_join_with(url, join, ws_config()).await
}

/// [`connect_join`] with another socket configuration (audio frames are ~35 KB: a larger
/// read buffer takes one in a few reads rather than nine).
pub async fn connect_join_with(
    url: &str,
    join: &str,
    config: WebSocketConfig,
) -> Result<Ws, String> {
    let mut ws = crate::handshake::open(url, config).await?;
    ws.send(Message::text(join))
        .await
        .map_err(|e| format!("send join: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Lite>(text.as_str()) {
                Ok(f) if f.kind == "snapshot" => return Ok(ws),
                Ok(f) if f.kind == "error" || f.kind == "rate_limit_exceeded" => {
                    return Err(format!("join refused: {}", text.as_str()))
                }
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed during join: {frame:?}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("during join: {e}")),
            None => return Err("connection ended during join".into()),
        }
    }
}

/// Reads until `stop` changes (or its sender is dropped), then closes politely.
pub async fn read_loop(mut ws: Ws, mut sink: Sink, mut stop: watch::Receiver<bool>) {
    // One `changed()` future for the whole loop: it registers with the channel once,
    // instead of once per frame (a shared lock every frame, across 1,000s of readers).
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            biased;
            msg = ws.next() => msg,
            _ = &mut stopped => break,
        };
        let at = Instant::now();
        match msg {
            Some(Ok(Message::Text(text))) => sink.on_text(text.as_str(), at, wall_clock_ms()),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                sink.closed_early(|| format!("server closed a follower (code {code:?})"));
                sink.finish();
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                sink.closed_early(|| format!("follower socket error: {e}"));
                sink.finish();
                return;
            }
            None => {
                sink.closed_early(|| "follower connection ended".into());
                sink.finish();
                return;
            }
        }
    }
    sink.finish();
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_reads_ticks_updates_and_errors_without_the_rest() {
        let tick = r#"{"type":"scroll_tick","timestamp":1.5,"data":{"sessionId":"a/b","seq":42,
            "beat":3.25,"tempo":120,"playing":true,"version":7,"serverTime":1732190000123.456}}"#;
        let f: Lite = serde_json::from_str(tick).unwrap();
        assert_eq!(f.kind, "scroll_tick");
        assert!(matches!(f.kind, Cow::Borrowed(_)));
        assert_eq!(f.data.seq, Some(42));
        assert_eq!(f.data.server_time, Some(1_732_190_000_123.456));

        let update = r#"{"type":"state_update","timestamp":1,"data":{"sessionId":"s",
            "transport":{"playing":false,"tempo":20.001,"beat":0,"anchorTime":5},
            "message":"hi \"there\"","leaderId":null,"version":3,"serverTime":2}}"#;
        let f: Lite = serde_json::from_str(update).unwrap();
        assert_eq!(f.data.transport.unwrap().tempo, 20.001);

        let err =
            r#"{"type":"error","id":1,"timestamp":1,"data":{"code":"NOT_LEADER","message":"x"}}"#;
        let f: Lite = serde_json::from_str(err).unwrap();
        assert_eq!(f.data.code.as_deref(), Some("NOT_LEADER"));

        let bare: Lite = serde_json::from_str(r#"{"data":{},"type":"pong"}"#).unwrap();
        assert_eq!(bare.kind, "pong");
        assert!(serde_json::from_str::<Lite>(r#"{"data":{}}"#).is_err());
    }

    #[test]
    fn join_frame_is_a_valid_request() {
        let text = join_text("bench-1/x", Role::Follower);
        let frame = bandsync_client::protocol::decode_client_frame(&text).unwrap();
        assert_eq!(frame.id, Some(RequestId::from(1)));
        assert!(
            matches!(frame.event, ClientEvent::JoinSession(ref j) if j.session_id == "bench-1/x")
        );
    }
}
