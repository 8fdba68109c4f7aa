//! The listeners of `repo-fanout`: many cheap ones that count bytes, and one that checks.
//!
//! A 5-second composition is ~5.5 MB as JSON; a thousand listeners each holding and parsing
//! it would make the load client (on the same two cores as the server) the thing measured,
//! and hold gigabytes. So all but one listener only find event boundaries (memchr over each
//! chunk, nothing kept but an event's first bytes, to tell its type) and stamp the instant
//! the last byte of the `audio_buffer` arrives. The verifier is a full
//! [`bandsync_client::repo::RepoStream`]: it parses the message and decodes the samples,
//! so every case also proves that what arrived was the whole composition.

use bandsync_client::protocol::repo::{Encoding, StreamMessage};
use bandsync_client::repo::{decode_channels, stream_url, RepoStream, StreamOptions};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Bytes of each event kept to tell its type. The server writes `audio_buffer` with `type`
/// first; its small messages (`connected`, `error`) are well under this whole.
const HEAD_BYTES: usize = 512;

/// One listener's `audio_buffer`: when its last byte came, and what it cost on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: Instant,
    /// The `audio_buffer` event's bytes.
    pub message_bytes: u64,
    /// Everything the listener read (the `connected` message too).
    pub body_bytes: u64,
}

/// Event boundaries of a `text/event-stream`, counted without keeping the events.
#[derive(Debug, Default)]
pub struct EventCounter {
    head: Vec<u8>,
    event_bytes: u64,
    line_len: usize,
    last_byte: u8,
    has_content: bool,
}

impl EventCounter {
    /// Feeds `chunk`; calls `on_event(head, bytes)` for each event it completes (blank
    /// line after a non-blank one; `\n` or `\r\n` line ends).
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8], u64)) {
        let mut start = 0;
        for pos in memchr::memchr_iter(b'\n', chunk) {
            let segment = &chunk[start..pos];
            self.take(segment);
            let line_len = self.line_len;
            let blank = line_len == 0 || (line_len == 1 && self.last_byte == b'\r');
            self.event_bytes += 1;
            self.line_len = 0;
            start = pos + 1;
            if !blank {
                self.has_content = true;
            } else if self.has_content {
                on_event(&self.head, self.event_bytes);
                self.head.clear();
                self.event_bytes = 0;
                self.has_content = false;
            }
        }
        self.take(&chunk[start..]);
    }

    fn take(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.last_byte = last;
        }
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.line_len += bytes.len();
        self.event_bytes += bytes.len() as u64;
    }
}

/// What an event is, from its first bytes.
pub fn kind(head: &[u8]) -> &'static str {
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    if has(br#""type":"audio_buffer""#) {
        "audio_buffer"
    } else if has(br#""type":"error""#) {
        "error"
    } else {
        "other"
    }
}

/// Shared by the listeners of one case.
#[derive(Clone)]
pub struct Case {
    pub http: reqwest::Client,
    pub base: Arc<str>,
    pub repo: Arc<str>,
    pub encoding: Encoding,
    /// Bounds connecting (and reading the first event) to this many at once.
    pub connecting: Arc<Semaphore>,
    /// Listeners that got their first event (they are subscribed).
    pub ready: Arc<AtomicU64>,
    /// How long a listener waits for the composition after it is ready.
    pub patience: Duration,
}

/// A counting listener: ready after its first event, done at the `audio_buffer`'s last byte.
pub async fn count(case: Case) -> Result<Arrival, String> {
    let options = StreamOptions {
        encoding: Some(case.encoding),
        ..StreamOptions::default()
    };
    let url = stream_url(&case.base, &case.repo, &options).map_err(|e| e.to_string())?;
    let permit = case.connecting.acquire().await.map_err(|e| e.to_string())?;
    let response = case
        .http
        .get(&url)
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache")
        .send()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {} from {url}", response.status()));
    }
    let mut body = response.bytes_stream();
    let mut counter = EventCounter::default();
    let mut body_bytes = 0u64;
    let mut ready = false;
    let mut deadline = tokio::time::Instant::now() + crate::wire::CONNECT_TIMEOUT;
    let mut permit = Some(permit);
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .map_err(|_| format!("nothing after {} bytes, in time", body_bytes))?;
        let chunk = match chunk {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => return Err(format!("stream: {e}")),
            None => return Err(format!("the stream ended after {body_bytes} bytes")),
        };
        let at = Instant::now();
        body_bytes += chunk.len() as u64;
        let mut found = None;
        counter.feed(&chunk, |head, bytes| match kind(head) {
            "audio_buffer" if ready => found = Some(Ok(bytes)),
            "audio_buffer" => {
                found = Some(Err(
                    "a composition before the test (not a fresh repository)".to_owned(),
                ))
            }
            "error" => found = Some(Err(String::from_utf8_lossy(head).into_owned())),
            _ if !ready => ready = true,
            _ => {}
        });
        match found {
            Some(Ok(message_bytes)) => {
                return Ok(Arrival {
                    at,
                    message_bytes,
                    body_bytes,
                })
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
        if ready && permit.take().is_some() {
            case.ready.fetch_add(1, Relaxed);
            deadline = tokio::time::Instant::now() + case.patience;
        }
    }
}

/// The verifying listener: the client library end to end. Returns its arrival and the
/// frames it decoded from the composition.
pub async fn verify(case: Case) -> Result<(Arrival, usize), String> {
    let options = StreamOptions {
        encoding: Some(case.encoding),
        ..StreamOptions::default()
    };
    let permit = case.connecting.acquire().await.map_err(|e| e.to_string())?;
    let mut stream = RepoStream::connect_with(&case.http, &case.base, &case.repo, &options)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let first = stream
        .next_message(crate::wire::CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !matches!(
        first.map(|m| m.message),
        Some(StreamMessage::Connected { .. })
    ) {
        return Err("the first message was not `connected`".into());
    }
    drop(permit);
    case.ready.fetch_add(1, Relaxed);
    loop {
        let message = stream
            .next_message(case.patience)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the stream ended before the composition")?;
        match message.message {
            StreamMessage::AudioBuffer { data, .. } => {
                let [left, right] = decode_channels(&data.buffer).map_err(|e| e.to_string())?;
                if left.len() != right.len() {
                    return Err("channels of different lengths".into());
                }
                let arrival = Arrival {
                    at: message.received_at,
                    message_bytes: message.wire_bytes as u64,
                    body_bytes: stream.bytes_received(),
                };
                return Ok((arrival, left.len()));
            }
            StreamMessage::Error { data, .. } => {
                return Err(format!("{}: {}", data.code, data.message))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, u64)> {
        let mut counter = EventCounter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            counter.feed(chunk, |head, bytes| {
                out.push((String::from_utf8_lossy(head).into_owned(), bytes));
            });
        }
        out
    }

    #[test]
    fn counts_events_across_chunks() {
        let audio = format!(
            "data: {{\"type\":\"audio_buffer\",\"pad\":\"{}\"}}\n\n",
            "x".repeat(2000)
        );
        let connected = "data: {\"data\":{},\"type\":\"connected\"}\r\n\r\n";
        let all = format!("{connected}{audio}data: {{\"type\":\"error\"}}\n\ndata: cut");
        let chunks: Vec<&[u8]> = all.as_bytes().chunks(5).collect();
        let got = events(&chunks);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, connected.len() as u64);
        assert_eq!(kind(got[0].0.as_bytes()), "other");
        assert_eq!(got[1].1, audio.len() as u64);
        assert_eq!(got[1].0.len(), HEAD_BYTES, "only the head is kept");
        assert_eq!(kind(got[1].0.as_bytes()), "audio_buffer");
        assert_eq!(kind(got[2].0.as_bytes()), "error");
        // One chunk holding everything counts the same.
        assert_eq!(events(&[all.as_bytes()]), got);
    }
}
