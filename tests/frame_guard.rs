//! Half-sent messages and framing violations, as an attacker sends them, against the real
//! server over raw sockets (issue "Safe to expose", findings 1 and 7):
//!
//! - a compressed text frame with FIN=0 inflating towards 1,040,000 spaces, never finished,
//!   kept alive by pongs: the server holds at most `MAX_MESSAGE_BYTES` (plus the inflate
//!   state) for it, and closes it with 4003 after `MESSAGE_TIMEOUT_MS`;
//! - large unfinished messages across connections are bounded by
//!   `PARTIAL_MESSAGE_BUDGET_BYTES`: past it a connection is closed with 1013, and the
//!   budget comes back when connections end;
//! - an unmasked frame, RSV1 without deflate, a reserved opcode and an oversized control
//!   frame each get an `error` event and a close frame with 1002 (the TCP connection used
//!   to be dropped without one).
//!
//! The other members of the session are unharmed throughout.

mod common;
mod support;

use bandsync_client::protocol::close;
use common::TestServer;
use flate2::{Compress, Compression, FlushCompress};
use serde_json::Value;
use std::time::Duration;
use support::{join_follower, join_leader, metrics_text, next_state_update, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A WebSocket client written by hand, so that it can send what no library would.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// What the server sent, up to its close frame.
#[derive(Debug, Default)]
struct Ending {
    texts: Vec<Value>,
    close: Option<u16>,
}

impl Raw {
    async fn connect(server: &TestServer, deflate: bool) -> Raw {
        Raw::connect_with(server, deflate, &[]).await
    }

    /// Connects, sending `early` in the same write as the handshake (before the 101).
    async fn connect_with(server: &TestServer, deflate: bool, early: &[u8]) -> Raw {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let offer = if deflate {
            format!("Sec-WebSocket-Extensions: {OFFER}\r\n")
        } else {
            String::new()
        };
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
            server.addr
        );
        let mut first = request.into_bytes();
        first.extend_from_slice(early);
        tcp.write_all(&first).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..end);
        Raw { tcp, buf }
    }

    /// One frame with the given first byte; masked unless `masked` is false.
    fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mask = [0xa1, 0x5e, 0x07, 0xc3];
        let bit = if masked { 0x80 } else { 0 };
        let mut frame = vec![first];
        match payload.len() {
            n @ 0..=125 => frame.push(bit | n as u8),
            n @ 126..=0xffff => {
                frame.push(bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        frame
    }

    /// Sends bytes; false once the server has closed the socket.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// Reads frames until the server's close frame or EOF; answers nothing.
    async fn ending(&mut self) -> Ending {
        let mut ending = Ending::default();
        loop {
            while let Some((opcode, payload, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                match opcode {
                    0x1 => ending.texts.push(serde_json::from_slice(&payload).unwrap()),
                    0x8 => {
                        ending.close = Some(u16::from_be_bytes([payload[0], payload[1]]));
                        return ending;
                    }
                    _ => {}
                }
            }
            let mut chunk = [0u8; 4096];
            match timeout(WAIT, self.tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return ending,
            }
        }
    }
}

/// A server frame (unmasked) at the start of `buf`: (opcode, payload, bytes used).
fn parse(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, start) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    Some((b0 & 0x0f, payload, start + len))
}

/// Raw DEFLATE with a sync flush and the `00 00 ff ff` tail removed (RFC 7692 7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

/// The value of an unlabelled metric (`name value`).
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = metrics_text(server).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Waits (bounded) until `metric` satisfies `ok`.
async fn metric_until(server: &TestServer, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = metric(server, name).await;
        if ok(value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finding 1: 20 connections each begin a compressed message that would inflate to
/// 1,040,000 spaces and never finish it, answering pings all along. Before the guard the
/// server held about 1.07 MB for each; now each is bounded by MAX_MESSAGE_BYTES plus the
/// inflate state, and each is closed with 4003 once MESSAGE_TIMEOUT_MS has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_compressed_messages_are_bounded_and_time_out() {
    let server = TestServer::start_with(|c| {
        c.message_timeout_ms = 1500;
        c.socket_ping_interval = 250;
    })
    .await;
    let (mut leader, snap) = join_leader(&server, "band").await;
    let (mut follower, _) = join_follower(&server, "band").await;

    let spaces = deflate(&vec![b' '; 1_040_000]);
    assert!(spaces.len() < 2048, "the payload is {} bytes", spaces.len());
    let opening = Raw::frame(0x40 | 0x1, &spaces, true); // RSV1, text, FIN=0
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let mut raw = Raw::connect(&server, true).await;
        assert!(raw.send(&opening).await);
        attackers.push(raw);
    }
    let per_connection = 16 * 1024 + 1 + 44 * 1024 + 4096;
    let held = metric_until(&server, "bandsync_partial_message_bytes", |v| v > 0.0).await;
    assert!(held > 0.0, "the half-sent messages are accounted for");
    assert!(
        held <= (20 * per_connection) as f64,
        "{held} bytes held for 20 half-sent messages"
    );

    // Pongs every 300 ms keep the sockets alive; the message deadline still ends them.
    let started = Instant::now();
    let pong = Raw::frame(0x8A, b"", true);
    let mut closes = Vec::new();
    for mut raw in attackers {
        let pong = pong.clone();
        closes.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(300));
            let reader = async {
                loop {
                    ticker.tick().await;
                    if !raw.send(&pong).await {
                        return None;
                    }
                    if let Ok(ending) = timeout(Duration::from_millis(1), raw.ending()).await {
                        return ending.close;
                    }
                }
            };
            timeout(Duration::from_secs(15), reader)
                .await
                .ok()
                .flatten()
        }));
    }
    for close in closes {
        assert_eq!(close.await.unwrap(), Some(close::MESSAGE_TIMEOUT));
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let after = metric_until(&server, "bandsync_partial_message_bytes", |v| v == 0.0).await;
    assert_eq!(after, 0.0, "every byte went back to the budget");

    // The band played on.
    leader.send(support::tempo(133.0)).await.unwrap();
    assert_eq!(
        next_state_update(&mut follower).await.version,
        snap.version + 1
    );
}

/// Finding 1, across connections: unfinished binary messages of 600 KB each (binary
/// messages, audio, may be as large as MAX_FRAME_BYTES) draw on one budget. With room for
/// one, the second connection is closed with 1013 and told why; once the first ends, a
/// third may again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_share_one_budget_and_the_excess_is_closed_with_1013() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 1 << 20;
        c.partial_message_budget_bytes = 1 << 20;
    })
    .await;
    let (mut leader, snap) = join_leader(&server, "band").await;
    let (mut follower, _) = join_follower(&server, "band").await;
    let part = Raw::frame(0x2, &vec![7u8; 600_000], true); // binary, FIN=0

    let mut first = Raw::connect(&server, false).await;
    assert!(first.send(&part).await);
    metric_until(&server, "bandsync_partial_message_bytes", |v| {
        v >= 600_000.0
    })
    .await;

    let mut second = Raw::connect(&server, false).await;
    let _ = second.send(&part).await;
    let ending = second.ending().await;
    assert_eq!(ending.close, Some(close::TRY_AGAIN_LATER), "{ending:?}");
    assert_eq!(ending.texts.len(), 1, "{ending:?}");
    assert_eq!(ending.texts[0]["data"]["code"], "INVALID_MESSAGE");

    drop(first);
    metric_until(&server, "bandsync_partial_message_bytes", |v| v == 0.0).await;
    let mut third = Raw::connect(&server, false).await;
    assert!(third.send(&part).await);
    assert!(third.send(&Raw::frame(0x80, &[7u8; 1000], true)).await); // the last fragment
    let text = br#"{"type":"heartbeat","id":"h","data":{"t0":1}}"#;
    assert!(third.send(&Raw::frame(0x81, text, true)).await);
    // The whole 601 KB message reached the server: the engine answers it (a binary frame
    // from a member who is not sharing is an INVALID_MESSAGE), and the heartbeat after it
    // is answered too, in either order (the reader answers heartbeats itself).
    let mut buf = Vec::new();
    let mut texts: Vec<Value> = Vec::new();
    timeout(WAIT, async {
        while !texts.iter().any(|t| t["type"] == "heartbeat_response") {
            while let Some((op, payload, used)) = parse(&buf) {
                buf.drain(..used);
                if op == 0x1 {
                    texts.push(serde_json::from_slice(&payload).unwrap());
                }
            }
            if texts.iter().any(|t| t["type"] == "heartbeat_response") {
                break;
            }
            let mut chunk = [0u8; 4096];
            let n = third.tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a reply after the whole 601 KB message went through");
    for text in &texts {
        match text["type"].as_str() {
            Some("heartbeat_response") => assert_eq!(text["id"], "h"),
            Some("error") => assert_eq!(text["data"]["code"], "INVALID_MESSAGE", "{text}"),
            _ => panic!("unexpected {text}"),
        }
    }

    leader.send(support::tempo(90.0)).await.unwrap();
    assert_eq!(
        next_state_update(&mut follower).await.version,
        snap.version + 1
    );
    let refused = metrics_text(&server).await;
    assert!(
        refused.contains("bandsync_ws_messages_refused_total{reason=\"budget\"} 1"),
        "{refused}"
    );
}

/// Finding 7: each framing violation gets an `error` event and a close frame with 1002,
/// instead of a dropped TCP connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_violations_are_answered_with_1002() {
    let server = TestServer::start().await;
    let (mut leader, snap) = join_leader(&server, "band").await;
    let (mut follower, _) = join_follower(&server, "band").await;
    let hello = br#"{"type":"sync_request"}"#;
    let violations: [(&str, Vec<u8>); 5] = [
        ("unmasked", Raw::frame(0x81, hello, false)),
        ("RSV1 without deflate", Raw::frame(0xC1, hello, true)),
        ("reserved opcode", Raw::frame(0x83, hello, true)),
        ("oversized control frame", Raw::frame(0x89, &[0; 126], true)),
        ("fragmented ping", Raw::frame(0x09, b"", true)),
    ];
    for (what, frame) in violations {
        let mut raw = Raw::connect(&server, false).await;
        assert!(raw.send(&frame).await, "{what}");
        let ending = raw.ending().await;
        assert_eq!(
            ending.close,
            Some(close::PROTOCOL_ERROR),
            "{what}: {ending:?}"
        );
        let error = ending
            .texts
            .first()
            .unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(error["data"]["code"], "INVALID_MESSAGE", "{what}");
    }
    leader.send(support::tempo(150.0)).await.unwrap();
    assert_eq!(
        next_state_update(&mut follower).await.version,
        snap.version + 1
    );
}

/// A plain fragmented text message over MAX_MESSAGE_BYTES is discarded as it arrives (not
/// assembled) and answered with INVALID_MESSAGE; the socket stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_text_over_the_message_limit_is_refused_and_the_socket_stays_open() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server, false).await;
    assert!(raw.send(&Raw::frame(0x01, &[b' '; 12_000], true)).await);
    assert!(raw.send(&Raw::frame(0x00, &[b' '; 12_000], true)).await);
    // The first fragment is held until the second one arrives and goes over the limit.
    assert_eq!(
        metric_until(&server, "bandsync_partial_message_bytes", |v| v == 0.0).await,
        0.0,
        "nothing of it is kept"
    );
    assert!(raw.send(&Raw::frame(0x80, b"{}", true)).await);
    let hb = br#"{"type":"heartbeat","id":"after","data":{"t0":1}}"#;
    assert!(raw.send(&Raw::frame(0x81, hb, true)).await);
    let mut texts = Vec::new();
    let mut buf = Vec::new();
    timeout(WAIT, async {
        while texts.len() < 2 {
            while let Some((op, payload, used)) = parse(&buf) {
                buf.drain(..used);
                if op == 0x1 {
                    texts.push(serde_json::from_slice::<Value>(&payload).unwrap());
                }
            }
            if texts.len() < 2 {
                let mut chunk = [0u8; 4096];
                let n = raw.tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    })
    .await
    .expect("two replies");
    assert_eq!(texts[0]["data"]["code"], "INVALID_MESSAGE", "{texts:?}");
    let message = texts[0]["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("24002 bytes exceeds MAX_MESSAGE_BYTES"),
        "{message}"
    );
    assert_eq!(texts[1]["type"], "heartbeat_response");
    assert_eq!(texts[1]["id"], "after");
}

/// Frames sent in the same write as the handshake reach hyper before the upgrade, in its
/// buffer: they are still read, first and in order, and pass the guard like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_handshake_are_read_first() {
    let server = TestServer::start().await;
    let hb = br#"{"type":"heartbeat","id":"early","data":{"t0":1}}"#;
    let mut early = Raw::frame(0x81, hb, true);
    early.extend(Raw::frame(0x88, &1000u16.to_be_bytes(), true));
    let mut raw = Raw::connect_with(&server, false, &early).await;
    let ending = raw.ending().await;
    let reply = ending
        .texts
        .first()
        .unwrap_or_else(|| panic!("no reply: {ending:?}"));
    assert_eq!(reply["type"], "heartbeat_response", "{ending:?}");
    assert_eq!(reply["id"], "early");
    assert_eq!(
        ending.close,
        Some(1000),
        "the close is answered: {ending:?}"
    );
}

impl Raw {
    /// Reads until a frame with `opcode`; its payload. Frames of other kinds are skipped.
    async fn next_of(&mut self, opcode: u8) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some((op, payload, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                if op == opcode {
                    return payload;
                }
            }
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                other => panic!("no frame with opcode {opcode:#x}: {other:?}"),
            }
        }
    }

    /// Whether the server closes the TCP connection (EOF) within [`WAIT`].
    async fn closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match timeout(WAIT, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// `/ws` reads the guard's output as messages itself (no tungstenite there): a ping is
/// answered with a pong carrying its payload, and the peer's close with its own code and
/// reason (1002 for a code no endpoint may send, an empty close for an empty one), after
/// which the server closes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_and_a_close_is_echoed() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server, false).await;
    assert!(raw.send(&Raw::frame(0x89, b"are you there", true)).await);
    assert_eq!(raw.next_of(0xA).await, b"are you there");
    assert!(raw.send(&Raw::frame(0x88, b"\x03\xe8bye", true)).await);
    assert_eq!(raw.next_of(0x8).await, b"\x03\xe8bye");
    assert!(
        raw.closed_by_server().await,
        "the socket ends after the close"
    );

    // 1005 is reserved: it may not be sent on the wire.
    let mut raw = Raw::connect(&server, false).await;
    assert!(
        raw.send(&Raw::frame(0x88, &1005u16.to_be_bytes(), true))
            .await
    );
    let reply = raw.next_of(0x8).await;
    assert_eq!(
        u16::from_be_bytes([reply[0], reply[1]]),
        close::PROTOCOL_ERROR
    );
    assert!(raw.closed_by_server().await);

    let mut raw = Raw::connect(&server, false).await;
    assert!(raw.send(&Raw::frame(0x88, b"", true)).await);
    assert_eq!(raw.next_of(0x8).await, b"");
    assert!(raw.closed_by_server().await);
}
