//! permessage-deflate (RFC 7692) on `/ws`, over real sockets against the real server:
//! an independent implementation (yawc) both ways, the exact bytes on the wire through a
//! raw client, deflate bombs and corrupt data refused without harm to anyone else, and
//! clients that did not negotiate (or a server with `WS_DEFLATE=false`) getting plain
//! frames. The Chromium check is in `tests/browser.rs` (`tests/browser/deflate.mjs`).

mod common;

use bandsync_client::protocol::client::{ClientEvent, SetTempo};
use bandsync_client::protocol::{Role, ServerEvent};
use bandsync_client::WsClient;
use common::TestServer;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        .send(ClientEvent::SetTempo(SetTempo { tempo: 141.0 }))
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
