//! Finding 2 of issue 7 ("Safe to expose"): connections that send nothing, or a header byte
//! now and then, were held forever; one address could take every connection; past
//! `MAX_CONNECTIONS` the server hung instead of answering. Each test here reproduces one of
//! those against the real server, scaled down, and fails without the fix.

mod common;
mod support;

use common::TestServer;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Longest any expected close or answer may take (the machine may be busy).
const LIMIT: Duration = Duration::from_secs(5);

/// A TCP connection to `addr` from the loopback address `source` (Linux routes all of
/// 127.0.0.0/8 to lo, so 127.0.0.2 is another client as far as the server can tell).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .unwrap();
    socket.connect(addr).await.expect("connect")
}

/// Reads until the server closes; returns what it sent, or `None` if it was still open
/// after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `GET path` and returns the status and body of the answer (the server closes after
/// it: `Connection: close`).
async fn get_raw(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(stream, LIMIT)
        .await
        .expect("an answer, then close");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// GET over a kept-alive connection; returns the body (read to its Content-Length).
async fn get_kept_alive(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
                    .expect("a content-length");
                if buf.len() >= end + 4 + len {
                    return String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                }
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer")
}

fn json_code(body: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(json["success"], false, "{json}");
    json["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = TestServer::start_with(|c| c.limits.header_read_timeout_ms = 300).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let got = read_until_closed(&mut silent, LIMIT)
        .await
        .expect("a silent connection must be closed, not held forever");
    assert!(got.is_empty(), "nothing to answer: {got:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let closed = metric(&server, r#"bandsync_http_timeouts_total{kind="header"}"#).await;
    assert_eq!(closed, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_sent_a_byte_at_a_time_is_cut_off() {
    let server = TestServer::start_with(|c| c.limits.header_read_timeout_ms = 500).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    // 'GET /health HTTP/1.1' and then header bytes, one every 100 ms, never the blank line:
    // every byte arrives well within any per-read timeout.
    slow.write_all(b"GET /health HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let mut closed = false;
    while started.elapsed() < LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await
        {
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "no answer to half a request"
            );
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled header must not hold the connection");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start_with(|c| c.limits.header_read_timeout_ms = 400).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Keep-alive: the connection stays open for the next request, but not forever.
    let rest = read_until_closed(&mut stream, LIMIT).await;
    assert!(
        rest.is_some(),
        "an idle keep-alive connection must be closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stalls_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.sse_keepalive_ms = 100;
        c.repo.repo_heartbeat_ms = 100;
        c.limits.idle_timeout_ms = 500;
        c.share.bearer_token = Some("t".into());
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // A complete head (so the header timeout is over), then 2 of the 100 promised bytes.
    stream
        .write_all(
            b"POST /api/share/start HTTP/1.1\r\nhost: test\r\nauthorization: t\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"",
        )
        .await
        .unwrap();
    let got = read_until_closed(&mut stream, LIMIT).await;
    assert!(got.is_some(), "a stalled body must not hold the connection");
    // The watchdog drops the socket first and counts the timeout just after: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut idle = 0.0;
    while idle < 1.0 && tokio::time::Instant::now() < deadline {
        idle = metric(&server, r#"bandsync_http_timeouts_total{kind="idle"}"#).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(idle, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_capped_and_another_still_gets_health() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 5).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from([127, 0, 0, 1], server.addr).await);
    }
    let mut sixth = connect_from([127, 0, 0, 1], server.addr).await;
    let (status, body) = get_raw(&mut sixth, "/health").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(json_code(&body), "TOO_MANY_CONNECTIONS");

    let mut other = connect_from([127, 0, 0, 2], server.addr).await;
    let (status, body) = get_raw(&mut other, "/health").await;
    assert_eq!(status, 200, "another address is not affected: {body}");
    let (status, body) = get_raw(&mut other_conn(&server).await, "/metrics").await;
    assert_eq!(status, 200);
    let refused = metric_value(
        &body,
        r#"bandsync_tcp_connections_refused_total{reason="per_address"}"#,
    );
    assert_eq!(refused, Some(1.0), "{body}");

    // A slot comes back when a connection closes.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from([127, 0, 0, 1], server.addr).await;
    assert_eq!(get_raw(&mut again, "/health").await.0, 200);
}

async fn other_conn(server: &TestServer) -> TcpStream {
    connect_from([127, 0, 0, 3], server.addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_every_cap_clients_get_503_instead_of_a_hang() {
    // 12 TCP connections; MAX_CONNECTIONS 12 is lowered to 8 so that plain HTTP keeps room.
    let server = TestServer::start_with(|c| {
        c.limits.max_tcp_connections = 12;
        c.max_connections = 12;
    })
    .await;
    // The SSE flood, scaled down: streams from several addresses until refused.
    let mut streams = Vec::new();
    let mut refused = None;
    for n in 0..12u8 {
        let mut stream = connect_from([127, 0, 1, n], server.addr).await;
        let request = format!("GET /sse/flood-{n} HTTP/1.1\r\nhost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(LIMIT, stream.read_exact(&mut head))
            .await
            .expect("every stream request is answered")
            .unwrap();
        if &head == b"HTTP/1.1 200" {
            streams.push(stream);
        } else {
            assert_eq!(&head, b"HTTP/1.1 503", "{}", String::from_utf8_lossy(&head));
            refused = Some(n);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(8),
        "MAX_CONNECTIONS is held under the TCP cap"
    );
    // The room left is for plain HTTP: health answers.
    let mut probe = connect_from([127, 0, 2, 1], server.addr).await;
    assert_eq!(get_raw(&mut probe, "/health").await.0, 200);
    // Wait, over one kept-alive connection, until the server holds only the 8 streams and
    // that connection: a slot freed late (the probe's, the refused stream's) would
    // otherwise let the connection below in.
    let mut asking = connect_from([127, 0, 2, 2], server.addr).await;
    let deadline = Instant::now() + LIMIT;
    while !get_kept_alive(&mut asking, "/metrics")
        .await
        .lines()
        .any(|l| l == "bandsync_tcp_connections 9")
    {
        assert!(
            Instant::now() < deadline,
            "connections never went back to 9"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fill the TCP cap (12) with silent connections; the next one is answered 503, not
    // hung. The kernel hands connections to accept in order, so all 3 come before it.
    let mut silent = Vec::new();
    for n in 0..3u8 {
        silent.push(connect_from([127, 0, 3, n], server.addr).await);
    }
    let mut over = connect_from([127, 0, 4, 1], server.addr).await;
    let (status, body) = get_raw(&mut over, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(json_code(&body), "SERVER_FULL");
    drop((asking, over, silent, streams));
    // The test gate reads /metrics when the server stops: wait until there is room again.
    let deadline = Instant::now() + LIMIT;
    for n in 1.. {
        let mut probe = connect_from([127, 0, 5, n], server.addr).await;
        if get_raw(&mut probe, "/health").await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slots never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
