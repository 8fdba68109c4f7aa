//! The one error type of the client library.
//!
//! Outcomes a test or tool branches on (the server refused with a code, the connection was
//! closed with a code, a timeout) are variants with typed fields, so callers match on them
//! instead of parsing strings.
//!
//! Wrapped errors are shown with their whole cause chain in the message and are not
//! exposed as `source()`: reporters such as anyhow's `{:#}` would otherwise print every
//! cause twice, and a bare `{}` would hide the root cause ("connection refused").

use bandsync_protocol::ErrorCode;
use std::time::Duration;

/// Result alias used throughout the client library.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a bandsync server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL could not be used (wrong scheme, unparsable).
    #[error("invalid url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The WebSocket failed: handshake, I/O or protocol violation. Boxed because
    /// `tungstenite::Error` is large and would bloat every `Result` of this crate.
    #[error("websocket error: {}", chain(&**.0))]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),

    /// The HTTP request for an SSE stream failed, or the stream broke.
    #[error("http error: {}", chain(.0))]
    Http(reqwest::Error),

    /// The SSE endpoint answered with a non-success status.
    #[error("HTTP {status} from {url}")]
    HttpStatus { status: u16, url: String },

    /// The server refused an HTTP request with the contract's JSON error
    /// (`{"success":false,"error","code"}`), e.g. 400 `INVALID_PARAMS`, 503 `RENDER_BUSY`.
    #[error("HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },

    /// A message (or HTTP answer) past the client's size limit; the stream is ended.
    #[error("a message is larger than the {limit}-byte limit")]
    MessageTooLarge { limit: usize },

    /// The SSE byte stream was not valid UTF-8 or not valid `text/event-stream`.
    #[error("invalid SSE stream: {0}")]
    Sse(String),

    /// A server text frame (or SSE `data:`) that is not a known envelope. The connection
    /// is still usable; `text` is the frame as received.
    #[error("undecodable server frame ({error}): {text}")]
    Decode {
        text: String,
        error: serde_json::Error,
    },

    /// The server sent a binary frame; the protocol is text only.
    #[error("server sent a binary frame of {0} bytes; the protocol is text only")]
    UnexpectedBinary(usize),

    /// Nothing (or not the awaited frame) arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// The connection is closed. `code` is the close code the server sent, `None` when the
    /// connection ended without a close frame.
    #[error("connection closed (code {}): {reason}", display_code(*.code))]
    Closed { code: Option<u16>, reason: String },

    /// The server answered a request with an `error` event.
    #[error("server refused the request: {code}: {message}")]
    Server { code: ErrorCode, message: String },

    /// The server answered a request with `rate_limit_exceeded`.
    #[error("rate limited; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },

    /// A session token could not be minted (unusable key).
    #[error("cannot mint a token: {0}")]
    Token(String),

    /// The reply to a request was of an unexpected type.
    #[error("expected a `{expected}` reply, got `{got}`")]
    UnexpectedReply {
        expected: &'static str,
        got: &'static str,
    },
}

fn display_code(code: Option<u16>) -> String {
    code.map_or_else(|| "none".to_owned(), |c| c.to_string())
}

/// `error: cause: root cause`, skipping causes whose text the previous one already
/// contains (some libraries repeat their source in their own message).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

impl ClientError {
    /// The server's error code, when the server refused a request.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The close code, when the error is a closed connection.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ClientError::Closed { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout(_))
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_code() {
        let e = ClientError::Closed {
            code: Some(1008),
            reason: "rate limit".into(),
        };
        assert_eq!(e.to_string(), "connection closed (code 1008): rate limit");
        assert_eq!(e.close_code(), Some(1008));
        let e = ClientError::Server {
            code: ErrorCode::NotLeader,
            message: "only the leader may play".into(),
        };
        assert_eq!(e.error_code(), Some(ErrorCode::NotLeader));
        assert!(e.to_string().contains("NOT_LEADER"));
    }

    #[test]
    fn wrapped_errors_show_their_root_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ClientError::from(tokio_tungstenite::tungstenite::Error::Io(io));
        let text = e.to_string();
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn errors_stay_small() {
        // Every `Result` in the crate carries this; keep it within clippy's
        // `result_large_err` threshold.
        assert!(std::mem::size_of::<ClientError>() <= 64);
    }
}
