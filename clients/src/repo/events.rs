//! A bounded `text/event-stream` reader for repository streams.
//!
//! Why not `eventsource-stream`, as [`crate::SseClient`] uses: a repository stream's
//! `audio_buffer` is one `data:` line of up to ~20 MB (20 s as JSON numbers), arriving in
//! many small reads. That parser re-scans its whole buffer for a line end after every read,
//! which is quadratic in the line's length (gigabytes of scanning for one message), and it
//! buffers without a limit. This reader resumes its scan where the last one stopped and
//! refuses any message past a byte limit, so a hostile or broken server costs at most that
//! limit of memory.
//!
//! It follows the parts of the SSE spec the server uses: `data:` lines (one or several,
//! joined with `\n`), dispatch on a blank line, `\n` or `\r\n` line ends, a leading BOM;
//! comments (`:`), `id:`, `event:` and `retry:` are skipped. A lone `\r` as a line end is
//! not supported (no bandsync server sends one).

use crate::error::{ClientError, Result};

/// One complete event's `data`, and the bytes it took on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub data: String,
    /// Bytes of the stream from the end of the previous event to the end of this one
    /// (its lines, and any comments or empty events before it).
    pub wire_bytes: usize,
}

/// Incremental, bounded event splitter: [`EventReader::push`] bytes as they arrive, then
/// take events with [`EventReader::next_event`] until it returns `None`.
#[derive(Debug)]
pub struct EventReader {
    /// Bytes not yet split into lines.
    pending: Vec<u8>,
    /// How far `pending` is known to hold no `\n` (so a long line is scanned once).
    scanned: usize,
    /// The current event's data so far.
    data: Vec<u8>,
    has_data: bool,
    /// Wire bytes since the last event was returned.
    wire: usize,
    started: bool,
    limit: usize,
}

impl EventReader {
    /// A reader that refuses any event whose data (plus the line being read) passes `limit`
    /// bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            pending: Vec::new(),
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            wire: 0,
            started: false,
            limit,
        }
    }

    /// Appends bytes from the stream. Call [`EventReader::next_event`] until it returns
    /// `None` after each push: that is where the limit is checked, so what is held is at
    /// most one event's bytes (up to the limit) plus one chunk.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if !self.started && !chunk.is_empty() {
            self.started = true;
            chunk = chunk.strip_prefix("\u{feff}".as_bytes()).unwrap_or(chunk);
        }
        self.wire += chunk.len();
        self.pending.extend_from_slice(chunk);
    }

    /// Drops everything held (after an error, when the stream is abandoned).
    pub fn clear(&mut self) {
        *self = Self::new(self.limit);
    }

    /// The next complete event, if the bytes pushed so far hold one. Fails with
    /// [`ClientError::MessageTooLarge`] when the event being read is past the limit without
    /// being complete (the reader is then of no further use), and with [`ClientError::Sse`]
    /// when an event's data is not UTF-8.
    pub fn next_event(&mut self) -> Result<Option<RawEvent>> {
        let mut start = 0;
        let mut found = None;
        while let Some(pos) = memchr::memchr(b'\n', &self.pending[self.scanned.max(start)..]) {
            let end = self.scanned.max(start) + pos;
            let mut line = &self.pending[start..end];
            start = end + 1;
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.is_empty() {
                if self.has_data {
                    found = Some(std::mem::take(&mut self.data));
                    self.has_data = false;
                    break;
                }
                continue;
            }
            if let Some(value) = field_value(line, b"data") {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
        self.pending.drain(..start);
        // Without an event, what is left is a partial line: the next scan starts at its
        // end. After one, the rest has not been looked at yet.
        self.scanned = if found.is_some() {
            0
        } else {
            self.pending.len()
        };
        let Some(data) = found else {
            if self.pending.len() + self.data.len() > self.limit {
                return Err(ClientError::MessageTooLarge { limit: self.limit });
            }
            return Ok(None);
        };
        let consumed = self.wire - self.pending.len();
        self.wire = self.pending.len();
        let data = String::from_utf8(data)
            .map_err(|e| ClientError::Sse(format!("event data is not UTF-8: {e}")))?;
        Ok(Some(RawEvent {
            data,
            wire_bytes: consumed,
        }))
    }
}

/// `value` of a `name: value` (or `name:value`) line, `None` for another field.
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(limit: usize, chunks: &[&[u8]]) -> Result<Vec<RawEvent>> {
        let mut reader = EventReader::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            reader.push(chunk);
            while let Some(event) = reader.next_event()? {
                out.push(event);
            }
        }
        Ok(out)
    }

    fn data(events: &[RawEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn splits_events_across_chunks_and_skips_other_fields() {
        let got = events(
            1024,
            &[
                "\u{feff}: keep-alive\n\nid: 1\nda".as_bytes(),
                b"ta: {\"a\":1}\n",
                b"\nevent: x\r\ndata:{\"b\":2}\r\n\r\n",
                b"retry: 5\ndata: line1\ndata: line2\n\ndata:",
                b" partial",
            ],
        )
        .unwrap();
        assert_eq!(data(&got), ["{\"a\":1}", "{\"b\":2}", "line1\nline2"]);
        // Wire bytes add up to everything before the unfinished event.
        let total: usize = got.iter().map(|e| e.wire_bytes).sum();
        let before_partial = "\u{feff}: keep-alive\n\nid: 1\ndata: {\"a\":1}\n\nevent: x\r\ndata:{\"b\":2}\r\n\r\nretry: 5\ndata: line1\ndata: line2\n\n".len() - 3;
        assert_eq!(total, before_partial, "the BOM is not counted");
        assert_eq!(
            got[0].wire_bytes,
            ": keep-alive\n\nid: 1\ndata: {\"a\":1}\n\n".len()
        );
    }

    #[test]
    fn a_long_line_in_small_chunks_is_one_event() {
        let payload = "x".repeat(100_000);
        let text = format!("data: {payload}\n\n");
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(7).collect();
        let got = events(200_000, &chunks).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, payload);
        assert_eq!(got[0].wire_bytes, text.len());
    }

    #[test]
    fn an_event_past_the_limit_is_refused() {
        let text = format!("data: {}\n\n", "y".repeat(5000));
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(100).collect();
        let err = events(4096, &chunks).unwrap_err();
        assert!(
            matches!(err, ClientError::MessageTooLarge { limit: 4096 }),
            "{err}"
        );
        // Just under the limit passes, and the limit applies per event, not per stream.
        let ok = format!("data: {}\n\n", "z".repeat(1000));
        let got = events(1100, &[ok.repeat(3).as_bytes(), ok.as_bytes()]).unwrap();
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn data_that_is_not_utf8_is_an_error() {
        let err = events(1024, &[b"data: \xff\xfe\n\n"]).unwrap_err();
        assert!(matches!(err, ClientError::Sse(_)), "{err}");
    }
}
