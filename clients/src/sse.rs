//! A Server-Sent Events client for `GET /sse/{sessionId}`: a session listener.
//!
//! HTTP is reqwest's, the `text/event-stream` parsing is `eventsource-stream`'s (comments
//! such as keep-alives, multi-line `data:`, `id:` carried over per the spec), so this file
//! only maps events to [`ServerFrame`]s. Like [`crate::WsClient`] it runs nothing in the
//! background and never reconnects by itself: tests decide when to reconnect and with
//! which `Last-Event-ID`.

use crate::clock::wall_clock_ms;
use crate::credentials::Credentials;
use crate::error::{ClientError, Result};
use bandsync_protocol::ServerFrame;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::stream::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use std::pin::Pin;
use std::time::{Duration, Instant};

/// How long establishing the TCP connection may take. The stream itself has no overall
/// timeout (it is meant to stay open); each [`SseClient::next_event`] call has one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The stream's last event id as of this event (`id:`), `None` until the server sent
    /// one. Per the SSE spec an event without `id:` keeps the previous one.
    pub id: Option<String>,
    pub frame: ServerFrame,
    /// When the event was parsed, monotonic.
    pub received_at: Instant,
    /// When the event was parsed, wall clock (ms since the Unix epoch), for lag.
    pub wall_ms: f64,
}

/// One open `text/event-stream` response.
pub struct SseClient {
    url: String,
    events: Events,
    last_event_id: Option<String>,
    ended: bool,
}

impl std::fmt::Debug for SseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseClient")
            .field("url", &self.url)
            .field("last_event_id", &self.last_event_id)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// `{base}/sse/{session_id}`. The session id goes in verbatim: its alphabet
/// (`A-Z a-z 0-9 . _ - /`) needs no escaping, and `owner/repo` ids are paths on purpose.
pub fn sse_url(base_http_url: &str, session_id: &str) -> String {
    format!("{}/sse/{session_id}", base_http_url.trim_end_matches('/'))
}

impl SseClient {
    /// Opens `GET {base}/sse/{sessionId}` (base like `http://127.0.0.1:3001`), sending
    /// `Last-Event-ID` when given so the server resumes after that event. Fails with
    /// [`ClientError::HttpStatus`] unless the answer is a 2xx.
    pub async fn connect(
        base_http_url: &str,
        session_id: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self> {
        Self::connect_with(
            base_http_url,
            session_id,
            last_event_id,
            &Credentials::default(),
        )
        .await
    }

    /// [`Self::connect`] presenting `credentials` on the URL (`?token=`, `?shareToken=`):
    /// a session token for an authenticated server, the share token to receive a share.
    pub async fn connect_with(
        base_http_url: &str,
        session_id: &str,
        last_event_id: Option<&str>,
        credentials: &Credentials,
    ) -> Result<Self> {
        let url = sse_url(base_http_url, session_id) + &credentials.query();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        let mut request = http
            .get(&url)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::HttpStatus {
                status: status.as_u16(),
                url,
            });
        }
        tracing::debug!(%url, "sse stream open");
        let mut events = response.bytes_stream().eventsource();
        if let Some(id) = last_event_id {
            events.set_last_event_id(id);
        }
        Ok(Self {
            url,
            events: Box::pin(events),
            last_event_id: last_event_id.map(str::to_owned),
            ended: false,
        })
    }

    /// The next event, skipping comments and empty events; `Ok(None)` once the server
    /// ended the stream, [`ClientError::Timeout`] when nothing came within `timeout`
    /// (the stream stays usable). Cancel-safe.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<SseEvent>> {
        if self.ended {
            return Ok(None);
        }
        let item = tokio::time::timeout(timeout, self.events.next())
            .await
            .map_err(|_| ClientError::Timeout(timeout))?;
        let received_at = Instant::now();
        let wall_ms = wall_clock_ms();
        let event = match item {
            None => {
                self.ended = true;
                return Ok(None);
            }
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                self.ended = true;
                return Err(match e {
                    EventStreamError::Transport(e) => ClientError::Http(e),
                    EventStreamError::Utf8(e) => ClientError::Sse(e.to_string()),
                    EventStreamError::Parser(e) => ClientError::Sse(e.to_string()),
                });
            }
        };
        let id = (!event.id.is_empty()).then_some(event.id);
        if id.is_some() {
            self.last_event_id.clone_from(&id);
        }
        let frame = ServerFrame::decode(&event.data).map_err(|error| ClientError::Decode {
            text: event.data,
            error,
        })?;
        Ok(Some(SseEvent {
            id,
            frame,
            received_at,
            wall_ms,
        }))
    }

    /// The last event id seen (or the one connected with): what to send as
    /// `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The stream's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::encode_server_frame;
    use bandsync_protocol::server::{RoomStats, ServerEvent};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    const WAIT: Duration = Duration::from_secs(5);

    /// Serves one HTTP response with `status` and `body`, then closes; hands back the raw
    /// request head it got.
    async fn fake_http(status: &'static str, body: String) -> (String, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
            );
            tcp.write_all(response.as_bytes()).await.unwrap();
            tcp.shutdown().await.unwrap();
        });
        (base, rx)
    }

    fn stats_json(members: u64) -> String {
        let event = ServerEvent::RoomStats(RoomStats {
            session_id: "owner/repo".into(),
            members,
            followers: 0,
            listeners: 1,
            leader_id: None,
        });
        encode_server_frame(&event, None, 1.0)
    }

    #[test]
    fn url_joins_base_and_session() {
        assert_eq!(
            sse_url("http://127.0.0.1:3001/", "owner/repo"),
            "http://127.0.0.1:3001/sse/owner/repo"
        );
    }

    #[tokio::test]
    async fn parses_events_skips_comments_and_sends_last_event_id() {
        let body = format!(
            ": keep-alive\n\nid: 7\ndata: {}\n\n:ping\n\nid: 8\ndata: {}\n\n",
            stats_json(1),
            stats_json(2)
        );
        let (base, head) = fake_http("200 OK", body).await;
        let mut sse = SseClient::connect(&base, "owner/repo", Some("6"))
            .await
            .unwrap();
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /sse/owner/repo http/1.1"), "{head}");
        assert!(head.contains("last-event-id: 6"), "{head}");
        assert_eq!(sse.last_event_id(), Some("6"));

        let first = sse.next_event(WAIT).await.unwrap().unwrap();
        assert_eq!(first.id.as_deref(), Some("7"));
        assert!(matches!(first.frame.event, ServerEvent::RoomStats(ref s) if s.members == 1));
        let second = sse.next_event(WAIT).await.unwrap().unwrap();
        assert_eq!(second.id.as_deref(), Some("8"));
        assert_eq!(sse.last_event_id(), Some("8"));
        assert!(sse.next_event(WAIT).await.unwrap().is_none());
        assert!(sse.next_event(WAIT).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bad_status_and_bad_data_are_errors() {
        let (base, _head) = fake_http("404 Not Found", String::new()).await;
        let err = SseClient::connect(&base, "nope", None).await.unwrap_err();
        assert!(
            matches!(err, ClientError::HttpStatus { status: 404, .. }),
            "{err}"
        );

        let (base, _head) = fake_http("200 OK", "data: {oops\n\n".into()).await;
        let mut sse = SseClient::connect(&base, "band", None).await.unwrap();
        let err = sse.next_event(WAIT).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Decode { ref text, .. } if text == "{oops"),
            "{err}"
        );
    }
}
