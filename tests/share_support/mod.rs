//! Helpers for the Music Share API tests: a small HTTP client over the seven routes,
//! replies that check the error format, PCM chunk bodies, and bounded waits.
//!
//! Every wait is bounded (generous: the machine may be busy) and only lower bounds that
//! follow from the server's own rules are asserted, never latency.

#![allow(dead_code)]

use crate::common::TestServer;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The seed's example configuration: the client sends its whole `BearerToken` value.
pub const TOKEN: &str = "Bearer Token";

/// How long any expected state change may take to show (the sweeper runs once a second).
pub const WAIT: Duration = Duration::from_secs(10);

/// Base of the chunk timestamps the tests post (epoch ms, an integer as the seed sends).
pub const TS0: i64 = 1_700_000_000_000;

/// Starts the server with the share API's token set to [`TOKEN`], then `adjust`.
pub async fn share_server(adjust: impl FnOnce(&mut bandsync::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.share.bearer_token = Some(TOKEN.into());
        adjust(c);
    })
    .await
}

pub fn path(id: &str, what: &str) -> String {
    format!("/api/share/{id}/{what}")
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub what: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body, shortened for failure messages.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        if text.len() > 400 {
            format!("{}... ({} bytes)", &text[..400], self.body.len())
        } else {
            text.into_owned()
        }
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.what, self.text()))
    }

    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{}: expected {status}, got {} with {}",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    /// Expects 200 with a JSON body and returns it.
    #[track_caller]
    pub fn ok(&self) -> Value {
        self.expect_status(200);
        self.assert_json_content_type();
        self.json()
    }

    #[track_caller]
    pub fn assert_json_content_type(&self) {
        let content_type = self.content_type.as_deref().unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{}: content-type {content_type:?}",
            self.what
        );
    }

    /// Expects `status` with the error format `{"success": false, "error", "code",
    /// "timestamp"}` carrying `code`; returns the body.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> Value {
        self.expect_status(status);
        self.assert_json_content_type();
        let body = self.json();
        assert_eq!(body["success"], json!(false), "{}: {body}", self.what);
        assert_eq!(body["code"], json!(code), "{}: {body}", self.what);
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}: no error message: {body}",
            self.what
        );
        assert!(
            body["timestamp"].as_f64().is_some_and(|t| t > 1.5e12),
            "{}: no epoch-ms timestamp: {body}",
            self.what
        );
        if status == 404 {
            // The seed's 404 for status carries `isActive: false`.
            assert_eq!(body["isActive"], json!(false), "{}: {body}", self.what);
        }
        body
    }

    /// Expects 204 No Content with an empty body.
    #[track_caller]
    pub fn no_content(&self) {
        self.expect_status(204);
        assert!(self.body.is_empty(), "{}: 204 with a body", self.what);
    }

    /// The polled chunks (200 with a JSON array).
    #[track_caller]
    pub fn chunks(&self) -> Vec<Value> {
        match self.ok() {
            Value::Array(chunks) => chunks,
            other => panic!("{}: expected an array, got {other}", self.what),
        }
    }

    /// Sequence numbers of the polled chunks.
    #[track_caller]
    pub fn sequences(&self) -> Vec<i64> {
        self.chunks()
            .iter()
            .map(|c| c["sequenceNumber"].as_i64().expect("sequenceNumber"))
            .collect()
    }
}

/// A client of the share API. Each `Api::new` is its own reqwest client, so its own
/// connection: the server counts pollers by connection.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    addr: std::net::SocketAddr,
    auth: Option<String>,
}

impl Api {
    /// A new client sending [`TOKEN`].
    pub fn new(server: &TestServer) -> Self {
        Self::with_auth(server, Some(TOKEN))
    }

    /// A new client sending `auth` as the whole `Authorization` value (none: no header).
    pub fn with_auth(server: &TestServer, auth: Option<&str>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        Self {
            http,
            base: server.base_url(),
            addr: server.addr,
            auth: auth.map(str::to_owned),
        }
    }

    /// A client sending [`TOKEN`] from the loopback address `source` (e.g. 127.0.0.2): the
    /// server's per-address limits see another client.
    pub fn from_source(server: &TestServer, source: std::net::IpAddr) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .local_address(source)
            .build()
            .expect("reqwest client");
        Self {
            http,
            base: server.base_url(),
            addr: server.addr,
            auth: Some(TOKEN.to_owned()),
        }
    }

    /// The same client (same connection pool) sending another `Authorization`.
    pub fn auth(&self, auth: Option<&str>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            addr: self.addr,
            auth: auth.map(str::to_owned),
        }
    }

    /// POSTs a large JSON body with `Expect: 100-continue` on a connection of its own:
    /// the body is sent only if the server asks for it. A server may answer a large body
    /// before reading it (a bad token, a Content-Length over the limit); a client still
    /// writing the body would then see the connection reset instead of the answer.
    pub async fn post_large(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        let body = body.into();
        self.post_expecting_continue(path, ("content-length", body.len().to_string()), &body)
            .await
    }

    /// POSTs `body` (already framed as `framing` says) on a connection of its own, after
    /// the server's `100 Continue`; an answer before that is the answer.
    async fn post_expecting_continue(
        &self,
        path: &str,
        framing: (&'static str, String),
        body: &[u8],
    ) -> Reply {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            framing,
            ("expect", "100-continue".to_owned()),
        ];
        if let Some(auth) = &self.auth {
            headers.push(("authorization", auth.clone()));
        }
        let mut conn = RawConn::connect(self.addr).await;
        let first = conn.send_head("POST", path, &headers).await;
        if first.status != 100 {
            return first;
        }
        conn.send_body_and_read(&first.what, body).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Reply {
        self.send_body(method, path, body.map(reqwest::Body::from))
            .await
    }

    /// A JSON body sent chunked (`Transfer-Encoding: chunked`, no `Content-Length`), as
    /// streaming HTTP clients send it (.NET's `PostAsJsonAsync`, for one), in two chunks.
    /// With `Expect: 100-continue`, so that an early refusal stays readable.
    pub async fn post_chunked(&self, path: &str, body: &Value) -> Reply {
        let bytes = json_bytes(body);
        let (first, second) = bytes.split_at(bytes.len() / 2);
        let mut encoded = Vec::new();
        for part in [first, second] {
            encoded.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            encoded.extend_from_slice(part);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        self.post_expecting_continue(path, ("transfer-encoding", "chunked".to_owned()), &encoded)
            .await
    }

    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> Reply {
        self.send_full(method, path, body, None).await
    }

    /// A request without a body but with one extra header.
    pub async fn send_with_header(
        &self,
        method: Method,
        path: &str,
        header: (&str, &str),
    ) -> Reply {
        self.send_full(method, path, None, Some(header)).await
    }

    async fn send_full(
        &self,
        method: Method,
        path: &str,
        body: Option<reqwest::Body>,
        header: Option<(&str, &str)>,
    ) -> Reply {
        let what = format!("{method} {path}");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"))
            .to_vec();
        Reply {
            what,
            status,
            content_type,
            retry_after,
            body,
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(Method::POST, path, Some(bytes)).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.send(Method::POST, path, Some(body.into())).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn start(&self, id: &str) -> Reply {
        self.post_json("/api/share/start", &json!({ "sessionId": id }))
            .await
    }

    /// Starts `id` and checks the seed's 200 answer.
    pub async fn start_ok(&self, id: &str) -> Value {
        let body = self.start(id).await.ok();
        assert_eq!(body["success"], json!(true), "start {id}: {body}");
        assert_eq!(body["sessionId"], json!(id), "start {id}: {body}");
        assert!(body["timestamp"].is_number(), "start {id}: {body}");
        body
    }

    pub async fn post_metadata(&self, id: &str, metadata: &Value) -> Reply {
        self.post_json(&path(id, "metadata"), metadata).await
    }

    pub async fn post_audio(&self, id: &str, chunk: &Value) -> Reply {
        self.post_json(&path(id, "audio"), chunk).await
    }

    /// Posts a chunk and checks the seed's `{"success": true, "buffered": true}`.
    pub async fn post_audio_ok(&self, id: &str, chunk: &Value) {
        let body = self.post_audio(id, chunk).await.ok();
        assert_eq!(body, json!({"success": true, "buffered": true}));
    }

    pub async fn stop(&self, id: &str) -> Reply {
        self.send(Method::POST, &path(id, "stop"), None).await
    }

    pub async fn status(&self, id: &str) -> Reply {
        self.get(&path(id, "status")).await
    }

    pub async fn get_metadata(&self, id: &str) -> Reply {
        self.get(&path(id, "metadata")).await
    }

    pub async fn poll(&self, id: &str, since: i64) -> Reply {
        self.get(&format!("{}?since={since}", path(id, "audio")))
            .await
    }

    /// `listenerCount` of an active session's status.
    pub async fn listener_count(&self, id: &str) -> u64 {
        let status = self.status(id).await.ok();
        status["listenerCount"]
            .as_u64()
            .unwrap_or_else(|| panic!("status without listenerCount: {status}"))
    }
}

/// Every route of the API for session `id`, with a valid body where one is needed:
/// (method, path, body).
pub fn every_route(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/api/share/start".into(),
            Some(json!({ "sessionId": id })),
        ),
        (
            Method::POST,
            path(id, "metadata"),
            Some(seed_metadata("Song Title", 45.2)),
        ),
        (
            Method::POST,
            path(id, "audio"),
            Some(chunk(7, 8, 1, &pcm(&[0.5, -0.5]))),
        ),
        (Method::POST, path(id, "stop"), None),
        (Method::GET, path(id, "status"), None),
        (Method::GET, path(id, "metadata"), None),
        (Method::GET, format!("{}?since=-1", path(id, "audio")), None),
    ]
}

/// Sends one of [`every_route`]'s requests.
pub async fn call(api: &Api, route: &(Method, String, Option<Value>)) -> Reply {
    let (method, path, body) = route;
    let body = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    api.send(method.clone(), path, body).await
}

/// The seed's metadata body.
pub fn seed_metadata(title: &str, elapsed: f64) -> Value {
    json!({
        "title": title,
        "artist": "Artist Name",
        "lyrics": "[00:12.50]Lyrics line 1\n[00:15.80]Lyrics line 2",
        "hasSyncedLyrics": true,
        "elapsedSeconds": elapsed,
        "totalSeconds": 180.5,
        "thumbnailData": null,
        "timestamp": 1_234_567_890_123_i64,
    })
}

/// Interleaved float32 samples as little-endian bytes (the seed's `Buffer.BlockCopy`).
pub fn pcm(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {text:.80}"))
}

/// An audio chunk body as the seed's sharer posts it.
pub fn chunk(seq: i64, sample_rate: u32, channels: u16, bytes: &[u8]) -> Value {
    json!({
        "data": b64(bytes),
        "sampleRate": sample_rate,
        "channels": channels,
        "timestamp": TS0 + seq,
        "sequenceNumber": seq,
    })
}

/// Mono samples at 8 Hz, `frames` of them, distinct per `seq` (8 frames = 1 s of audio).
pub fn tiny_samples(seq: i64, frames: usize) -> Vec<u8> {
    let samples: Vec<f32> = (0..frames).map(|i| seq as f32 + i as f32 / 100.0).collect();
    pcm(&samples)
}

/// Polls `probe` every 50 ms until it yields a value; fails after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends requests from `attempt` back to back until one is refused with 429 (at most
/// `max_attempts`). Returns how many were accepted (200) before it, the 429, and how long
/// the burst took.
pub async fn burst_until_429<F, Fut>(max_attempts: usize, mut attempt: F) -> (u64, Reply, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Reply>,
{
    let began = Instant::now();
    let mut accepted = 0;
    for i in 0..max_attempts {
        let reply = attempt(i).await;
        match reply.status {
            200 => accepted += 1,
            429 => return (accepted, reply, began.elapsed()),
            _ => panic!(
                "{}: unexpected {} {}",
                reply.what,
                reply.status,
                reply.text()
            ),
        }
    }
    panic!("no 429 after {max_attempts} back-to-back requests ({accepted} accepted)");
}

/// One HTTP/1.1 connection, kept alive across requests: exactly one poller as the server
/// counts them (a pooled client may open a second connection at any time).
pub struct RawConn {
    socket: tokio::net::TcpStream,
    host: String,
    received: Vec<u8>,
}

impl RawConn {
    pub async fn open(server: &TestServer) -> Self {
        Self::connect(server.addr).await
    }

    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        Self {
            socket,
            host: addr.to_string(),
            received: Vec::new(),
        }
    }

    /// After a `100 Continue`: sends the body and reads the final answer.
    pub async fn send_body_and_read(&mut self, what: &str, body: &[u8]) -> Reply {
        use tokio::io::AsyncWriteExt;
        self.socket
            .write_all(body)
            .await
            .unwrap_or_else(|e| panic!("{what}: sending the body: {e}"));
        self.read_reply(what).await
    }

    /// Sends a request head (no body) and reads the whole answer.
    pub async fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> Reply {
        use tokio::io::AsyncWriteExt;
        let what = format!("{method} {path} (raw)");
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.socket
            .write_all(head.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: sending the head: {e}"));
        self.read_reply(&what).await
    }

    /// Reads one whole answer (a `100 Continue` counts as one).
    async fn read_reply(&mut self, what: &str) -> Reply {
        use tokio::io::AsyncReadExt;
        let exchange = async {
            let mut buf = [0u8; 8192];
            loop {
                if let Some((reply, used)) = parse_response(what, &self.received) {
                    self.received.drain(..used);
                    return Ok::<_, std::io::Error>(reply);
                }
                let n = self.socket.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::other(format!(
                        "connection closed after {} bytes: {:?}",
                        self.received.len(),
                        String::from_utf8_lossy(&self.received)
                    )));
                }
                self.received.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .unwrap_or_else(|_| {
                panic!("{what}: no answer within {WAIT:?} (is the server waiting for a body?)")
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// `GET path` with [`TOKEN`].
    pub async fn get(&mut self, path: &str) -> Reply {
        self.send_head("GET", path, &[("authorization", TOKEN.to_owned())])
            .await
    }
}

/// A complete HTTP/1.1 response (body delimited by Content-Length, or none) once all of
/// it is in `bytes`, with how many bytes it took.
pub fn parse_response(what: &str, bytes: &[u8]) -> Option<(Reply, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII response head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = None;
    let mut retry_after = None;
    let mut length = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim().to_owned();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value),
            "retry-after" => retry_after = Some(value),
            "content-length" => length = value.parse().ok()?,
            "transfer-encoding" => panic!("{what}: chunked answers are not handled here"),
            _ => {}
        }
    }
    let body = bytes.get(end + 4..end + 4 + length)?.to_vec();
    let reply = Reply {
        what: what.to_owned(),
        status,
        content_type,
        retry_after,
        body,
    };
    Some((reply, end + 4 + length))
}
