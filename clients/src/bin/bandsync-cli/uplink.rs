//! Where `share` sends: the REST API (base64 float32 POSTs) or the WebSocket (binary audio
//! frames after `share_start`). Both post metadata and read the stop totals over REST.
//!
//! The WebSocket share handshake, as the server implements it:
//! `join_session` -> `{"type":"share_start","id":..,"data":{"token":..}}` ->
//! `share_started` (id echoed) or `error` (`UNAUTHORIZED`, `SESSION_CONFLICT`, …); then
//! binary frames; `{"type":"share_stop"}` ends it.

use crate::output::emit;
use crate::share_api::{status_of_code, ws_url, ShareApi};
use crate::share_ws::{error_of, type_of, Pushed, ShareSocket};
use crate::wav::Pcm;
use bandsync_client::protocol::audio::{AudioHeader, SampleFormat};
use bandsync_client::protocol::client::ShareStart;
use bandsync_client::protocol::{encode_client_frame, ClientEvent, RequestId};
use bandsync_client::wall_clock_ms;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;

/// How long `share_start` and `share_stop` may take to be answered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const START_ID: &str = "share-start";
const STOP_ID: &str = "share-stop";

/// One chunk on its way out.
#[derive(Debug, Clone)]
pub struct OutChunk {
    pub seq: i64,
    pub pcm: Pcm,
    pub frames: u64,
    /// Already accepted once (a WebSocket frame repeated after a rate-limit notice): it
    /// does not advance the schedule again.
    pub resend: bool,
}

impl OutChunk {
    pub fn new(seq: i64, pcm: Pcm, channels: u16) -> Self {
        let frames = (pcm.len() / usize::from(channels.max(1))) as u64;
        Self {
            seq,
            pcm,
            frames,
            resend: false,
        }
    }
}

/// What became of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Accepted,
    /// 429: send the same chunk again after this long.
    RetryAfter(Duration),
}

/// The REST body of one chunk: base64 of little-endian float32 (i16 is converted).
pub fn rest_chunk_json(chunk: &OutChunk, sample_rate: u32, channels: u16, now_ms: f64) -> Value {
    let bytes = chunk.pcm.to_le_bytes(SampleFormat::F32);
    json!({
        "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        "sampleRate": sample_rate,
        "channels": channels,
        // Whole ms, as the seed's clients send and parse it.
        "timestamp": now_ms.round() as i64,
        "sequenceNumber": chunk.seq,
    })
}

/// The binary frame of one chunk, in the samples' own format (i16 stays i16).
pub fn ws_frame(chunk: &OutChunk, sample_rate: u32, channels: u16, now_ms: f64) -> Vec<u8> {
    let format = chunk.pcm.format();
    let header = AudioHeader {
        sequence: chunk.seq,
        timestamp: now_ms,
        sample_rate,
        channels,
        format,
    };
    header.encode(&chunk.pcm.to_le_bytes(format))
}

/// `{"type":"share_start","id":"share-start","data":{"token":..}}`.
pub fn share_start_text(token: &str) -> String {
    let event = ClientEvent::ShareStart(ShareStart {
        token: token.to_owned(),
    });
    encode_client_frame(&event, Some(&RequestId::from(START_ID)))
}

/// `{"type":"share_stop","id":"share-stop"}`.
pub fn share_stop_text() -> String {
    encode_client_frame(&ClientEvent::ShareStop, Some(&RequestId::from(STOP_ID)))
}

/// What a frame the server pushed during a WebSocket share means for the sharer.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Nothing,
    /// A frame was refused for the session's rate: repeat the last one after this long.
    RateLimited(Duration),
    /// The server refused something else, or ended the share: `(status, text)`.
    Fatal(u16, String),
}

pub fn notice_of(value: &Value) -> Notice {
    let retry = |v: &Value| {
        let ms = v.pointer("/data/retryAfterMs").and_then(Value::as_u64);
        Duration::from_millis(ms.unwrap_or(1000).max(1))
    };
    match (type_of(value), error_of(value)) {
        ("rate_limit_exceeded", _) => Notice::RateLimited(retry(value)),
        (_, Some((code, _))) if code == "RATE_LIMITED" => Notice::RateLimited(retry(value)),
        (_, Some((code, message))) => {
            Notice::Fatal(status_of_code(&code), format!("{code}: {message}"))
        }
        ("share_ended", _) => Notice::Fatal(404, "the server ended the share".into()),
        _ => Notice::Nothing,
    }
}

pub struct Uplink {
    ws: Option<WsUplink>,
    /// Metadata refusals other than 429 are reported once, not every 500 ms.
    metadata_warned: bool,
}

struct WsUplink {
    socket: ShareSocket,
    /// The last frame sent, for a repeat after a rate-limit notice.
    last: Option<OutChunk>,
}

impl Uplink {
    /// `POST /api/share/start`.
    pub async fn start_rest(api: &ShareApi) -> anyhow::Result<Self> {
        let reply = api.start().await?;
        if !reply.is_success() {
            return Err(api.refusal("starting the share", &reply));
        }
        Ok(Self {
            ws: None,
            metadata_warned: false,
        })
    }

    /// Joins over the WebSocket and asks to share.
    pub async fn start_ws(api: &ShareApi, base: &str, token: &str) -> anyhow::Result<Self> {
        let url = ws_url(base)?;
        let mut socket = ShareSocket::connect(&url).await?;
        socket
            .join(
                api.session(),
                "bandsync-cli share",
                &bandsync_client::Credentials::default(),
            )
            .await?;
        socket.send_text(share_start_text(token)).await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, async {
            loop {
                match socket.next().await? {
                    Pushed::Json { value, .. } => {
                        let ours = value.get("id").and_then(Value::as_str) == Some(START_ID);
                        if let Some((code, message)) = error_of(&value).filter(|_| ours) {
                            return Ok(Err((code, message)));
                        }
                        if type_of(&value) == "share_started" {
                            return Ok(Ok(()));
                        }
                    }
                    Pushed::Binary { .. } => {}
                    Pushed::Closed { code, reason } => {
                        anyhow::bail!("the server closed the connection (code {code:?}): {reason}")
                    }
                }
            }
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "starting the share: no answer to share_start within {REPLY_TIMEOUT:?}; \
                 does this server take shares over WebSocket? try --transport rest"
            )
        })??;
        if let Err((code, message)) = reply {
            if code == "UNKNOWN_TYPE" {
                anyhow::bail!(
                    "starting the share: this server does not take shares over WebSocket \
                     ({code}: {message}); use --transport rest"
                );
            }
            return Err(api.explain(
                "starting the share",
                status_of_code(&code),
                &format!("{code}: {message}"),
            ));
        }
        Ok(Self {
            ws: Some(WsUplink { socket, last: None }),
            metadata_warned: false,
        })
    }

    /// Posts metadata; `Ok(false)` when the server did not take it (it is superseded by
    /// the next post anyway). Only a refused token ends the run.
    pub async fn post_metadata(&mut self, api: &ShareApi, body: &Value) -> anyhow::Result<bool> {
        let reply = match api.post_metadata(body).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!("posting metadata: {e:#}");
                return Ok(false);
            }
        };
        match reply.status.as_u16() {
            200..=299 => Ok(true),
            401 => Err(api.refusal("posting metadata", &reply)),
            429 => Ok(false),
            _ => {
                if !std::mem::replace(&mut self.metadata_warned, true) {
                    emit(format!(
                        "metadata not accepted ({}); the audio goes on",
                        reply.describe()
                    ));
                }
                Ok(false)
            }
        }
    }

    /// Sends one chunk.
    pub async fn send(
        &mut self,
        api: &ShareApi,
        chunk: &OutChunk,
        sample_rate: u32,
        channels: u16,
    ) -> anyhow::Result<Sent> {
        match &mut self.ws {
            Some(ws) => {
                let frame = ws_frame(chunk, sample_rate, channels, wall_clock_ms());
                ws.socket.send_binary(frame).await?;
                ws.last = Some(chunk.clone());
                Ok(Sent::Accepted)
            }
            None => {
                let body = rest_chunk_json(chunk, sample_rate, channels, wall_clock_ms());
                let reply = api.post_audio(&body).await?;
                match reply.status.as_u16() {
                    200..=299 => Ok(Sent::Accepted),
                    429 => Ok(Sent::RetryAfter(reply.wait())),
                    _ => Err(api.refusal(&format!("sending chunk #{}", chunk.seq), &reply)),
                }
            }
        }
    }

    /// Reads what the server pushes to a WebSocket sharer (it must be read, or pings go
    /// unanswered): `Some(wait)` asks to repeat the last frame. Pending forever over REST.
    pub async fn watch(&mut self) -> anyhow::Result<Option<Duration>> {
        let Some(ws) = &mut self.ws else {
            return std::future::pending().await;
        };
        match ws.socket.next().await? {
            Pushed::Json { value, .. } => match notice_of(&value) {
                Notice::Nothing => Ok(None),
                Notice::RateLimited(wait) => Ok(Some(wait)),
                Notice::Fatal(_, text) => anyhow::bail!("the server refused the audio: {text}"),
            },
            Pushed::Binary { .. } => Ok(None),
            Pushed::Closed { code, reason } => {
                anyhow::bail!("the server closed the connection (code {code:?}): {reason}")
            }
        }
    }

    /// The last WebSocket frame sent, marked as a repeat.
    pub fn last_sent(&self) -> Option<OutChunk> {
        let mut last = self.ws.as_ref()?.last.clone()?;
        last.resend = true;
        Some(last)
    }

    /// Ends the share; returns the server's totals as text.
    pub async fn stop(&mut self, api: &ShareApi) -> anyhow::Result<String> {
        let was_ws = self.ws.is_some();
        if let Some(ws) = self.ws.take() {
            if let Some(totals) = stop_ws(ws).await {
                return Ok(totals);
            }
        }
        let reply = api.stop().await?;
        match reply.status.as_u16() {
            200..=299 => Ok(totals_text(&reply.json()?)),
            // `share_stop` already ended it and told us nothing more.
            404 if was_ws && reply.code().as_deref() == Some("SESSION_ENDED") => {
                Ok("stopped (the server reported no totals)".into())
            }
            _ => Err(api.refusal("stopping the share", &reply)),
        }
    }
}

/// Sends `share_stop` and waits for its answer; `Some(totals)` when the answer had them.
async fn stop_ws(mut ws: WsUplink) -> Option<String> {
    ws.socket.send_text(share_stop_text()).await.ok()?;
    let answer = tokio::time::timeout(REPLY_TIMEOUT, async {
        loop {
            match ws.socket.next().await {
                Ok(Pushed::Json { value, .. })
                    if value.get("id").and_then(Value::as_str) == Some(STOP_ID)
                        || matches!(type_of(&value), "share_stopped" | "share_ended") =>
                {
                    return Some(value)
                }
                Ok(Pushed::Json { .. } | Pushed::Binary { .. }) => {}
                Ok(Pushed::Closed { .. }) | Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    ws.socket.close().await;
    let data = answer?.get("data")?.clone();
    data.get("sessionDuration").map(|_| totals_text(&data))
}

/// `sessionDuration=2.512 s, bytesTransferred=96000`.
pub fn totals_text(body: &Value) -> String {
    let duration = body.get("sessionDuration").and_then(Value::as_f64);
    let bytes = body.get("bytesTransferred").and_then(Value::as_u64);
    format!(
        "sessionDuration={} s, bytesTransferred={}",
        duration.map_or_else(|| "?".into(), |d| format!("{d:.3}")),
        bytes.map_or_else(|| "?".into(), |b| b.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_client::protocol::audio::decode_audio_frame;
    use bandsync_client::protocol::decode_client_frame;

    fn chunk(pcm: Pcm) -> OutChunk {
        OutChunk::new(7, pcm, 2)
    }

    #[test]
    fn rest_chunks_carry_base64_float32() {
        let c = chunk(Pcm::I16(vec![16384, -32768, 0, 8192]));
        assert_eq!(c.frames, 2);
        let v = rest_chunk_json(&c, 8000, 2, 1_000.4);
        assert_eq!(v["sampleRate"], 8000);
        assert_eq!(v["channels"], 2);
        assert_eq!(v["sequenceNumber"], 7);
        assert_eq!(v["timestamp"], 1000);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            Pcm::from_le_bytes(&bytes, SampleFormat::F32),
            Pcm::F32(vec![0.5, -1.0, 0.0, 0.25])
        );
    }

    #[test]
    fn ws_frames_keep_the_files_format() {
        for pcm in [
            Pcm::I16(vec![1, -2, 3, -4]),
            Pcm::F32(vec![0.5, -0.5, 0.25, 1.0]),
        ] {
            let c = chunk(pcm.clone());
            let frame = ws_frame(&c, 44_100, 2, 1_732_190_000_123.25);
            let (header, samples) = decode_audio_frame(&frame).unwrap();
            assert_eq!(header.sequence, 7);
            assert_eq!(header.timestamp, 1_732_190_000_123.25);
            assert_eq!((header.sample_rate, header.channels), (44_100, 2));
            assert_eq!(header.format, pcm.format());
            assert_eq!(Pcm::from_le_bytes(samples, header.format), pcm);
        }
    }

    #[test]
    fn the_share_handshake_is_as_agreed() {
        let start: Value = serde_json::from_str(&share_start_text("Bearer Token")).unwrap();
        assert_eq!(
            start,
            json!({"type": "share_start", "id": "share-start", "data": {"token": "Bearer Token"}})
        );
        let stop: Value = serde_json::from_str(&share_stop_text()).unwrap();
        assert_eq!(type_of(&stop), "share_stop");
        assert_eq!(stop["id"], "share-stop");
        // What the server decodes them into.
        let decoded = decode_client_frame(&share_start_text("T")).unwrap();
        assert_eq!(
            decoded.event,
            ClientEvent::ShareStart(ShareStart { token: "T".into() })
        );
        assert_eq!(
            decode_client_frame(&share_stop_text()).unwrap().event,
            ClientEvent::ShareStop
        );
    }

    #[test]
    fn pushed_frames_become_notices() {
        let limited = json!({"type": "rate_limit_exceeded", "data": {"retryAfterMs": 250}});
        assert_eq!(
            notice_of(&limited),
            Notice::RateLimited(Duration::from_millis(250))
        );
        let error = json!({"type": "error", "data": {"code": "RATE_LIMITED", "message": "slow"}});
        assert_eq!(
            notice_of(&error),
            Notice::RateLimited(Duration::from_secs(1))
        );
        let refused = json!({"type": "error", "data": {"code": "UNAUTHORIZED", "message": "no"}});
        assert_eq!(
            notice_of(&refused),
            Notice::Fatal(401, "UNAUTHORIZED: no".into())
        );
        assert!(matches!(
            notice_of(&json!({"type": "share_ended", "data": {}})),
            Notice::Fatal(404, _)
        ));
        assert_eq!(notice_of(&json!({"type": "room_stats"})), Notice::Nothing);
    }

    #[tokio::test]
    async fn shares_over_the_websocket_as_agreed() {
        use crate::share_ws::tests::{fake_server, next_binary, next_json, send_json};
        let (base, server) = fake_server(|mut ws| async move {
            let start = next_json(&mut ws).await;
            assert_eq!(start["type"], "share_start");
            assert_eq!(start["data"]["token"], "Bearer Token");
            let started = json!({"type": "share_started", "id": start["id"],
                "data": {"sessionId": "123456"}});
            send_json(&mut ws, &started).await;
            let (header, samples) = {
                let frame = next_binary(&mut ws).await;
                let (h, s) = decode_audio_frame(&frame).unwrap();
                (h, s.to_vec())
            };
            assert_eq!((header.sequence, header.format), (0, SampleFormat::I16));
            assert_eq!(samples, [1, 0, 2, 0]);
            let stop = next_json(&mut ws).await;
            assert_eq!(stop["type"], "share_stop");
            let stopped = json!({"type": "share_stopped", "id": stop["id"],
                "data": {"sessionDuration": 1.5, "bytesTransferred": 4}});
            send_json(&mut ws, &stopped).await;
        })
        .await;
        let api = ShareApi::new(&base, "Bearer Token", "123456").unwrap();
        let mut uplink = Uplink::start_ws(&api, &base, "Bearer Token").await.unwrap();
        let chunk = OutChunk::new(0, Pcm::I16(vec![1, 2]), 2);
        assert_eq!(
            uplink.send(&api, &chunk, 8000, 2).await.unwrap(),
            Sent::Accepted
        );
        assert_eq!(
            uplink.last_sent().map(|c| (c.seq, c.resend)),
            Some((0, true))
        );
        assert_eq!(
            uplink.stop(&api).await.unwrap(),
            "sessionDuration=1.500 s, bytesTransferred=4"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_websocket_share_says_why() {
        use crate::share_ws::tests::{fake_server, next_json, send_json};
        for (code, words) in [
            ("SESSION_CONFLICT", "already being shared"),
            ("UNAUTHORIZED", "refused the token"),
            ("UNKNOWN_TYPE", "use --transport rest"),
        ] {
            let (base, server) = fake_server(move |mut ws| async move {
                let start = next_json(&mut ws).await;
                let error = json!({"type": "error", "id": start["id"],
                    "data": {"code": code, "message": "no"}});
                send_json(&mut ws, &error).await;
            })
            .await;
            let api = ShareApi::new(&base, "T", "123456").unwrap();
            let err = Uplink::start_ws(&api, &base, "T").await.err().unwrap();
            let err = format!("{err:#}");
            assert!(err.contains(words) && err.contains(code), "{err}");
            server.await.unwrap();
        }
    }

    #[test]
    fn totals_read_the_stop_answer() {
        let body = json!({"success": true, "sessionDuration": 2.5123, "bytesTransferred": 96000});
        assert_eq!(
            totals_text(&body),
            "sessionDuration=2.512 s, bytesTransferred=96000"
        );
        assert_eq!(
            totals_text(&json!({})),
            "sessionDuration=? s, bytesTransferred=?"
        );
    }
}
