//! Liveness and back-pressure: a client that stops answering pings is closed with 4000,
//! heartbeats echo `t0` and the id with `t1 <= t2`, a client that stops reading while
//! the session floods it is closed with 4001 without disturbing anyone else, and one that
//! only pauses (its socket full, its outbox within bounds) gets everything once it reads.

mod common;
mod support;

use bandsync_client::protocol::client::Heartbeat;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{close, ClientEvent, RequestId};
use bandsync_client::{wall_clock_ms, WsClient};
use common::TestServer;
use std::time::Duration;
use support::*;

/// A WebSocket client written by hand on a plain TCP stream, so that it can truly stop
/// answering pings: tungstenite answers them whenever it reads, and a client that reads
/// only after the server gave up would fail writing those pongs before seeing the close.
mod mute {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Upgrades to a WebSocket and sends one text frame.
    pub async fn connect_and_send(addr: std::net::SocketAddr, text: &str) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // A masked text frame; the all-zero mask leaves the payload as is.
        let mut frame = vec![0x81u8];
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        tcp.write_all(&frame).await.unwrap();
        tcp
    }

    /// Everything the server sent until it closed the connection: (opcode, payload) pairs.
    pub async fn read_to_end(tcp: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
        let mut bytes = Vec::new();
        tcp.read_to_end(&mut bytes)
            .await
            .expect("read until the server closes");
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let opcode = bytes[at] & 0x0f;
            let (len, header) = match bytes[at + 1] & 0x7f {
                126 => (
                    u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                    4,
                ),
                127 => (
                    u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            frames.push((opcode, bytes[at + header..at + header + len].to_vec()));
            at += header + len;
        }
        frames
    }
}

/// A server that pings every 100 ms and gives up on a peer after 1 s of silence, and a
/// hand-written client that joined session "band" on it.
async fn pinging_server_and_hand_written_member() -> (TestServer, tokio::net::TcpStream) {
    let server = TestServer::start_with(|c| {
        c.socket_ping_interval = 100;
        c.socket_ping_timeout = 1_000;
    })
    .await;
    let member = mute::connect_and_send(
        server.addr,
        r#"{"type":"join_session","data":{"sessionId":"band"}}"#,
    )
    .await;
    (server, member)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed_with_4000() {
    let (server, mut silent) = pinging_server_and_hand_written_member().await;
    let (mut active, _) = join_follower(&server, "band").await;
    room_stats_counts(&mut active, 2, 0).await;

    // The active client keeps reading, and so answers pings, for well over the timeout;
    // meanwhile the silent one answers nothing and is dropped from the session.
    let stats = room_stats_counts(&mut active, 1, 0).await;
    assert_eq!(stats.followers, 1);
    assert_no_frame_of(&mut active, &[], Duration::from_millis(1_500)).await;
    sync(&mut active).await;

    let frames = tokio::time::timeout(WAIT, mute::read_to_end(&mut silent))
        .await
        .expect("the server ends the connection");
    let kinds: Vec<u8> = frames.iter().map(|(opcode, _)| *opcode).collect();
    // Pings (every 100 ms) may come before the snapshot: the join waits for the engine,
    // which a busy machine may delay past the first ping. The snapshot is the first data
    // frame.
    let (opcode, first) = frames
        .iter()
        .find(|(opcode, _)| *opcode != 0x9)
        .expect("frames other than pings");
    assert_eq!(*opcode, 0x1, "the snapshot first: {kinds:?}");
    let first: serde_json::Value = serde_json::from_slice(first).expect("JSON");
    assert_eq!(first["type"], "snapshot", "{first}");
    assert!(kinds.contains(&0x9), "the server pinged: {kinds:?}");
    let (opcode, payload) = frames.last().unwrap();
    assert_eq!(*opcode, 0x8, "the last frame is a close: {kinds:?}");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        close::PING_TIMEOUT
    );
}

/// A peer that answers every ping is pinged every `SOCKET_PING_INTERVAL` and never closed.
/// The engine's ping sweep queues such a peer's pings itself, without its task (which told
/// the outbox when it last heard from the peer): this checks that those pings go out, one
/// an interval, and that the answers keep the peer alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_pings_gets_one_every_interval() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Kept, not dropped: the server runs as long as this binding lives.
    let (_server, mut tcp) = pinging_server_and_hand_written_member().await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
    let (mut pings, mut bytes, mut chunk) = (0, Vec::new(), [0u8; 4096]);
    while let Ok(read) = tokio::time::timeout_at(until, tcp.read(&mut chunk)).await {
        let n = read.expect("the connection stays open");
        assert!(n > 0, "the server closed a peer that answers its pings");
        bytes.extend_from_slice(&chunk[..n]);
        // Whole frames only; every server frame here is short (a 126 length at most).
        while bytes.len() >= 2 {
            let (len, header) = match bytes[1] & 0x7f {
                126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                126 => break,
                n => (n as usize, 2),
            };
            if bytes.len() < header + len {
                break;
            }
            let opcode = bytes[0] & 0x0f;
            assert_ne!(opcode, 0x8, "closed: {:?}", &bytes[header..header + len]);
            if opcode == 0x9 {
                pings += 1;
                // A masked, empty pong (the server's pings carry no payload).
                tcp.write_all(&[0x8a, 0x80, 0, 0, 0, 0]).await.unwrap();
            }
            bytes.drain(..header + len);
        }
    }
    assert!(pings >= 10, "{pings} pings in 1.5 s at a 100 ms interval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_echoes_t0_and_id_with_t1_not_after_t2() {
    let server = TestServer::start().await;
    let mut c = connect(&server).await;

    let mut last_t1 = 0.0;
    let cases = [
        (RequestId::from("hb-1"), 12_345.678),
        (RequestId::from(99), -5.5),
        (RequestId::from("hb-3"), wall_clock_ms()),
    ];
    for (id, t0) in cases {
        c.send_with_id(ClientEvent::Heartbeat(Heartbeat { t0 }), Some(id.clone()))
            .await
            .unwrap();
        let frame = c
            .wait_for(|f| f.id.as_ref() == Some(&id), WAIT)
            .await
            .expect("heartbeat_response");
        let ServerEvent::HeartbeatResponse(r) = frame.event else {
            panic!("expected heartbeat_response, got {frame:?}")
        };
        // Exact for these values; see `heartbeat_t0_is_echoed_bit_exactly` for the rest.
        assert!((r.t0 - t0).abs() < 1e-3, "t0 echoed: {} for {t0}", r.t0);
        assert!(r.t1 <= r.t2, "{r:?}");
        assert!(r.t1 >= last_t1, "the server clock never goes back");
        last_t1 = r.t1;
        // Same machine: the server's clock is the wall clock (it only avoids steps).
        assert!((r.t2 - wall_clock_ms()).abs() < 5_000.0, "{r:?}");
    }

    // Also inside a playing session, and through the client library's clock sample.
    let (mut l, _) = join_leader(&server, "band").await;
    l.send(play(None)).await.unwrap();
    next_state_update(&mut l).await;
    for _ in 0..3 {
        let sample = l.heartbeat(WAIT).await.expect("heartbeat while ticking");
        assert!(sample.round_trip >= 0.0);
        assert!(sample.offset.abs() < 5_000.0, "{sample:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_t0_is_echoed_bit_exactly() {
    // An epoch-ms time whose shortest decimal form serde_json's default (fast, not
    // round-trip exact) float parser reads one ulp off, as it does about one in ten.
    let server = TestServer::start().await;
    let mut raw = raw_connect(&server).await;
    let t0 = "1795265000000.0273";
    raw_send_text(
        &mut raw,
        &format!(r#"{{"type":"heartbeat","id":"x","data":{{"t0":{t0}}}}}"#),
    )
    .await;
    let reply = loop {
        use futures_util::StreamExt;
        match tokio::time::timeout(WAIT, raw.next()).await.expect("reply") {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                break text.to_string()
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        reply.contains(&format!(r#""t0":{t0},"#)),
        "t0 not echoed exactly: {reply}"
    );
}

/// One `update_message` text per version, about 4 KB each (1000 four-byte characters):
/// the biggest state frames a member can make the server send.
fn big_text(n: u64) -> String {
    let mut text = n.to_string();
    while text.chars().count() < 1000 {
        text.push('𝄞');
    }
    text
}

/// Reads the next `count` state_updates and checks their versions follow `*version`.
async fn read_versions(client: &mut WsClient, version: &mut u64, count: u64) {
    for _ in 0..count {
        *version += 1;
        assert_eq!(next_state_update(client).await.version, *version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4001_and_the_rest_carry_on() {
    let server = TestServer::start_with(|c| {
        c.outbox_max_frames = 16;
        c.rate_limit_max_requests = 1_000_000;
    })
    .await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let (mut slow, _) = join_follower(&server, "band").await;
    let (mut version_l, mut version_f) = (snap.version, snap.version);

    // The leader floods state changes in small batches; it and the other follower read
    // everything as it comes, the slow one nothing. Its socket buffers fill, then its
    // outbox overflows.
    const BATCH: u64 = 8;
    let mut sent = 0u64;
    loop {
        for _ in 0..BATCH {
            sent += 1;
            l.send(message(&big_text(sent))).await.unwrap();
        }
        read_versions(&mut l, &mut version_l, BATCH).await;
        read_versions(&mut f, &mut version_f, BATCH).await;
        if metric(&server, "bandsync_slow_client_disconnects_total").await >= 1.0 {
            break;
        }
        assert!(
            sent < 4_000,
            "no slow-consumer disconnect after {sent} messages of 4 KB"
        );
    }
    println!("slow consumer closed after {sent} messages");

    let (code, reason) = expect_closed(&mut slow).await;
    assert_eq!(code, Some(close::SLOW_CONSUMER), "{reason}");

    // Nobody else lost anything or was disconnected.
    room_stats_counts(&mut f, 2, 0).await;
    l.send(message("after")).await.unwrap();
    for client in [&mut l, &mut f] {
        let state = next_state_update(client).await;
        assert_eq!(
            (state.version, state.message.as_str()),
            (snap.version + sent + 1, "after")
        );
    }
    assert_eq!(
        metric(&server, "bandsync_slow_client_disconnects_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pauses_reading_gets_every_frame_in_order_when_it_reads_again() {
    let server = TestServer::start_with(|c| {
        c.outbox_max_frames = 10_000;
        c.outbox_max_bytes = 64 << 20;
        c.rate_limit_max_requests = 1_000_000;
    })
    .await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let (mut paused, _) = join_follower(&server, "band").await;
    room_stats_counts(&mut paused, 3, 0).await;
    let (mut version_l, mut version_f) = (snap.version, snap.version);

    // About 9.6 MB of state frames while `paused` reads nothing: the kernel holds about
    // 4 MB of them for it here (the test above is closed after some 960 of these messages
    // with an outbox of 16 frames), so its socket refuses writes and the rest waits in its
    // outbox until it reads: the path where the socket says "would block", and the
    // connection's task must then be woken when there is room again.
    const BATCH: u64 = 8;
    const SENT: u64 = 2_400;
    let mut sent = 0u64;
    while sent < SENT {
        for _ in 0..BATCH {
            sent += 1;
            l.send(message(&big_text(sent))).await.unwrap();
        }
        read_versions(&mut l, &mut version_l, BATCH).await;
        read_versions(&mut f, &mut version_f, BATCH).await;
    }

    let mut version = snap.version;
    read_versions(&mut paused, &mut version, SENT).await;
    assert_eq!(version, snap.version + SENT);
    assert_eq!(
        metric(&server, "bandsync_slow_client_disconnects_total").await,
        0.0
    );
}
