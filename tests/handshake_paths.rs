//! A `/ws` handshake takes one of two paths: whole in the connection's first read, it is
//! answered before hyper (`net::first_request`); otherwise (cut over two writes, HTTP/1.0)
//! hyper answers it. A client must not be able to tell them apart: the same head, the same
//! refusals, the same session afterwards, and bytes sent right behind the head are not lost.

mod common;
mod support;

use common::TestServer;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn handshake(addr: SocketAddr, version: u8) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

/// A masked text frame (an all-zero mask leaves the payload as is).
fn text_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mut frame = vec![0x81u8, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

const JOIN: &str = r#"{"type":"join_session","id":7,"data":{"sessionId":"paths"}}"#;

/// Reads a response head, byte by byte so nothing after it is taken.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("a response head"));
    }
    String::from_utf8(head).unwrap()
}

/// A head's header names, in order, and its values but for the ones that differ per
/// response (`date`, `x-request-id`).
fn comparable(head: &str) -> Vec<String> {
    head.lines()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(": ") {
            Some((name @ ("date" | "x-request-id"), _)) => name.to_owned(),
            _ => line.to_owned(),
        })
        .collect()
}

/// The next server text frame's payload (unmasked, not fragmented, under 64 KiB).
async fn read_text(tcp: &mut TcpStream) -> String {
    loop {
        let first = tcp.read_u8().await.unwrap();
        let len = match tcp.read_u8().await.unwrap() & 0x7f {
            126 => tcp.read_u16().await.unwrap() as usize,
            127 => panic!("unexpectedly large frame"),
            n => n as usize,
        };
        let mut payload = vec![0; len];
        tcp.read_exact(&mut payload).await.unwrap();
        if first & 0x0f == 0x1 {
            return String::from_utf8(payload).unwrap();
        }
    }
}

/// The `snapshot` answering [`JOIN`], skipping anything before it.
async fn read_snapshot(tcp: &mut TcpStream) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let frame: serde_json::Value = serde_json::from_str(&read_text(tcp).await).unwrap();
            if frame["type"] == "snapshot" {
                return frame;
            }
        }
    })
    .await
    .expect("a snapshot within 5 s")
}

#[tokio::test]
async fn a_whole_handshake_and_a_cut_one_get_the_same_head_and_session() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let request = handshake(addr, 13);

    // Whole, with the join right behind the head in the same write.
    let mut whole = TcpStream::connect(addr).await.unwrap();
    let mut bytes = request.clone().into_bytes();
    bytes.extend_from_slice(&text_frame(JOIN));
    whole.write_all(&bytes).await.unwrap();
    let whole_head = read_head(&mut whole).await;
    assert!(whole_head.starts_with("HTTP/1.1 101 "), "{whole_head}");
    let first = read_snapshot(&mut whole).await;
    assert_eq!(first["id"], 7);

    // Cut in two writes, the second after the server has read the first.
    let mut cut = TcpStream::connect(addr).await.unwrap();
    let (start, rest) = request.split_at(20);
    cut.write_all(start.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    cut.write_all(rest.as_bytes()).await.unwrap();
    let cut_head = read_head(&mut cut).await;
    assert!(cut_head.starts_with("HTTP/1.1 101 "), "{cut_head}");
    cut.write_all(&text_frame(JOIN)).await.unwrap();
    let second = read_snapshot(&mut cut).await;

    assert_eq!(comparable(&whole_head), comparable(&cut_head));
    assert_eq!(second["data"]["sessionId"], "paths");
    assert_eq!(second["data"]["members"].as_array().unwrap().len(), 2);

    // Both counted as upgrades, like any request.
    let metrics = support::metrics_text(&server).await;
    let upgrades = metrics
        .lines()
        .find(|l| {
            l.starts_with("bandsync_http_requests_total{")
                && l.contains(r#"route="/ws""#)
                && l.contains(r#"status="101""#)
        })
        .expect("the /ws upgrades are counted");
    assert!(upgrades.ends_with(" 2"), "{upgrades}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_handshake_answered_before_hyper_keeps_the_connection_for_the_next_request() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(handshake(addr, 12).as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");
    assert!(
        head.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{head}"
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    tcp.read_exact(&mut body).await.unwrap();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], "UNSUPPORTED_WEBSOCKET_VERSION");

    // The same connection, now served by hyper.
    let health = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(health.as_bytes()).await.unwrap();
    let mut rest = String::new();
    tcp.read_to_string(&mut rest).await.unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.contains("\"status\":\"healthy\""), "{rest}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_http_1_0_handshake_goes_to_hyper_and_is_answered_as_before() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = handshake(addr, 13).replace("HTTP/1.1", "HTTP/1.0");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "hyper ends an HTTP/1.0 connection after its answer"
    );
    let answer = String::from_utf8_lossy(&answer);
    // hyper answers in the request's version, then closes the connection.
    assert!(
        answer.starts_with("HTTP/1.0 101 Switching Protocols\r\n"),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_written_in_small_pieces_are_all_answered() {
    // The first read catches some prefix of the head: hyper takes over from those bytes,
    // and whoever reads next must still be woken for the rest as it comes (a wake-up lost
    // there leaves the connection waiting for its header timeout).
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for n in 0..40 {
        clients.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let request = if n % 2 == 0 {
                handshake(addr, 13)
            } else {
                format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            };
            for piece in request.as_bytes().chunks(3) {
                tcp.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            let head = tokio::time::timeout(Duration::from_secs(3), read_head(&mut tcp))
                .await
                .unwrap_or_else(|_| panic!("request {n} was not answered within 3 s"));
            let expected = if n % 2 == 0 {
                "HTTP/1.1 101 "
            } else {
                "HTTP/1.1 200 "
            };
            assert!(head.starts_with(expected), "{n}: {head}");
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    server.shutdown().await;
}
