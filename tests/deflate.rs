//! permessage-deflate (RFC 7692) on `/ws`, over real sockets against the real server:
//! an independent implementation (yawc) both ways, the exact bytes on the wire through a
//! raw client, deflate bombs and corrupt data refused without harm to anyone else, and
//! clients that did not negotiate (or a server with `WS_DEFLATE=false`) getting plain
//! frames. The Chromium check is in `tests/browser.rs` (`tests/browser/deflate.mjs`).

mod common;

use bandsync_client::protocol::client::{ClientEvent, SetTempo};
use bandsync_client::protocol::{Role, ServerEvent};
use bandsync_client::WsClient;
use bandsync_protocol::audio::{decode_audio_frame, AudioHeader, SampleFormat};
use base64::Engine as _;
use common::TestServer;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);
/// 900 characters make a `state_update` of about 1.1 KB: over the 1024-byte threshold.
fn long_text(seed: &str) -> String {
    format!("{seed} ").repeat(900)[..900].to_owned()
}

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

// ---------------------------------------------------------------------------------------
// A raw client: the handshake and frames by hand, so the test sees RSV1 and exact bytes.

struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct RawFrame {
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// Opens `/ws`, offering `extensions` if given. Returns the client and the response head.
async fn raw_connect(server: &TestServer, extensions: Option<&str>) -> (Raw, String) {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let offer = extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
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
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    buf.drain(..end);
    (Raw { tcp, buf }, head)
}

/// The value of the `Sec-WebSocket-Extensions` response header, if any.
fn extensions_header(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    })
}

/// Raw DEFLATE with a sync flush and the `00 00 ff ff` tail removed (RFC 7692 7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(c.total_in() as usize, data.len());
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(d.total_in() as usize, input.len(), "inflated in one go");
    out
}

impl Raw {
    async fn send_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mask = [0xa1, 0x5e, 0x07, 0xc3];
        let mut frame = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    async fn send_json(&mut self, value: Value, compressed: bool) {
        let text = value.to_string();
        if compressed {
            self.send_frame(true, true, 0x1, &deflate(text.as_bytes()))
                .await;
        } else {
            self.send_frame(true, false, 0x1, text.as_bytes()).await;
        }
    }

    /// The next frame from the server (never masked), or `None` at EOF.
    async fn frame(&mut self) -> Option<RawFrame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                let (len, start) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if start > 0 && self.buf.len() >= start + len {
                    assert!(b0 & 0x80 != 0, "the server does not fragment");
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Some(RawFrame {
                        rsv1: b0 & 0x40 != 0,
                        opcode: b0 & 0x0f,
                        payload,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
                .await
                .expect("a frame within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Next event (text frame, inflated if compressed) with whether it was compressed;
    /// pings are skipped. Panics on a close.
    async fn event(&mut self) -> (Value, bool) {
        loop {
            let f = self.frame().await.expect("connection open");
            match f.opcode {
                0x1 => {
                    let text = if f.rsv1 {
                        inflate(&f.payload)
                    } else {
                        f.payload
                    };
                    return (serde_json::from_slice(&text).unwrap(), f.rsv1);
                }
                0x9 | 0xA => continue,
                other => panic!("unexpected opcode {other}: {f:?}"),
            }
        }
    }

    async fn event_of_type(&mut self, kind: &str) -> (Value, bool) {
        loop {
            let (event, compressed) = self.event().await;
            if event["type"] == kind {
                return (event, compressed);
            }
        }
    }

    /// The next raw `state_update` frame, unparsed.
    async fn state_update_frame(&mut self) -> RawFrame {
        loop {
            let f = self.frame().await.expect("connection open");
            if f.opcode != 0x1 {
                continue;
            }
            let text = if f.rsv1 {
                inflate(&f.payload)
            } else {
                f.payload.clone()
            };
            let event: Value = serde_json::from_slice(&text).unwrap();
            if event["type"] == "state_update" {
                return f;
            }
        }
    }

    /// Reads until the close frame; returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let f = self.frame().await.expect("a close frame before EOF");
            if f.opcode == 0x8 {
                return u16::from_be_bytes([f.payload[0], f.payload[1]]);
            }
        }
    }

    async fn join(&mut self, session: &str, leader: bool, compressed: bool) -> Value {
        let role = if leader { "leader" } else { "follower" };
        let join = json!({"type":"join_session","id":"j","data":{"sessionId":session,"role":role}});
        self.send_json(join, compressed).await;
        self.event_of_type("snapshot").await.0
    }
}

async fn metric(server: &TestServer, series: &str) -> u64 {
    let text = reqwest::get(server.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

// ---------------------------------------------------------------------------------------

/// yawc, an independent permessage-deflate implementation: it compresses everything it
/// sends (also fragmented), and must read our compressed broadcast.
#[tokio::test]
async fn a_third_party_deflate_client_round_trips_with_the_server() {
    let server = TestServer::start().await;
    let options = yawc::Options::default()
        .with_compression_level(yawc::CompressionLevel::default())
        .with_max_fragment_size(16);
    let mut third = yawc::WebSocket::connect(server.ws_url().parse().unwrap())
        .with_options(options)
        .await
        .expect("yawc connects");
    let mut plain = WsClient::connect(&server.ws_url()).await.unwrap();

    let join = json!({"type":"join_session","id":"y1","data":{"sessionId":"yawc","role":"leader"}});
    third
        .send(yawc::Frame::text(join.to_string()))
        .await
        .unwrap();
    let snapshot = next_yawc_event(&mut third, "snapshot").await;
    assert_eq!(snapshot["id"], "y1");
    assert_eq!(snapshot["data"]["role"], "leader");
    plain.join("yawc", None, None).await.unwrap();

    // A long message: yawc sends it compressed, in fragments of 16 bytes; the server
    // inflates, decides, and broadcasts a compressed state_update yawc must inflate.
    let text = long_text("ünïcødé");
    let update = json!({"type":"update_message","id":"y2","data":{"text":text}});
    third
        .send(yawc::Frame::text(update.to_string()))
        .await
        .unwrap();
    let state = next_yawc_event(&mut third, "state_update").await;
    assert_eq!(state["data"]["message"], text.as_str());
    assert!(
        state.to_string().len() > 1024,
        "over the compression threshold"
    );

    // The member without deflate gets the same broadcast, plain.
    let frame = plain
        .wait_for(|f| matches!(f.event, ServerEvent::StateUpdate(_)), WAIT)
        .await
        .unwrap();
    let ServerEvent::StateUpdate(update) = frame.event else {
        unreachable!()
    };
    assert_eq!(update.message, text);

    // A small reply still works (and goes out plain: below the threshold).
    let sync = json!({"type":"sync_request","id":"y3"});
    third
        .send(yawc::Frame::text(sync.to_string()))
        .await
        .unwrap();
    let reply = next_yawc_event(&mut third, "sync_response").await;
    assert_eq!(reply["id"], "y3");
    assert_eq!(reply["data"]["message"], text.as_str());

    assert!(metric(&server, "bandsync_deflate_messages_total{direction=\"in\"}").await >= 3);
    assert!(
        metric(
            &server,
            "bandsync_deflate_messages_total{direction=\"out\"}"
        )
        .await
            >= 1
    );
    let _ = third.close().await;
}

async fn next_yawc_event(ws: &mut yawc::TcpWebSocket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} within 5 s"))
            .unwrap_or_else(|| panic!("closed while waiting for {kind}"));
        if frame.opcode() != yawc::OpCode::Text {
            continue;
        }
        let event: Value = serde_json::from_slice(frame.payload()).unwrap();
        if event["type"] == kind {
            return event;
        }
    }
}

/// On the wire: the answer header, RSV1 on the big broadcast only, the very same
/// compressed bytes for every deflate receiver, plain frames for the others.
#[tokio::test]
async fn a_broadcast_is_compressed_once_and_plain_for_clients_that_did_not_offer() {
    let server = TestServer::start().await;
    let (mut a, head) = raw_connect(&server, Some(OFFER)).await;
    assert_eq!(extensions_header(&head).as_deref(), Some(ANSWER));
    let (mut b, _) = raw_connect(&server, Some("permessage-deflate")).await;
    let (mut c, head) = raw_connect(&server, None).await;
    assert_eq!(extensions_header(&head), None);

    a.join("wire", true, true).await;
    b.join("wire", false, false).await;
    c.join("wire", false, false).await;

    // Small events stay plain even for deflate receivers.
    let tempo = json!({"type":"set_tempo","data":{"tempo":130}});
    a.send_json(tempo, true).await;
    let f = b.state_update_frame().await;
    assert!(
        !f.rsv1,
        "a {}-byte state_update is below the threshold",
        f.payload.len()
    );
    a.state_update_frame().await;
    c.state_update_frame().await;

    let text = long_text("verse two from bar seventeen");
    let update = json!({"type":"update_message","data":{"text":text}});
    a.send_json(update, true).await;
    let (fa, fb, fc) = (
        a.state_update_frame().await,
        b.state_update_frame().await,
        c.state_update_frame().await,
    );
    assert!(
        fa.rsv1 && fb.rsv1,
        "deflate receivers get the compressed form"
    );
    assert!(
        !fc.rsv1,
        "a client that did not offer deflate gets plain text"
    );
    assert_eq!(
        fa.payload, fb.payload,
        "one compression, the same bytes for all"
    );
    assert_eq!(
        inflate(&fa.payload),
        fc.payload,
        "and it inflates to the plain frame"
    );
    assert!(
        fa.payload.len() * 3 < fc.payload.len(),
        "and it is much smaller"
    );
}

/// A deflate bomb (2 KiB inflating past MAX_FRAME_BYTES) gets an error and 1009; corrupt
/// data 1007; RSV1 on a ping 1002. Other members keep receiving state throughout.
#[tokio::test]
async fn bombs_and_corrupt_data_close_only_the_sender() {
    let server = TestServer::start().await;
    let mut leader = WsClient::connect(&server.ws_url()).await.unwrap();
    leader.join("bomb", Some(Role::Leader), None).await.unwrap();
    let mut member = WsClient::connect(&server.ws_url()).await.unwrap();
    member.join("bomb", None, None).await.unwrap();

    let (mut bomber, _) = raw_connect(&server, Some(OFFER)).await;
    bomber.join("bomb", false, true).await;
    let mut bomb_text = br#"{"type":"update_message","data":{"text":""#.to_vec();
    bomb_text.resize(2 * 1024 * 1024, b' ');
    let bomb = deflate(&bomb_text);
    assert!(bomb.len() < 4096, "the bomb is {} bytes", bomb.len());
    bomber.send_frame(true, true, 0x1, &bomb).await;
    let (error, _) = bomber.event_of_type("error").await;
    assert_eq!(error["data"]["code"], "INVALID_MESSAGE");
    let message = error["data"]["message"].as_str().unwrap();
    assert!(message.contains("MAX_FRAME_BYTES"), "{message}");
    assert_eq!(bomber.close_code().await, 1009);

    let (mut corrupt, _) = raw_connect(&server, Some(OFFER)).await;
    corrupt.send_frame(true, true, 0x1, &[0xff; 16]).await;
    assert_eq!(
        corrupt.event_of_type("error").await.0["data"]["code"],
        "INVALID_MESSAGE"
    );
    assert_eq!(corrupt.close_code().await, 1007);

    let (mut rsv1_ping, _) = raw_connect(&server, Some(OFFER)).await;
    rsv1_ping.send_frame(true, true, 0x9, b"").await;
    assert_eq!(rsv1_ping.close_code().await, 1002);

    // The session is unharmed: a change still reaches the other member.
    leader
        .send(ClientEvent::SetTempo(SetTempo::new(141.0)))
        .await
        .unwrap();
    let frame = member
        .wait_for(
            |f| matches!(&f.event, ServerEvent::StateUpdate(u) if u.transport.tempo == 141.0),
            WAIT,
        )
        .await
        .expect("the other member still receives state");
    assert!(matches!(frame.event, ServerEvent::StateUpdate(_)));
    let health = reqwest::get(server.http_url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// `WS_DEFLATE=false`: the offer is ignored and everything goes out plain.
#[tokio::test]
async fn deflate_can_be_switched_off() {
    let server = TestServer::start_with(|c| c.ws_deflate = false).await;
    let (mut a, head) = raw_connect(&server, Some(OFFER)).await;
    assert_eq!(extensions_header(&head), None);
    a.join("off", true, false).await;
    let update = json!({"type":"update_message","data":{"text":long_text("plain")}});
    a.send_json(update, false).await;
    let (state, compressed) = a.event_of_type("state_update").await;
    assert!(!compressed);
    assert_eq!(state["data"]["message"], long_text("plain").as_str());
}

/// A lower `COMPRESSION_THRESHOLD` compresses smaller events too, and a compressed
/// message inflating past `MAX_MESSAGE_BYTES` (but under `MAX_FRAME_BYTES`) is refused like
/// a plain one: an error, and the socket stays open.
#[tokio::test]
async fn the_threshold_and_the_message_limit_apply_to_compressed_traffic() {
    let server = TestServer::start_with(|c| {
        c.compression_threshold = 100;
        c.max_message_bytes = 2000;
    })
    .await;
    let (mut a, _) = raw_connect(&server, Some(OFFER)).await;
    a.join("threshold", true, true).await;
    a.send_json(json!({"type":"set_tempo","data":{"tempo":99}}), true)
        .await;
    let (state, compressed) = a.event_of_type("state_update").await;
    assert!(
        compressed,
        "a ~250-byte state_update is over a 100-byte threshold"
    );
    assert_eq!(state["data"]["transport"]["tempo"], 99.0);

    let too_long = json!({"type":"update_message","id":"m","data":{"text":"x".repeat(3000)}});
    a.send_json(too_long, true).await;
    let (error, _) = a.event_of_type("error").await;
    assert!(error["data"]["message"]
        .as_str()
        .unwrap()
        .contains("MAX_MESSAGE_BYTES"));
    a.send_json(json!({"type":"sync_request","id":"s"}), true)
        .await;
    assert_eq!(a.event_of_type("sync_response").await.0["id"], "s");
}

// ---------------------------------------------------------------------------------------
// Shared audio (PROTOCOL.md section 13) to receivers with and without permessage-deflate.

const SHARE_ID: &str = "123456";
const SHARE_TOKEN: &str = "Bearer Token";

/// A TCP stream that keeps a copy of the first bytes it reads, so the test sees the
/// handshake response a client library consumed.
struct Recording {
    tcp: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let mut seen = this.seen.lock().unwrap();
        if seen.len() < 16 * 1024 {
            seen.extend_from_slice(&buf.filled()[before..]);
        }
        result
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

type PlainWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One `/ws` connection taking part in a share, whichever client it is. A test has a
/// few of them, so their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Peer {
    /// yawc, permessage-deflate negotiated (it compresses everything it sends).
    Yawc(yawc::WebSocket<Recording>),
    /// tokio-tungstenite, which does not offer permessage-deflate.
    Plain(PlainWs),
    /// The raw client with permessage-deflate negotiated: sees RSV1 and the exact bytes.
    Raw(Raw),
}

/// A data frame: an audio frame's bytes, or a text event.
enum Got {
    Audio(Vec<u8>),
    Event(Value),
}

/// What a receiver got up to and including `share_ended`.
struct Received {
    audio: Vec<Vec<u8>>,
    metadata: Vec<Value>,
    ended: Value,
}

impl Peer {
    /// yawc with compression on; asserts the server accepted permessage-deflate.
    async fn yawc(server: &TestServer) -> Self {
        let options = yawc::Options::default()
            .with_compression_level(yawc::CompressionLevel::default())
            .with_max_fragment_size(4096);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let io = Recording {
            tcp,
            seen: seen.clone(),
        };
        let ws = yawc::WebSocket::handshake(server.ws_url().parse().unwrap(), io, options)
            .await
            .expect("yawc connects");
        let head = {
            let seen = seen.lock().unwrap();
            let end = seen
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("the response head was read")
                + 4;
            String::from_utf8(seen[..end].to_vec()).unwrap()
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let answer = extensions_header(&head);
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("permessage-deflate")),
            "yawc negotiated permessage-deflate: {head}"
        );
        Peer::Yawc(ws)
    }

    /// tokio-tungstenite; asserts the server answered without extensions.
    async fn plain(server: &TestServer) -> Self {
        let (ws, response) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        assert!(
            response.headers().get("sec-websocket-extensions").is_none(),
            "no deflate for a client that did not offer it: {response:?}"
        );
        Peer::Plain(ws)
    }

    /// The raw client offering permessage-deflate; asserts the server's answer.
    async fn raw(server: &TestServer) -> Self {
        let (raw, head) = raw_connect(server, Some(OFFER)).await;
        assert_eq!(extensions_header(&head).as_deref(), Some(ANSWER));
        Peer::Raw(raw)
    }

    async fn send_json(&mut self, value: Value) {
        let text = value.to_string();
        match self {
            Peer::Yawc(ws) => ws.send(yawc::Frame::text(text)).await.unwrap(),
            Peer::Plain(ws) => ws.send(Message::text(text)).await.unwrap(),
            Peer::Raw(raw) => raw.send_json(value, true).await,
        }
    }

    /// The next audio frame or text event (pings and pongs skipped), within 5 s.
    async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.next_data())
            .await
            .expect("a frame within 5 s")
    }

    async fn next_data(&mut self) -> Got {
        loop {
            match self {
                Peer::Yawc(ws) => {
                    let frame = ws.next().await.expect("yawc: the connection is open");
                    match frame.opcode() {
                        yawc::OpCode::Text => {
                            return Got::Event(serde_json::from_slice(frame.payload()).unwrap())
                        }
                        yawc::OpCode::Binary => return Got::Audio(frame.payload().to_vec()),
                        yawc::OpCode::Close => panic!("yawc: closed: {:?}", frame.close_code()),
                        _ => {}
                    }
                }
                Peer::Plain(ws) => {
                    let message = ws
                        .next()
                        .await
                        .expect("tungstenite: the connection is open")
                        .unwrap();
                    match message {
                        Message::Text(text) => {
                            return Got::Event(serde_json::from_str(text.as_str()).unwrap())
                        }
                        Message::Binary(bytes) => return Got::Audio(bytes.to_vec()),
                        Message::Close(close) => panic!("tungstenite: closed: {close:?}"),
                        _ => {}
                    }
                }
                Peer::Raw(raw) => {
                    let f = raw.frame().await.expect("raw: the connection is open");
                    match f.opcode {
                        0x1 => {
                            let text = if f.rsv1 {
                                inflate(&f.payload)
                            } else {
                                f.payload
                            };
                            return Got::Event(serde_json::from_slice(&text).unwrap());
                        }
                        0x2 => {
                            assert!(!f.rsv1, "audio goes out uncompressed, even under deflate");
                            return Got::Audio(f.payload);
                        }
                        0x9 => raw.send_frame(true, false, 0xA, &f.payload).await,
                        0xA => {}
                        other => panic!("raw: unexpected opcode {other}: {f:?}"),
                    }
                }
            }
        }
    }

    /// The next event of type `kind`, skipping others (audio too); panics on an error.
    async fn event_of_type(&mut self, kind: &str) -> Value {
        loop {
            if let Got::Event(event) = self.next().await {
                if event["type"] == kind {
                    return event;
                }
                assert_ne!(event["type"], "error", "while waiting for {kind}: {event}");
            }
        }
    }

    async fn join(&mut self, session: &str) -> Value {
        let join = json!({"type":"join_session","id":"j","data":{"sessionId":session,"role":"follower","shareToken":SHARE_TOKEN}});
        self.send_json(join).await;
        self.event_of_type("snapshot").await
    }

    /// Reads until `share_ended`, keeping the audio frames and `share_metadata` events;
    /// anything else (room_stats, ticks, heartbeats, state) is skipped, an error panics.
    async fn receive_share(&mut self) -> Received {
        let mut audio = Vec::new();
        let mut metadata = Vec::new();
        loop {
            match self.next().await {
                Got::Audio(frame) => audio.push(frame),
                Got::Event(event) => match event["type"].as_str() {
                    Some("share_metadata") => metadata.push(event),
                    Some("share_ended") => {
                        return Received {
                            audio,
                            metadata,
                            ended: event,
                        }
                    }
                    Some("error") => panic!("an error while receiving the share: {event}"),
                    _ => {}
                },
            }
        }
    }
}

/// `frames` interleaved stereo f32 frames, distinct for each `chunk`. The first samples
/// have bit patterns only a byte-exact relay keeps: a NaN payload, -0.0, a subnormal.
fn f32_samples(chunk: usize, frames: usize) -> Vec<u8> {
    let specials = [
        f32::from_bits(0x7fc0_1230 + chunk as u32),
        -0.0,
        f32::from_bits(1 + chunk as u32),
        f32::NEG_INFINITY,
    ];
    (0..frames * 2)
        .map(|i| {
            specials
                .get(i)
                .copied()
                .unwrap_or_else(|| ((chunk * frames * 2 + i) as f32 * 0.0137).sin() * 0.8)
        })
        .flat_map(f32::to_le_bytes)
        .collect()
}

/// `frames` interleaved stereo i16 frames of noise (which barely deflates), distinct for
/// each `chunk`, starting with both extremes.
fn i16_samples(chunk: usize, frames: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ chunk as u32;
    (0..frames * 2)
        .map(|i| match i {
            0 => i16::MIN,
            1 => i16::MAX,
            _ => {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 16) as u16 as i16
            }
        })
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// POSTs to the share API with the token; expects 200 and returns the JSON answer.
async fn share_post(server: &TestServer, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .post(server.http_url(path))
        .header("Authorization", SHARE_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "POST {path}: {answer}");
    assert_eq!(answer["success"], true, "POST {path}: {answer}");
    answer
}

/// Checks that `frame` is exactly `expected` (header and samples), decoding both.
#[track_caller]
fn assert_same_audio(who: &str, frame: &[u8], expected: &[u8]) {
    let (got, samples) =
        decode_audio_frame(frame).unwrap_or_else(|e| panic!("{who}: not an audio frame ({e})"));
    let (want, want_samples) = decode_audio_frame(expected).unwrap();
    assert_eq!(got.sequence, want.sequence, "{who}: sequence");
    assert_eq!(
        got.timestamp.to_bits(),
        want.timestamp.to_bits(),
        "{who}: timestamp"
    );
    assert_eq!(got.sample_rate, want.sample_rate, "{who}: sampleRate");
    assert_eq!(got.channels, want.channels, "{who}: channels");
    assert_eq!(got.format, want.format, "{who}: format");
    assert!(
        samples == want_samples,
        "{who}: the samples of chunk {} differ ({} bytes, {} expected)",
        want.sequence,
        samples.len(),
        want_samples.len()
    );
    assert!(frame == expected, "{who}: the frame is not bit-identical");
}

/// Music Share over REST: a receiver that negotiated permessage-deflate (yawc, and the raw
/// client that sees the wire) and one that did not (tokio-tungstenite) get every audio
/// chunk as a binary frame bit-identical to what was posted, the metadata, and the end.
#[tokio::test]
async fn shared_audio_reaches_deflate_and_plain_receivers_bit_identically() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(SHARE_TOKEN.into());
        // Four chunks back to back: no need to wait out the 10-a-second limit.
        c.share.share_audio_rate = 100;
    })
    .await;
    let mut receivers = [
        ("yawc", Peer::yawc(&server).await),
        ("tungstenite", Peer::plain(&server).await),
        ("raw deflate", Peer::raw(&server).await),
    ];
    for (_, peer) in &mut receivers {
        peer.join(SHARE_ID).await;
    }
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|(who, mut peer)| {
            tokio::spawn(async move {
                let received = peer.receive_share().await;
                (who, received, peer)
            })
        })
        .collect();

    let started = share_post(
        &server,
        "/api/share/start",
        Some(json!({"sessionId": SHARE_ID})),
    )
    .await;
    assert_eq!(started["sessionId"], SHARE_ID);

    // Long lyrics: the share_metadata event is over the 1024-byte threshold, so deflate
    // receivers get it compressed (and must inflate it).
    let metadata = json!({
        "title": "Träumerei",
        "artist": "Schumann",
        "lyrics": long_text("[00:01.00] no words, only strings"),
        "hasSyncedLyrics": true,
        "elapsedSeconds": 1.5,
        "totalSeconds": 170.25,
        "timestamp": 1_732_190_000_000_i64,
    });
    let answer = share_post(
        &server,
        &format!("/api/share/{SHARE_ID}/metadata"),
        Some(metadata.clone()),
    )
    .await;
    // (`listenersNotified` counts WebSocket members as of the last `room_stats`, up to
    // ROOM_STATS_INTERVAL_MS behind the joins: only its presence is checked.)
    assert!(answer["listenersNotified"].is_u64(), "{answer}");

    // Four chunks of 800 stereo frames at 8000 Hz (100 ms each).
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut expected = Vec::new();
    for seq in 0..4_usize {
        let samples = f32_samples(seq, 800);
        let timestamp = 1_732_190_000_000_i64 + 100 * seq as i64;
        let body = json!({
            "data": b64.encode(&samples),
            "sampleRate": 8000,
            "channels": 2,
            "timestamp": timestamp,
            "sequenceNumber": seq,
        });
        let answer = share_post(&server, &format!("/api/share/{SHARE_ID}/audio"), Some(body)).await;
        assert_eq!(answer["buffered"], true, "{answer}");
        let header = AudioHeader {
            sequence: seq as i64,
            timestamp: timestamp as f64,
            sample_rate: 8000,
            channels: 2,
            format: SampleFormat::F32,
        };
        expected.push(header.encode(&samples));
    }
    let stopped = share_post(&server, &format!("/api/share/{SHARE_ID}/stop"), None).await;
    assert_eq!(stopped["bytesTransferred"], 4 * 800 * 2 * 4, "{stopped}");

    for task in tasks {
        let (who, received, _peer) = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("every receiver saw share_ended")
            .unwrap();
        assert_eq!(
            received.audio.len(),
            expected.len(),
            "{who}: one binary frame per chunk"
        );
        for (frame, want) in received.audio.iter().zip(&expected) {
            assert_same_audio(who, frame, want);
            assert_eq!(
                decode_audio_frame(frame).unwrap().0.format,
                SampleFormat::F32
            );
        }
        assert_eq!(received.metadata.len(), 1, "{who}: one share_metadata");
        assert_eq!(received.metadata[0]["data"]["sessionId"], SHARE_ID, "{who}");
        assert_eq!(
            received.metadata[0]["data"]["metadata"], metadata,
            "{who}: the metadata as posted"
        );
        assert_eq!(received.ended["data"]["sessionId"], SHARE_ID, "{who}");
        assert_eq!(received.ended["data"]["reason"], "stopped", "{who}");
    }

    // yawc's join went in compressed; the metadata went out compressed to both deflate
    // receivers (and the audio, uncompressed, was never dropped).
    assert!(metric(&server, "bandsync_deflate_messages_total{direction=\"in\"}").await >= 1);
    assert!(
        metric(
            &server,
            "bandsync_deflate_messages_total{direction=\"out\"}"
        )
        .await
            >= 2
    );
    assert_eq!(metric(&server, "bandsync_audio_dropped_total").await, 0);
}

/// Music Share over `/ws`: yawc (deflate negotiated, so its binary frames arrive
/// compressed, the larger ones fragmented) shares i16 audio; a member without deflate gets every frame
/// bit-identical, the sharer never gets its own audio back, and `share_stop` ends it.
#[tokio::test]
async fn audio_shared_by_a_deflate_client_reaches_a_plain_member_bit_identically() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some(SHARE_TOKEN.into());
        c.share.share_audio_rate = 100;
    })
    .await;
    let mut sharer = Peer::yawc(&server).await;
    let mut member = Peer::plain(&server).await;
    sharer.join(SHARE_ID).await;
    member.join(SHARE_ID).await;
    let member = tokio::spawn(async move { member.receive_share().await });

    sharer
        .send_json(json!({"type":"share_start","id":1,"data":{"token":SHARE_TOKEN}}))
        .await;
    let started = sharer.event_of_type("share_started").await;
    assert_eq!(started["id"], 1);
    assert_eq!(started["data"]["sessionId"], SHARE_ID);

    // 10 ms, 100 ms and 500 ms at 48 kHz. yawc compresses every message and sends one
    // over 4 KiB as fragments (4 KiB of input each), so the server inflates fragmented
    // compressed binary messages too.
    let mut expected = Vec::new();
    let mut sample_bytes = 0;
    for (seq, frames) in [480, 4800, 24_000].into_iter().enumerate() {
        let samples = i16_samples(seq, frames);
        sample_bytes += samples.len();
        let header = AudioHeader {
            sequence: 40 + seq as i64,
            timestamp: 1_732_190_000_123.456 + 10.0 * seq as f64,
            sample_rate: 48_000,
            channels: 2,
            format: SampleFormat::I16,
        };
        let frame = header.encode(&samples);
        let Peer::Yawc(ws) = &mut sharer else {
            unreachable!()
        };
        ws.send(yawc::Frame::binary(frame.clone())).await.unwrap();
        expected.push(frame);
    }

    sharer.send_json(json!({"type":"share_stop","id":2})).await;
    let own = sharer.receive_share().await;
    assert!(
        own.audio.is_empty(),
        "the sharer does not get its own audio"
    );
    assert_eq!(own.ended["id"], 2);
    assert_eq!(own.ended["data"]["reason"], "stopped");
    assert_eq!(own.ended["data"]["bytesTransferred"], sample_bytes);

    let received = tokio::time::timeout(Duration::from_secs(15), member)
        .await
        .expect("the member saw share_ended")
        .unwrap();
    assert_eq!(received.audio.len(), expected.len(), "one frame per chunk");
    for (frame, want) in received.audio.iter().zip(&expected) {
        assert_same_audio("tungstenite", frame, want);
        assert_eq!(
            decode_audio_frame(frame).unwrap().0.format,
            SampleFormat::I16
        );
    }
    assert_eq!(received.ended["data"]["sessionId"], SHARE_ID);
    assert_eq!(received.ended["data"]["reason"], "stopped");
    // join, share_start, three audio frames and share_stop all went in compressed.
    assert!(metric(&server, "bandsync_deflate_messages_total{direction=\"in\"}").await >= 6);
    assert_eq!(metric(&server, "bandsync_audio_dropped_total").await, 0);
    // PROTOCOL.md 13, "Sharing over WebSocket" step 4: the others get `share_ended`
    // without the totals (`ShareEnded`: they are in the reply to the sharer's own stop).
    assert!(
        received.ended["data"].get("bytesTransferred").is_none()
            && received.ended["data"].get("sessionDuration").is_none(),
        "only the sharer gets the totals: {}",
        received.ended
    );
}
