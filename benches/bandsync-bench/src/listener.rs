//! SSE listeners for the `sse` scenario, with a minimal `text/event-stream` reader.
//!
//! [`bandsync_client::SseClient`] parses with `eventsource-stream` and decodes each event
//! into a full `ServerFrame`: several allocations per tick. At 1,000 listeners times 62.5
//! ticks a second that cost lands in the measured lag, so this reader splits lines in
//! place (memchr), joins `data:` lines into one reused buffer and hands each event's data
//! to the same cheap [`Sink`] the WebSocket followers use. It follows the parts of the
//! SSE spec a bandsync stream uses: `data:` lines (one or several), blank-line dispatch,
//! `\n` or `\r\n` line ends; `id:`, `event:` and comments are skipped.

use crate::wire::Sink;
use bandsync_client::wall_clock_ms;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use std::time::Instant;
use tokio::sync::watch;

/// Opens `GET {url}` as an event stream; fails unless the answer is a 2xx.
pub async fn connect(http: &reqwest::Client, url: &str) -> Result<reqwest::Response, String> {
    let response = http
        .get(url)
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache")
        .send()
        .await
        .map_err(|e| format!("sse connect: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("sse: HTTP {} from {url}", response.status()));
    }
    Ok(response)
}

/// Incremental event splitter: feed bytes, get each complete event's data.
#[derive(Debug, Default)]
pub struct EventSplitter {
    pending: Vec<u8>,
    data: String,
    has_data: bool,
}

impl EventSplitter {
    /// Appends `chunk` and calls `on_event` with the data of every event it completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&str)) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &self.pending[start..]) {
            let mut line = &self.pending[start..start + pos];
            start += pos + 1;
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.is_empty() {
                if self.has_data {
                    on_event(&self.data);
                }
                self.data.clear();
                self.has_data = false;
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
        }
        self.pending.drain(..start);
    }
}

/// Reads events until `stop` changes or the stream ends.
pub async fn read_loop(response: reqwest::Response, mut sink: Sink, stop: watch::Receiver<bool>) {
    let ended = stream_events(response, stop, |data, at, wall| {
        sink.on_text(data, at, wall)
    })
    .await;
    if let Some(why) = ended {
        sink.closed_early(|| why);
    }
    sink.finish();
}

/// Feeds each SSE event's data (with its receive instant and wall clock) to `on_event`
/// until `stop` changes (returns `None`) or the stream ends or fails (returns why).
/// Shared by the tick listeners and the audio receivers.
pub async fn stream_events(
    response: reqwest::Response,
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(&str, Instant, f64),
) -> Option<String> {
    let mut body = response.bytes_stream();
    let mut splitter = EventSplitter::default();
    // Registered once for the whole loop (see `wire::read_loop`).
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let chunk = tokio::select! {
            biased;
            chunk = body.next() => chunk,
            _ = &mut stopped => return None,
        };
        let at = Instant::now();
        let wall = wall_clock_ms();
        match chunk {
            Some(Ok(bytes)) => splitter.feed(&bytes, |data| on_event(data, at, wall)),
            Some(Err(e)) => return Some(format!("sse stream error: {e}")),
            None => return Some("sse stream ended".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Vec<String> {
        let mut s = EventSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c.as_bytes(), |d| out.push(d.to_owned()));
        }
        out
    }

    #[test]
    fn splits_events_across_chunks_and_skips_the_rest() {
        let events = split(&[
            ": keep-alive\n\nid: 1\nda",
            "ta: {\"a\":1}\n",
            "\nid: 2\r\ndata:{\"b\":2}\r\n\r\n",
            "event: x\ndata: line1\ndata: line2\n\nid: 3\n\ndata: partial",
        ]);
        assert_eq!(events, ["{\"a\":1}", "{\"b\":2}", "line1\nline2"]);
    }
}
