//! The client's side of the WebSocket opening handshake, kept cheap for the connect scenario.
//!
//! The load client opens 10,000s of connections on one core, and with
//! `tokio_tungstenite::connect_async` a third of its CPU per join was user space: the URL
//! parsed into a `Uri`, an `http::Request` built and written through a header map, the
//! answer parsed into an `http::Response` with its own header map, about 40 allocations in
//! all. When the client spends more per join than the server does, the joins per second it
//! reports are its own (BENCHMARKS.md, issue 12, fifth round). Here a handshake is the
//! request in one `String`, one `write`, the answer parsed in place by `httparse` (the
//! parser tungstenite uses) and checked the way tungstenite checks it (`101`, `Upgrade`,
//! `Connection`, and `Sec-WebSocket-Accept` derived from a fresh random key by tungstenite's
//! own functions); the socket is then handed to tokio-tungstenite with whatever bytes came
//! behind the answer. `wss://` URLs, which need TLS, still go through `connect_async`.

use crate::wire::Ws;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest answer head accepted (the server's is about 200 bytes).
const MAX_HEAD: usize = 8 * 1024;
/// Headers an answer may have.
const MAX_HEADERS: usize = 32;

/// Connects to `url` and completes the opening handshake.
pub async fn open(url: &str, config: WebSocketConfig) -> Result<Ws, String> {
    let Some((authority, path)) = plain_target(url) else {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        return Ok(ws);
    };
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("connect: {e}"))?;
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(format!("handshake: an answer head over {MAX_HEAD} bytes"));
        }
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if read == 0 {
            return Err("handshake: the server closed the connection".into());
        }
        if let Some(head_len) = check_answer(&buf, &key)? {
            let rest = buf.split_off(head_len);
            let stream = MaybeTlsStream::Plain(stream);
            return Ok(WebSocketStream::from_partially_read(
                stream,
                rest,
                Role::Client,
                Some(config),
            )
            .await);
        }
    }
}

/// `ws://host:port/path` as (`host:port`, `/path`); `None` for any other scheme.
fn plain_target(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("ws://")?;
    Some(match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    })
}

/// The length of the answer's head once it is whole (`None` until then), or why it is not
/// a WebSocket's.
fn check_answer(buf: &[u8], key: &str) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let head_len = match answer.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("handshake: unreadable answer ({e})")),
    };
    if answer.code != Some(101) {
        let code = answer.code.unwrap_or(0);
        let reason = answer.reason.unwrap_or("");
        return Err(format!("handshake: HTTP error: {code} {reason}"));
    }
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err("handshake: the answer does not upgrade to a WebSocket".into());
    }
    if header("sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err("handshake: wrong Sec-WebSocket-Accept".into());
    }
    Ok(Some(head_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_split_into_authority_and_path() {
        assert_eq!(
            plain_target("ws://127.0.0.1:3001/ws"),
            Some(("127.0.0.1:3001", "/ws"))
        );
        assert_eq!(
            plain_target("ws://localhost:80"),
            Some(("localhost:80", "/"))
        );
        assert_eq!(plain_target("wss://example.org/ws"), None);
    }

    #[test]
    fn answers_are_checked_like_tungstenite_checks_them() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        // RFC 6455, section 1.3: that key's accept value.
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let mut with_frame = good.as_bytes().to_vec();
        with_frame.extend_from_slice(&[0x81, 2, b'h', b'i']);
        assert_eq!(check_answer(good.as_bytes(), key), Ok(Some(good.len())));
        assert_eq!(check_answer(&with_frame, key), Ok(Some(good.len())));
        assert_eq!(check_answer(&good.as_bytes()[..40], key), Ok(None));

        let wrong_key = check_answer(good.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(wrong_key.unwrap_err().contains("Sec-WebSocket-Accept"));
        let refused = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n";
        assert!(check_answer(refused.as_bytes(), key)
            .unwrap_err()
            .contains("429"));
        let not_ws = good.replace("Upgrade: websocket", "Upgrade: h2c");
        assert!(check_answer(not_ws.as_bytes(), key)
            .unwrap_err()
            .contains("does not upgrade"));
    }
}
