//! A client that writes its whole request, head and body, before it reads a byte of the
//! answer, as Python's `httpx` async client does (and any client that buffers a body and
//! sends it whole). Against a server that answers early and closes with the body still
//! arriving, its write fails with a reset, or the reset discards the answer it had
//! received: it never sees the status.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client's send buffer. On loopback the kernel would otherwise take a whole 1.5 MB
/// body at once, and the client would be done writing before the server answers; over a
/// real network (or from a client that writes in pieces, as `httpx` does) it is still
/// writing. Small, so the body is still on its way when the answer comes.
const SEND_BUFFER: u32 = 16 * 1024;

/// How long the whole exchange may take (the machine may be busy).
const EXCHANGE: Duration = Duration::from_secs(20);

/// How long to wait, after the answer, for the server to close or keep the connection:
/// either is fine, only a reset is not.
const AFTER: Duration = Duration::from_secs(8);

/// The answer, as read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
    /// What happened after the answer, when asked ([`send_early`]): `"closed"` (end of
    /// stream: the lingering close), or `"open"` (kept alive). Empty when not asked.
    pub then: &'static str,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` with `headers` and `body` (framed by the caller's headers: a
/// `content-length`, or `transfer-encoding: chunked` with `body` already chunked), all of
/// it before reading; then reads one answer. Panics, naming `what`, when the write or the
/// read fails (a reset), or the answer does not come.
pub async fn send(
    addr: SocketAddr,
    what: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    exchange(addr, what, (method, path), headers, body, false).await
}

/// [`send`], then also waits for what follows the answer (see [`Answer::then`]): a reset
/// there fails too.
pub async fn send_early(
    addr: SocketAddr,
    what: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    exchange(addr, what, (method, path), headers, body, true).await
}

async fn exchange(
    addr: SocketAddr,
    what: &str,
    (method, path): (&str, &str),
    headers: &[(&str, String)],
    body: &[u8],
    watch_after: bool,
) -> Answer {
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_send_buffer_size(SEND_BUFFER)?;
        let mut socket = socket.connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        socket
            .write_all(&request)
            .await
            .map_err(|e| std::io::Error::other(format!("writing the request: {e}")))?;
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut answer, used) = loop {
            if let Some(parsed) = parse(&received) {
                break parsed;
            }
            let n = socket
                .read(&mut buf)
                .await
                .map_err(|e| std::io::Error::other(format!("reading the answer: {e}")))?;
            if n == 0 {
                return Err(std::io::Error::other(format!(
                    "closed after {} bytes of answer",
                    received.len()
                )));
            }
            received.extend_from_slice(&buf[..n]);
        };
        assert_eq!(used, received.len(), "{what}: bytes after the answer");
        if !watch_after {
            return Ok(answer);
        }
        answer.then = match tokio::time::timeout(AFTER, socket.read(&mut buf)).await {
            Err(_) => "open",
            Ok(Ok(0)) => "closed",
            Ok(Ok(n)) => panic!("{what}: {n} more bytes after the answer"),
            Ok(Err(e)) => {
                return Err(std::io::Error::other(format!(
                    "after the answer, instead of a close: {e}"
                )))
            }
        };
        Ok::<_, std::io::Error>(answer)
    };
    tokio::time::timeout(EXCHANGE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {EXCHANGE:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `body` in HTTP/1.1 chunked framing, in chunks of at most 64 KiB.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 4096 + 16);
    for part in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// One complete answer with a Content-Length body (or none), and the bytes it took: the
/// share tests' own response parser, its reply taken apart.
fn parse(bytes: &[u8]) -> Option<(Answer, usize)> {
    let (reply, used) = crate::share_support::parse_response("a write-first client", bytes)?;
    let answer = Answer {
        status: reply.status,
        content_type: reply.content_type,
        retry_after: reply.retry_after,
        body: reply.body,
        then: "",
    };
    Some((answer, used))
}
