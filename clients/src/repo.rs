//! Repository streams: a listener of `GET /stream/{repoId}` and the test route
//! `POST /stream/{repoId}/test`, shared by `bandsync-cli repo`, `bandsync-bench repo-fanout`
//! and the server's tests.
//!
//! The stream is read with [`events::EventReader`] (bounded, linear in the message size)
//! rather than `eventsource-stream`: one `audio_buffer` is megabytes on a single line. Like
//! the other clients it runs nothing in the background and never reconnects by itself.

pub mod audio;
pub mod events;

use crate::error::{ClientError, Result};
use bandsync_protocol::repo::{
    validate_repo_id, Encoding, MusicalParams, StreamMessage, TestRequest,
};
use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde::Deserialize;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use audio::{decode_channels, AudioError};
pub use events::{EventReader, RawEvent};

/// Largest message a listener accepts by default. The longest composition (20 s) is about
/// 20 MB as JSON numbers; 64 MiB leaves room for the other fields and a slightly more
/// verbose server, and bounds what a broken one can make a listener hold.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long establishing the TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test render may take to be answered (rendering, then queueing for every
/// listener; the server answers 503 rather than queue without bound).
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer to `POST .../test` read (a few hundred bytes normally).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How much of an undecodable message an error quotes.
const QUOTED_CHARS: usize = 300;

/// First path segments under `/stream/` that belong to the Stream Manager, not to
/// repositories (protocol/PROTOCOL.md, "Repository streams"): a repository whose id starts
/// with one is addressed percent-encoded.
pub const RESERVED_SEGMENTS: [&str; 7] = [
    "status", "start", "stop", "pause", "reset", "layers", "assets",
];

/// The path of a repository under `/stream/`: the id as is (`octocat/hello-world`), except
/// that a first segment the Stream Manager reserves gets its first letter percent-encoded
/// (`status/site` -> `%73tatus/site`), which the server decodes back to the same id.
pub fn repo_path(repo_id: &str) -> Result<String> {
    validate_repo_id(repo_id).map_err(|reason| ClientError::InvalidUrl {
        url: repo_id.to_owned(),
        reason,
    })?;
    let first = repo_id.split('/').next().unwrap_or_default();
    if RESERVED_SEGMENTS.contains(&first) {
        let b = repo_id.as_bytes()[0];
        return Ok(format!("%{b:02X}{}", &repo_id[1..]));
    }
    Ok(repo_id.to_owned())
}

fn base(base_http_url: &str) -> &str {
    base_http_url.trim_end_matches('/')
}

/// What a listener asks for.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// `?clientId=` (the server makes one up without it).
    pub client_id: Option<String>,
    /// `?encoding=` (the server's default is `json`).
    pub encoding: Option<Encoding>,
    /// Messages past this many bytes end the stream with [`ClientError::MessageTooLarge`].
    pub max_message_bytes: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            client_id: None,
            encoding: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// `{base}/stream/{repo}?clientId=..&encoding=..`.
pub fn stream_url(base_http_url: &str, repo_id: &str, options: &StreamOptions) -> Result<String> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(id) = &options.client_id {
        query.append_pair("clientId", id);
    }
    if let Some(encoding) = options.encoding {
        query.append_pair("encoding", encoding.as_str());
    }
    let query = query.finish();
    let sep = if query.is_empty() { "" } else { "?" };
    Ok(format!(
        "{}/stream/{}{sep}{query}",
        base(base_http_url),
        repo_path(repo_id)?
    ))
}

/// One message of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoMessage {
    pub message: StreamMessage,
    /// Bytes it took on the wire (see [`RawEvent::wire_bytes`]).
    pub wire_bytes: usize,
    /// When its last byte was read, monotonic.
    pub received_at: Instant,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// One open repository stream.
pub struct RepoStream {
    url: String,
    body: Body,
    reader: EventReader,
    ended: bool,
    bytes: u64,
}

impl std::fmt::Debug for RepoStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoStream")
            .field("url", &self.url)
            .field("bytes", &self.bytes)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// A client for many streams and requests (one connection pool).
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?)
}

impl RepoStream {
    /// Opens `GET {base}/stream/{repoId}` (base like `http://127.0.0.1:3001`). Fails with
    /// [`ClientError::Refused`] (the server's JSON error) or [`ClientError::HttpStatus`]
    /// unless the answer is a 2xx.
    pub async fn connect(
        base_http_url: &str,
        repo_id: &str,
        options: &StreamOptions,
    ) -> Result<Self> {
        Self::connect_with(&http_client()?, base_http_url, repo_id, options).await
    }

    /// [`Self::connect`] on a given client (many listeners sharing one pool).
    pub async fn connect_with(
        http: &reqwest::Client,
        base_http_url: &str,
        repo_id: &str,
        options: &StreamOptions,
    ) -> Result<Self> {
        let url = stream_url(base_http_url, repo_id, options)?;
        let response = http
            .get(&url)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .send()
            .await?;
        let response = check_status(response, &url).await?;
        tracing::debug!(%url, "repository stream open");
        Ok(Self {
            url,
            body: Box::pin(response.bytes_stream()),
            reader: EventReader::new(options.max_message_bytes),
            ended: false,
            bytes: 0,
        })
    }

    /// The next event's data, unparsed; `Ok(None)` once the server ended the stream,
    /// [`ClientError::Timeout`] when no whole event came within `timeout` (the stream stays
    /// usable: what arrived is kept). Cancel-safe.
    pub async fn next_raw(&mut self, timeout: Duration) -> Result<Option<RawEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.reader.next_event() {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => {
                    // The stream cannot be resynchronised after a refused message: end it,
                    // and let go of what it held.
                    self.ended = true;
                    self.reader.clear();
                    return Err(e);
                }
            }
            if self.ended {
                return Ok(None);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .map_err(|_| ClientError::Timeout(timeout))?;
            match chunk {
                Some(Ok(bytes)) => {
                    self.bytes += bytes.len() as u64;
                    self.reader.push(&bytes);
                }
                Some(Err(e)) => {
                    self.ended = true;
                    return Err(ClientError::Http(e));
                }
                None => self.ended = true,
            }
        }
    }

    /// The next message, parsed (see [`Self::next_raw`]). A message that is not a
    /// [`StreamMessage`] is [`ClientError::Decode`] quoting its start; the stream stays
    /// usable.
    pub async fn next_message(&mut self, timeout: Duration) -> Result<Option<RepoMessage>> {
        let Some(event) = self.next_raw(timeout).await? else {
            return Ok(None);
        };
        let received_at = Instant::now();
        let message = serde_json::from_str(&event.data).map_err(|error| ClientError::Decode {
            text: quote(&event.data),
            error,
        })?;
        Ok(Some(RepoMessage {
            message,
            wire_bytes: event.wire_bytes,
            received_at,
        }))
    }

    /// Body bytes read so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The start of `text`, for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text.to_owned(),
    }
}

/// The server's JSON error: `{"success":false,"error","code","timestamp"}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    code: String,
}

/// Passes a 2xx through; anything else becomes [`ClientError::Refused`] when the body is
/// the contract's JSON error, [`ClientError::HttpStatus`] otherwise.
async fn check_status(response: reqwest::Response, url: &str) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_limited(response, MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    Err(match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => ClientError::Refused {
            status: status.as_u16(),
            code: e.code,
            message: e.error,
        },
        Err(_) => ClientError::HttpStatus {
            status: status.as_u16(),
            url: url.to_owned(),
        },
    })
}

/// The body, refusing one past `limit` bytes.
async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(ClientError::MessageTooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The answer to `POST /stream/{repoId}/test`: what was rendered and broadcast.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestAnswer {
    pub repo_id: String,
    pub composition_id: String,
    pub params: MusicalParams,
    /// Seconds of audio.
    pub duration: f64,
    /// Frames (samples per channel).
    pub samples: usize,
    pub sample_rate: u32,
    pub number_of_channels: usize,
    pub render_time_ms: f64,
    /// Listeners (on that instance) the composition was queued for.
    pub listeners_notified: usize,
    /// The same parameters were being rendered already; this play shared that render.
    #[serde(default)]
    pub shared_render: bool,
}

/// `POST {base}/stream/{repoId}/test`: renders `request` (over the server's defaults) and
/// broadcasts it. A refusal (400 `INVALID_PARAMS`, 503 `RENDER_BUSY`, ...) is
/// [`ClientError::Refused`] with the server's code and message.
pub async fn post_test(
    http: &reqwest::Client,
    base_http_url: &str,
    repo_id: &str,
    request: &TestRequest,
) -> Result<TestAnswer> {
    let url = format!(
        "{}/stream/{}/test",
        base(base_http_url),
        repo_path(repo_id)?
    );
    let body = serde_json::to_vec(request).expect("a test request always serializes");
    let response = http
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .timeout(TEST_TIMEOUT)
        .body(body)
        .send()
        .await?;
    let response = check_status(response, &url).await?;
    let body = read_limited(response, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&body).map_err(|error| ClientError::Decode {
        text: quote(&String::from_utf8_lossy(&body)),
        error,
    })
}

#[cfg(test)]
mod tests;
