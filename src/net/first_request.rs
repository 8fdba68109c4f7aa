//! A connection's first request, looked at before hyper. A WebSocket handshake for the
//! direct route (`/ws`) that arrived whole in the connection's first read is answered here,
//! through the same layers as every request (metrics, CORS, security headers), and the
//! route takes the socket as soon as its `101` is written. Anything else (another path, a
//! head cut over two reads, a body, HTTP/1.0 or HTTP/2) goes to hyper, which then reads the
//! same bytes from memory, without a second `recv`.
//!
//! Why: for a WebSocket, hyper's connection only parses one head and writes one response,
//! yet costs its connection state, the upgrade's hand-over through a one-shot channel and a
//! task woken for each stage: measured in BENCHMARKS.md (issue 12, fourth round).

use crate::http::errors::Body;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use std::io::Write;

/// Header lines a head answered here may have; a head with more goes to hyper (which
/// allows 100).
const MAX_HEADERS: usize = 64;

/// In the extensions of a request answered here: a route that upgrades it asks the
/// connection for its socket with `Activity::hand_over_socket_to`, as there is no hyper
/// upgrade to wait for.
#[derive(Clone, Copy, Debug)]
pub struct Direct;

/// `bytes` as the head of a request for `path` answered here: `GET`, HTTP/1.1, complete,
/// without a body; with the number of bytes the head takes. `None` sends the connection to
/// hyper unchanged.
pub fn parse(bytes: &[u8], path: &str) -> Option<(Request<()>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = head.parse(bytes).ok()? else {
        return None;
    };
    if head.method != Some("GET") || head.version != Some(1) {
        return None;
    }
    let uri: Uri = head.path?.parse().ok()?;
    if uri.path() != path {
        return None;
    }
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    let map = request.headers_mut();
    map.reserve(head.headers.len());
    for header in head.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        // A body, even an empty one, is hyper's to read.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            return None;
        }
        map.append(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    Some((request, len))
}

/// `response` as HTTP/1.1 bytes, framed as hyper frames it: the status line, the headers
/// in order, then `content-length` (not for a `1xx`, `204` or `304`) and `date` unless the
/// route set them, then the body. `None` if the body fails.
pub async fn encode(response: Response<Body>) -> Option<Vec<u8>> {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        Bytes::new()
    } else {
        body.collect().await.ok()?.to_bytes()
    };
    let mut out = Vec::with_capacity(512 + body.len());
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_str());
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !bodiless && !parts.headers.contains_key(CONTENT_LENGTH) {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    if !parts.headers.contains_key(DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        let _ = write!(out, "date: {now}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::errors::full;

    const HANDSHAKE: &[u8] = b"GET /ws?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_whole_handshake_for_the_path_is_parsed_with_its_length() {
        let mut bytes = HANDSHAKE.to_vec();
        bytes.extend_from_slice(b"\x81\x80abcd");
        let (request, len) = parse(&bytes, "/ws").unwrap();
        assert_eq!(len, HANDSHAKE.len());
        assert_eq!(request.uri().path(), "/ws");
        assert_eq!(request.uri().query(), Some("token=abc"));
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert_eq!(request.headers().len(), 5);
    }

    #[test]
    fn anything_else_goes_to_hyper() {
        let handshake = std::str::from_utf8(HANDSHAKE).unwrap();
        let other_path = handshake.replace("/ws?", "/wss?");
        let http10 = handshake.replace("HTTP/1.1", "HTTP/1.0");
        let post = handshake.replace("GET", "POST");
        let body = handshake.replace("Host: x", "Host: x\r\nContent-Length: 0");
        let cut = &HANDSHAKE[..HANDSHAKE.len() - 2];
        for bytes in [
            other_path.as_bytes(),
            http10.as_bytes(),
            post.as_bytes(),
            body.as_bytes(),
            cut,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(
                parse(bytes, "/ws").is_none(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn too_many_headers_go_to_hyper() {
        let mut head = String::from("GET /ws HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("x-h{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(parse(head.as_bytes(), "/ws").is_none());
    }

    #[tokio::test]
    async fn a_switch_has_no_length_and_an_error_has_its_body() {
        let mut switch = Response::new(full(Bytes::new()));
        *switch.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        switch
            .headers_mut()
            .insert("upgrade", HeaderValue::from_static("websocket"));
        let text = String::from_utf8(encode(switch).await.unwrap()).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"));
        assert!(text.contains("\r\ndate: "));
        assert!(!text.contains("content-length"));
        assert!(text.ends_with("GMT\r\n\r\n"));

        let mut refused = Response::new(full(Bytes::from_static(b"{\"x\":1}")));
        *refused.status_mut() = StatusCode::UPGRADE_REQUIRED;
        let text = String::from_utf8(encode(refused).await.unwrap()).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\ncontent-length: 7\r\ndate: "));
        assert!(text.ends_with("\r\n\r\n{\"x\":1}"));
    }
}
