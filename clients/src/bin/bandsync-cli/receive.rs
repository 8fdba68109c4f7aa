//! `receive`: follow a Music Share session, record it to a WAV file and/or play it.
//!
//! Three ways in, one [`Reception`] for what arrives:
//! - `poll`: what the seed's own client does: `GET .../audio?since=N` every 100 ms (at
//!   once again when an answer was full, to catch up), `GET .../metadata` every 500 ms.
//! - `ws`: `join_session` on `/ws`; the server pushes binary audio frames (after a burst of
//!   recent audio on join) and `share_metadata` / `share_ended` events.
//! - `sse`: `GET /sse/{id}`; audio comes as `audio_chunk` JSON events with base64 samples.
//!
//! The run ends when the share ends (`share_ended`, or 404 from the poll), at
//! `--duration`, or on Ctrl-C; in every case the WAV file is finished and the summary printed.

use crate::chunk::{chunk_of_frame, chunk_of_poll_entry, event_of, Event};
use crate::output::emit;
use crate::playback::Player;
use crate::reception::Reception;
use crate::share_api::{parse_share_id, ws_url, ShareApi};
use crate::share_ws::{Pushed, ShareSocket};
use crate::until_stopped;
use anyhow::Context as _;
use bandsync_client::protocol::encode_server_frame;
use bandsync_client::{wall_clock_ms, ClientError, Credentials, SseClient};
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// How often `poll` asks for audio and for metadata (the seed's client's rates).
const POLL_AUDIO_EVERY: Duration = Duration::from_millis(100);
const POLL_METADATA_EVERY: Duration = Duration::from_millis(500);
/// Most chunks one audio poll answers with: a full answer means more are waiting.
const POLL_LIMIT: usize = 10;
/// Why the run ended when `--duration` or Ctrl-C ended it.
const STOPPED: &str = "stopped (--duration elapsed or Ctrl-C)";
/// Bound of one wait for an SSE event; only so the library call has one.
const SSE_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiveTransport {
    /// Poll the REST API (audio every 100 ms, metadata every 500 ms).
    Poll,
    /// WebSocket /ws: binary audio frames pushed by the server.
    Ws,
    /// Server-Sent Events /sse/{id}: base64 audio_chunk events.
    Sse,
}

#[derive(Debug, Clone, Args)]
pub struct ReceiveArgs {
    /// HTTP base URL of the server, e.g. http://127.0.0.1:3001
    #[arg(long)]
    pub url: String,
    /// Share session id: exactly 6 digits.
    #[arg(long, value_parser = parse_share_id)]
    pub session: String,
    /// The Authorization header value, sent as given (e.g. "Bearer Token").
    #[arg(long, env = "BEARER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Session token for a push receiver (ws, sse) on a server in the authenticated mode
    /// (see `mint-token`); it also stands for the share token there.
    #[arg(long, env = "BANDSYNC_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,
    /// How the audio arrives.
    #[arg(long, value_enum, default_value_t = ReceiveTransport::Poll)]
    pub transport: ReceiveTransport,
    /// Write what arrives to this WAV file, in the format it arrives in (f32 from poll
    /// and f32 streams, 16-bit when the sharer sends 16-bit over ws or sse).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Play what arrives (needs a build with the `playback` feature).
    #[arg(long)]
    pub play: bool,
    /// Stop after this many seconds (fractions allowed); without it, run until the share
    /// ends or Ctrl-C.
    #[arg(long, value_name = "SECS", value_parser = bandsync_client::args::parse_secs)]
    pub duration: Option<Duration>,
}

type Stop<'a> = Pin<&'a mut (dyn Future<Output = ()> + 'a)>;

pub async fn run(args: ReceiveArgs) -> anyhow::Result<()> {
    // First, so a build without sound fails before anything else happens.
    let player = if args.play {
        Some(Player::open()?)
    } else {
        None
    };
    let api = ShareApi::new(&args.url, &args.token, &args.session)?;
    // Pollers need a running share (the seed's flow checks first); push receivers join the
    // session and get the audio whenever the sharer starts.
    let push = !matches!(args.transport, ReceiveTransport::Poll);
    let credentials = Credentials {
        token: args.session_token.clone(),
        share_token: Some(args.token.clone()),
    };
    check_status(&api, push).await?;
    let mut reception = Reception::new(args.out.clone(), player);
    let mut stopped = std::pin::pin!(until_stopped(args.duration));
    let stop: Stop<'_> = stopped.as_mut();
    let ended = match args.transport {
        ReceiveTransport::Poll => poll(&api, &mut reception, stop).await,
        ReceiveTransport::Ws => {
            websocket(&api, &args.url, &credentials, &mut reception, stop).await
        }
        ReceiveTransport::Sse => {
            sse(&args.url, &args.session, &credentials, &mut reception, stop).await
        }
    };
    // The recording is finished (and its summary printed) whatever ended the run.
    let summary = reception.finish().await;
    if let Ok(reason) = &ended {
        emit(reason);
    }
    emit(summary?);
    ended.map(drop)
}

/// `GET .../status`: fails unless the share is active, or, with `wait`, reports that it
/// will wait for one (a wrong token still fails).
async fn check_status(api: &ShareApi, wait: bool) -> anyhow::Result<()> {
    let reply = api.status().await?;
    let session = api.session();
    if wait && reply.status.as_u16() == 404 {
        emit(format!(
            "no share in session {session} yet; waiting for one to start"
        ));
        return Ok(());
    }
    if !reply.is_success() {
        return Err(api.refusal("checking the share", &reply));
    }
    let status = reply.json()?;
    if status.get("isActive").and_then(Value::as_bool) != Some(true) {
        if wait {
            emit(format!(
                "the last share in session {session} ended; waiting for a new one"
            ));
            return Ok(());
        }
        anyhow::bail!("the share in session {session} has ended");
    }
    let listeners = status
        .get("listenerCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let playing = status
        .get("currentMetadata")
        .filter(|m| m.is_object())
        .map(|m| format!(", {}", crate::chunk::NowPlaying::of(m).describe()))
        .unwrap_or_default();
    emit(format!(
        "share in session {session} is active, {listeners} listener(s){playing}"
    ));
    Ok(())
}

async fn poll(
    api: &ShareApi,
    reception: &mut Reception,
    mut stop: Stop<'_>,
) -> anyhow::Result<String> {
    let mut audio = tokio::time::interval(POLL_AUDIO_EVERY);
    audio.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut metadata = tokio::time::interval(POLL_METADATA_EVERY);
    metadata.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The highest sequence number the server returned, taken or not: what to ask after.
    let mut since: i64 = -1;
    loop {
        tokio::select! {
            () = &mut stop => return Ok(STOPPED.into()),
            _ = audio.tick() => {
                let reply = api.get_audio(since).await?;
                let received_ms = wall_clock_ms();
                match reply.status.as_u16() {
                    200 => {
                        let entries: Vec<Value> = serde_json::from_slice(&reply.body)
                            .context("the audio poll's answer is not an array")?;
                        if entries.len() >= POLL_LIMIT {
                            audio.reset_immediately();
                        }
                        for entry in entries {
                            let (seq, chunk) = chunk_of_poll_entry(entry, received_ms);
                            since = since.max(seq.unwrap_or(since));
                            match chunk {
                                Ok(chunk) => reception.take(chunk)?,
                                Err(e) => reception.invalid(&e),
                            }
                        }
                    }
                    204 => {}
                    404 => return Ok(format!("the share ended ({})", reply.describe())),
                    _ => return Err(api.refusal("polling audio", &reply)),
                }
            }
            _ = metadata.tick() => {
                let reply = api.get_metadata().await?;
                match reply.status.as_u16() {
                    200 => reception.metadata(&reply.json()?),
                    // No metadata yet, or the share ended (the audio poll reports that).
                    404 => {}
                    401 => return Err(api.refusal("polling metadata", &reply)),
                    _ => tracing::warn!("polling metadata: {}", reply.describe()),
                }
            }
        }
    }
}

/// One pushed event; `Some(reason)` when it ends the run.
fn on_event(
    reception: &mut Reception,
    value: &Value,
    received_ms: f64,
) -> anyhow::Result<Option<String>> {
    match event_of(value, received_ms) {
        Ok(Event::Audio(chunk)) => reception.take(chunk)?,
        Ok(Event::Metadata(m)) => reception.metadata(&m),
        Ok(Event::Ended(reason)) => return Ok(Some(format!("the share ended ({reason})"))),
        Ok(Event::Error(text)) => emit(format!("the server reported an error: {text}")),
        Ok(Event::Other) => {}
        Err(e) => reception.invalid(&e),
    }
    Ok(None)
}

/// Push receivers present the share token (in `join_session`, or on the SSE URL): without
/// it the server sends them the session's sync events but none of the share's data.
async fn websocket(
    api: &ShareApi,
    base: &str,
    credentials: &Credentials,
    reception: &mut Reception,
    mut stop: Stop<'_>,
) -> anyhow::Result<String> {
    let url = ws_url(base)?;
    let mut socket = ShareSocket::connect(&url).await?;
    let name = "bandsync-cli receive";
    socket.join(api.session(), name, credentials).await?;
    let ended = loop {
        let pushed = tokio::select! {
            () = &mut stop => break Ok(STOPPED.into()),
            pushed = socket.next() => pushed?,
        };
        match pushed {
            Pushed::Binary { bytes, wall_ms } => match chunk_of_frame(&bytes, wall_ms) {
                Ok(chunk) => reception.take(chunk)?,
                Err(e) => reception.invalid(&e),
            },
            Pushed::Json { value, wall_ms } => {
                if let Some(reason) = on_event(reception, &value, wall_ms)? {
                    break Ok(reason);
                }
            }
            Pushed::Closed { code, reason } => {
                break Err(anyhow::anyhow!(
                    "the server closed the connection (code {code:?}): {reason}"
                ))
            }
        }
    };
    socket.close().await;
    ended
}

async fn sse(
    base: &str,
    session: &str,
    credentials: &Credentials,
    reception: &mut Reception,
    mut stop: Stop<'_>,
) -> anyhow::Result<String> {
    let connect = SseClient::connect_with(base, session, None, credentials);
    let mut sse = tokio::time::timeout(crate::CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {base}: timed out"))?
        .with_context(|| format!("opening the SSE stream of session {session}"))?;
    loop {
        let next = tokio::select! {
            () = &mut stop => return Ok(STOPPED.into()),
            next = sse.next_event(SSE_WAIT) => next,
        };
        // Share events are not (yet) typed protocol events: the client hands them back
        // as undecodable, with their text. Typed ones are re-encoded, so both are judged
        // by one classifier.
        let (text, received_ms) = match next {
            Ok(Some(event)) => {
                let frame = &event.frame;
                let text = encode_server_frame(&frame.event, frame.id.as_ref(), frame.timestamp);
                (text, event.wall_ms)
            }
            Err(ClientError::Decode { text, .. }) => (text, wall_clock_ms()),
            Ok(None) => return Ok("the server ended the SSE stream".into()),
            Err(ClientError::Timeout(_)) => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("reading the SSE stream")),
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                reception.invalid(&anyhow::anyhow!("an SSE event that is not JSON: {e}"));
                continue;
            }
        };
        if let Some(reason) = on_event(reception, &value, received_ms)? {
            return Ok(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::Pcm;
    use base64::Engine as _;
    use serde_json::json;

    #[tokio::test]
    async fn receives_pushed_frames_over_the_websocket() {
        use crate::share_ws::tests::{fake_server, send_json};
        use crate::wav::tests::TempPath;
        use crate::wav::WavSource;
        use bandsync_client::protocol::audio::{AudioHeader, SampleFormat};
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;

        let frame = |seq: i64, samples: Vec<i16>| {
            let header = AudioHeader {
                sequence: seq,
                timestamp: wall_clock_ms(),
                sample_rate: 8000,
                channels: 2,
                format: SampleFormat::I16,
            };
            Message::binary(header.encode(&Pcm::I16(samples).to_le_bytes(SampleFormat::I16)))
        };
        let (base, server) = fake_server(move |mut ws| async move {
            // The join burst, then live frames: #1 twice (burst and live), #3 lost.
            for message in [
                frame(0, vec![1, 2, 3, 4]),
                frame(1, vec![5, 6, 7, 8]),
                frame(1, vec![5, 6, 7, 8]),
                frame(2, vec![9, 10, 11, 12]),
                frame(4, vec![13, 14]),
            ] {
                ws.send(message).await.unwrap();
            }
            let metadata = json!({"type": "share_metadata",
                "data": {"sessionId": "123456", "metadata": {"title": "T", "artist": "A"}}});
            send_json(&mut ws, &metadata).await;
            let ended = json!({"type": "share_ended",
                "data": {"sessionId": "123456", "reason": "stopped"}});
            send_json(&mut ws, &ended).await;
        })
        .await;
        let out = TempPath::new("ws-receive.wav");
        let mut reception = Reception::new(Some(out.0.clone()), None);
        let api = ShareApi::new(&base, "T", "123456").unwrap();
        let mut never = std::pin::pin!(std::future::pending::<()>());
        let ended = websocket(
            &api,
            &base,
            &Credentials::default(),
            &mut reception,
            never.as_mut(),
        )
        .await
        .unwrap();
        assert_eq!(ended, "the share ended (stopped)");
        let summary = reception.finish().await.unwrap();
        assert!(
            summary.starts_with("summary: 4 chunks (#0-#4), 1 lost, 1 repeated, 0 bad"),
            "{summary}"
        );
        assert!(summary.contains("1 metadata changes"), "{summary}");
        let mut wav = WavSource::open(&out.0).unwrap();
        assert_eq!((wav.channels, wav.format), (2, SampleFormat::I16));
        let mut want: Vec<i16> = (1..=12).collect();
        want.extend([0, 0, 0, 0, 13, 14]); // #3 as silence as long as #2
        assert_eq!(wav.read(100).unwrap(), Some(Pcm::I16(want)));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn receives_audio_chunk_events_over_sse() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let b64 = |pcm: Pcm| {
            base64::engine::general_purpose::STANDARD.encode(pcm.to_le_bytes(pcm.format()))
        };
        let chunk = |seq: i64, data: String| {
            json!({"type": "audio_chunk", "timestamp": 1.0, "data": {"sessionId": "123456",
                "sequenceNumber": seq, "sampleRate": 44100, "channels": 1, "format": "f32",
                "timestamp": wall_clock_ms(), "data": data}})
        };
        let events = [
            json!({"type": "room_stats", "timestamp": 1.0, "data": {"sessionId": "123456",
                "members": 0, "followers": 0, "listeners": 1, "leaderId": null}}),
            chunk(0, b64(Pcm::F32(vec![0.5, -0.25]))),
            chunk(1, b64(Pcm::F32(vec![0.125]))),
            json!({"type": "share_ended", "timestamp": 1.0,
                "data": {"sessionId": "123456", "reason": "stopped"}}),
        ];
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            assert!(head.starts_with(b"GET /sse/123456 "));
            let response =
                format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n{body}");
            tcp.write_all(response.as_bytes()).await.unwrap();
            // Held open: the run must end on share_ended, not on the stream's end.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut reception = Reception::new(None, None);
        let mut never = std::pin::pin!(std::future::pending::<()>());
        let ended = sse(
            &base,
            "123456",
            &Credentials::default(),
            &mut reception,
            never.as_mut(),
        )
        .await
        .unwrap();
        assert_eq!(ended, "the share ended (stopped)");
        assert_eq!(reception.last_seq(), Some(1));
        let summary = reception.finish().await.unwrap();
        assert!(
            summary.starts_with("summary: 2 chunks (#0-#1), 0 lost"),
            "{summary}"
        );
        assert!(summary.contains("0.000 s of audio, 12 bytes"), "{summary}");
        server.abort();
    }

    #[test]
    fn pushed_events_feed_the_reception() {
        let mut r = Reception::new(None, None);
        let data = base64::engine::general_purpose::STANDARD.encode(
            Pcm::F32(vec![0.25]).to_le_bytes(bandsync_client::protocol::audio::SampleFormat::F32),
        );
        let audio = json!({"type": "audio_chunk", "data": {"sessionId": "123456",
            "sequenceNumber": 0, "sampleRate": 8000, "channels": 1, "format": "f32",
            "timestamp": 1.0, "data": data}});
        assert_eq!(on_event(&mut r, &audio, 2.0).unwrap(), None);
        assert_eq!(r.last_seq(), Some(0));
        let ended = json!({"type": "share_ended", "data": {"sessionId": "123456"}});
        assert_eq!(
            on_event(&mut r, &ended, 3.0).unwrap().as_deref(),
            Some("the share ended (the sharer stopped)")
        );
    }
}
