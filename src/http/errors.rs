//! JSON error responses: `{"success": false, "error", "code", "timestamp"}`.
//!
//! The `timestamp` of an HTTP JSON body is whole epoch milliseconds (an integer): HTTP
//! clients read it into a 64-bit integer (the Music Share client's `long`, and
//! `System.Text.Json` refuses a fraction there). Only the WebSocket and SSE envelopes
//! carry sub-millisecond server time.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

/// The body type every route returns. Unsync: an SSE stream holds futures that are `Send`
/// but not `Sync`, and hyper needs only `Send`.
pub type Body =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub success: bool,
    pub error: &'a str,
    pub code: &'a str,
    /// Whole milliseconds: see the module's doc.
    pub timestamp: i64,
}

/// Server time with sub-millisecond precision, for the WebSocket and SSE envelopes.
pub fn now_ms() -> f64 {
    crate::clock::ServerClock::shared().now_ms()
}

/// Server time in whole milliseconds, for HTTP JSON bodies.
pub fn now_whole_ms() -> i64 {
    whole_ms(now_ms())
}

/// A server time (epoch ms, finite) as whole milliseconds, rounded down: the same instant
/// gives the same integer wherever it is reported (`timestamp` of a start, `startTime`).
pub fn whole_ms(ms: f64) -> i64 {
    ms.floor() as i64
}

pub fn error_json(code: &str, message: &str) -> String {
    serde_json::to_string(&ErrorBody {
        success: false,
        error: message,
        code,
        timestamp: now_whole_ms(),
    })
    .expect("error bodies always serialize")
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON error response for the routes served outside warp (`/ws`, `/sse/...`).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut response = Response::new(full(error_json(code, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
