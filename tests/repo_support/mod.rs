//! Listening to repository streams in tests: an SSE reader that yields each message's JSON,
//! and a test-composition request.

#![allow(dead_code)]

use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// How long any one message may take to arrive (a debug build renders 5 s in about 0.5 s;
/// the machine is shared).
pub const WAIT: Duration = Duration::from_secs(30);

pub struct RepoListener {
    pub response_headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    /// Where the search for the end of the event resumes (a composition arrives in
    /// hundreds of chunks; rescanning from the start each time would be quadratic).
    scanned: usize,
}

impl RepoListener {
    /// Opens `GET {base}/stream/{path}` and returns once the response head arrived.
    pub async fn open(base: &str, path: &str) -> RepoListener {
        let response = reqwest::Client::new()
            .get(format!("{base}/stream/{path}"))
            .header("origin", "http://example.test")
            .send()
            .await
            .expect("GET /stream");
        assert_eq!(response.status(), 200, "listening to {path}");
        RepoListener {
            response_headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            scanned: 0,
        }
    }

    /// The next message's JSON (a `data:` line); panics after [`WAIT`] or at end of stream.
    pub async fn next(&mut self) -> Value {
        self.try_next(WAIT).await.expect("a message in time")
    }

    /// The next message, or `None` when the stream ends or `wait` passes first.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let from = self.scanned.saturating_sub(1);
            if let Some(end) = find(&self.buffer[from..], b"\n\n").map(|i| i + from) {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                self.scanned = 0;
                let text = std::str::from_utf8(&event).expect("UTF-8 events");
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                assert!(
                    text.lines()
                        .all(|l| l.is_empty() || l.starts_with("data: ")),
                    "only data lines: {}",
                    &text[..text.len().min(200)]
                );
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("JSON data"));
            }
            self.scanned = self.buffer.len();
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer.extend_from_slice(&chunk.ok()?);
        }
    }

    /// Skips messages until one of type `kind`.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == kind {
                return message;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `POST {base}/stream/{repo}/test` with `body`: the status and the JSON answer.
pub async fn post_test(base: &str, repo: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/stream/{repo}/test"))
        .json(&body)
        .send()
        .await
        .expect("POST test");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// An audio_buffer's channels as floats, whatever its encoding.
pub fn channels(message: &Value) -> Vec<Vec<f32>> {
    let buffer = &message["data"]["buffer"];
    let decode = |s: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().expect("base64 string"))
            .expect("valid base64")
    };
    let list = buffer["channels"].as_array().expect("channels");
    match buffer["encoding"].as_str() {
        None => list
            .iter()
            .map(|c| {
                c.as_array()
                    .expect("numbers")
                    .iter()
                    .map(|v| v.as_f64().expect("a number") as f32)
                    .collect()
            })
            .collect(),
        Some("f32") => list
            .iter()
            .map(|c| {
                decode(c)
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect(),
        Some("i16") => list
            .iter()
            .map(|c| {
                decode(c)
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32767.0)
                    .collect()
            })
            .collect(),
        Some(other) => panic!("unknown encoding {other}"),
    }
}
