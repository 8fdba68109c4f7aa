//! Music Share over the WebSocket (PROTOCOL.md section 13): `share_start` and binary audio
//! refusals with their codes (`UNAUTHORIZED`, `NOT_IN_SESSION`, `SESSION_LIMIT`,
//! `INVALID_SESSION_ID`, the per-session audio rate limit), and the late joiner's burst of
//! the last `AUDIO_BURST_MS` of buffered audio, in order, over WebSocket and SSE.
//!
//! A raw tungstenite socket, because the client library refuses binary frames.

mod common;
mod share_support;
mod support;

use bandsync_client::protocol::server::ServerEvent;
use bandsync_protocol::audio::{decode_audio_frame, AudioHeader, SampleFormat};
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use share_support::{chunk, share_server, tiny_samples, Api, TOKEN};
use support::{raw_connect, RawSocket, WAIT};
use tokio_tungstenite::tungstenite::Message;

/// What a raw socket delivered.
#[derive(Debug)]
enum Got {
    Json(Value),
    Audio(AudioHeader, Vec<u8>),
}

struct Peer(RawSocket);

impl Peer {
    async fn open(server: &TestServer) -> Self {
        Self(raw_connect(server).await)
    }

    async fn send(&mut self, value: Value) {
        self.0
            .send(Message::text(value.to_string()))
            .await
            .expect("send");
    }

    async fn send_audio(&mut self, sequence: i64, samples: &[u8]) {
        let header = AudioHeader {
            sequence,
            timestamp: 1000.0 + sequence as f64,
            sample_rate: 8000,
            channels: 1,
            format: SampleFormat::I16,
        };
        self.0
            .send(Message::binary(header.encode(samples)))
            .await
            .expect("send audio");
    }

    /// The next data frame (pings skipped); panics on a close or after [`WAIT`].
    async fn next(&mut self) -> Got {
        loop {
            let next = tokio::time::timeout(WAIT, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("nothing within {WAIT:?}"));
            return match next {
                Some(Ok(Message::Text(text))) => Got::Json(
                    serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}: {text}")),
                ),
                Some(Ok(Message::Binary(bytes))) => {
                    let (header, samples) = decode_audio_frame(&bytes)
                        .unwrap_or_else(|e| panic!("not an audio frame: {e}"));
                    Got::Audio(header, samples.to_vec())
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                other => panic!("expected a frame, got {other:?}"),
            };
        }
    }

    /// The next JSON frame that is not `room_stats`; panics on audio.
    async fn next_json(&mut self) -> Value {
        loop {
            match self.next().await {
                Got::Json(v) if v["type"] == "room_stats" => continue,
                Got::Json(v) => return v,
                Got::Audio(header, _) => panic!("unexpected audio {header:?}"),
            }
        }
    }

    /// Sends `type` with `data` and id `id`; returns the reply (which must echo the id).
    async fn request(&mut self, id: u64, kind: &str, data: Option<Value>) -> Value {
        let mut frame = json!({"type": kind, "id": id});
        if let Some(data) = data {
            frame["data"] = data;
        }
        self.send(frame).await;
        let reply = self.next_json().await;
        assert_eq!(reply["id"], json!(id), "{reply}");
        reply
    }

    async fn join(&mut self, session: &str) {
        let snapshot = self
            .request(1, "join_session", Some(json!({"sessionId": session})))
            .await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    }

    /// Joins as a receiver of the share: with the share token, without which no share
    /// data is sent (PROTOCOL.md section 14, *Receiving a share*).
    async fn join_receiving(&mut self, session: &str) {
        let join = json!({"sessionId": session, "shareToken": TOKEN});
        let snapshot = self.request(1, "join_session", Some(join)).await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    }

    async fn share_start(&mut self, id: u64, token: &str) -> Value {
        self.request(id, "share_start", Some(json!({"token": token})))
            .await
    }
}

/// The code of an `error` frame; panics on anything else.
fn error_code(frame: &Value) -> &str {
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(
        frame["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{frame}"
    );
    frame["data"]["code"].as_str().expect("code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_start_refusals_carry_their_codes() {
    let server = share_server(|c| c.share.max_share_sessions = 1).await;

    // Not in a session: NOT_IN_SESSION, even with the right token.
    let mut sharer = Peer::open(&server).await;
    let reply = sharer.share_start(2, TOKEN).await;
    assert_eq!(error_code(&reply), "NOT_IN_SESSION");

    // The wrong token, or none that matches: UNAUTHORIZED; the socket stays usable and
    // is not a sharer (its audio is refused, and share_stop has nothing to stop).
    sharer.join("123456").await;
    for (id, token) in [(3, "Bearer Nope"), (4, ""), (5, "Token")] {
        let reply = sharer.share_start(id, token).await;
        assert_eq!(error_code(&reply), "UNAUTHORIZED", "token {token:?}");
    }
    sharer.send_audio(0, &[0; 4]).await;
    assert_eq!(error_code(&sharer.next_json().await), "INVALID_MESSAGE");
    let reply = sharer.request(6, "share_stop", None).await;
    assert_eq!(error_code(&reply), "NOT_IN_SESSION");
    Api::new(&server)
        .status("123456")
        .await
        .error(404, "SESSION_NOT_FOUND");

    // The right token (as the whole header value, or after `Bearer `): started.
    let reply = sharer.share_start(7, TOKEN).await;
    assert_eq!(reply["type"], "share_started", "{reply}");
    assert_eq!(reply["data"]["sessionId"], "123456");

    // A second share while MAX_SESSIONS (1) are active: SESSION_LIMIT.
    let mut second = Peer::open(&server).await;
    second.join("654321").await;
    let reply = second.share_start(2, &format!("Bearer {TOKEN}")).await;
    assert_eq!(error_code(&reply), "SESSION_LIMIT");
    // Not a 6-digit id: INVALID_SESSION_ID.
    let mut third = Peer::open(&server).await;
    third.join("band").await;
    let reply = third.share_start(2, TOKEN).await;
    assert_eq!(error_code(&reply), "INVALID_SESSION_ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_every_share_start_is_unauthorized() {
    let server = TestServer::start().await; // BEARER_TOKEN unset
    let mut sharer = Peer::open(&server).await;
    sharer.join("123456").await;
    for (id, token) in [(2, TOKEN), (3, ""), (4, "Bearer ")] {
        let reply = sharer.share_start(id, token).await;
        assert_eq!(error_code(&reply), "UNAUTHORIZED", "token {token:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_over_the_per_session_rate_is_refused_with_retry_after() {
    // 2 chunks a second (a burst of 2): 20 frames sent at once cannot all pass unless the
    // sending took 9 s.
    const SENT: i64 = 20;
    let server = share_server(|c| c.share.share_audio_rate = 2).await;
    let mut sharer = Peer::open(&server).await;
    sharer.join("123456").await;
    assert_eq!(sharer.share_start(2, TOKEN).await["type"], "share_started");
    for seq in 0..SENT {
        sharer.send_audio(seq, &(seq as i16).to_le_bytes()).await;
    }
    // Frames and commands from one socket are handled in order: every refusal comes
    // before the reply to this request.
    sharer.send(json!({"type": "sync_request", "id": 3})).await;
    let mut refused = 0;
    loop {
        let frame = sharer.next_json().await;
        if frame["id"] == json!(3) {
            assert_eq!(frame["type"], "sync_response", "{frame}");
            break;
        }
        assert_eq!(frame["type"], "rate_limit_exceeded", "{frame}");
        assert_eq!(frame.get("id"), None, "audio frames have no id: {frame}");
        let retry = frame["data"]["retryAfterMs"]
            .as_u64()
            .expect("retryAfterMs");
        assert!((1..=500).contains(&retry), "retryAfterMs {retry} at 2/s");
        refused += 1;
    }
    assert!(refused >= 1, "no refusal among {SENT} chunks at 2/s");
    // What was accepted was buffered, in order, and nothing else: the first two (the
    // burst) and then whichever the rate let through.
    let polled = Api::new(&server).poll("123456", -1).await;
    let sequences = polled.sequences();
    assert_eq!(sequences.len() as i64, SENT - refused, "{sequences:?}");
    assert_eq!(&sequences[..2], &[0, 1]);
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

/// Posts `count` chunks of 100 ms (8 frames at 80 Hz) over REST, sequences `0..count`.
async fn share_chunks(api: &Api, session: &str, range: std::ops::Range<i64>) {
    for seq in range {
        api.post_audio_ok(session, &chunk(seq, 80, 1, &tiny_samples(seq, 8)))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_last_audio_burst_ms_of_audio_in_order() {
    // The default burst (1000 ms): the last ten 100 ms chunks of the twenty buffered.
    let server = share_server(|c| c.share.share_audio_rate = 1000).await;
    let api = Api::new(&server);
    api.start_ok("123456").await;
    share_chunks(&api, "123456", 0..20).await;
    let metadata = json!({"title": "Burst", "artist": "bandsync"});
    api.post_metadata("123456", &metadata).await.ok();

    let mut joiner = Peer::open(&server).await;
    joiner.join_receiving("123456").await;
    let credentials = bandsync_client::Credentials {
        share_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let mut sse =
        bandsync_client::SseClient::connect_with(&server.base_url(), "123456", None, &credentials)
            .await
            .expect("sse connect");

    // WebSocket: the metadata, then the chunks as binary frames, oldest first.
    let first = joiner.next_json().await;
    assert_eq!(first["type"], "share_metadata", "{first}");
    assert_eq!(first["data"]["metadata"], metadata);
    let mut sequences = Vec::new();
    while sequences.len() < 10 {
        match joiner.next().await {
            Got::Audio(header, samples) => {
                assert_eq!((header.sample_rate, header.channels), (80, 1));
                assert_eq!(header.format, SampleFormat::F32);
                assert_eq!(samples, tiny_samples(header.sequence, 8));
                sequences.push(header.sequence);
            }
            Got::Json(v) if v["type"] == "room_stats" => {}
            Got::Json(v) => panic!("expected audio, got {v}"),
        }
    }
    assert_eq!(sequences, (10..20).collect::<Vec<_>>());
    // Exactly those: the next audio is the next chunk shared.
    share_chunks(&api, "123456", 20..21).await;
    loop {
        match joiner.next().await {
            Got::Audio(header, _) => {
                assert_eq!(header.sequence, 20, "a chunk beyond the burst");
                break;
            }
            Got::Json(v) if v["type"] == "room_stats" => {}
            Got::Json(v) => panic!("expected audio, got {v}"),
        }
    }

    // SSE: snapshot, metadata, then the same burst as JSON (chunk 20 came after it).
    let snapshot = support::sse_next_skipping(&mut sse, &["room_stats"]).await;
    assert_eq!(snapshot.frame.event.type_name(), "snapshot");
    let mut kinds_and_sequences = Vec::new();
    while kinds_and_sequences.len() < 12 {
        let event = support::sse_next_skipping(&mut sse, &["room_stats"]).await;
        let sequence = match &event.frame.event {
            ServerEvent::AudioChunk(audio) => {
                assert_eq!(audio.format, "f32");
                Some(audio.sequence_number)
            }
            _ => None,
        };
        kinds_and_sequences.push((event.frame.event.type_name().to_owned(), sequence));
    }
    let mut expected = vec![("share_metadata".to_owned(), None)];
    expected.extend((10..21).map(|seq| ("audio_chunk".to_owned(), Some(seq))));
    assert_eq!(kinds_and_sequences, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_follows_audio_burst_ms() {
    let server = share_server(|c| {
        c.share.share_audio_rate = 1000;
        c.share.audio_burst_ms = 300;
    })
    .await;
    let api = Api::new(&server);
    api.start_ok("123456").await;
    share_chunks(&api, "123456", 0..20).await;
    let mut joiner = Peer::open(&server).await;
    joiner.join_receiving("123456").await;
    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        match joiner.next().await {
            Got::Audio(header, _) => sequences.push(header.sequence),
            Got::Json(v) if v["type"] == "room_stats" => {}
            Got::Json(v) => panic!("expected audio, got {v}"),
        }
    }
    assert_eq!(sequences, [17, 18, 19]);
    share_chunks(&api, "123456", 20..21).await;
    loop {
        match joiner.next().await {
            Got::Audio(header, _) => {
                assert_eq!(header.sequence, 20, "a chunk beyond the burst");
                break;
            }
            Got::Json(v) if v["type"] == "room_stats" => {}
            Got::Json(v) => panic!("expected audio, got {v}"),
        }
    }
}
