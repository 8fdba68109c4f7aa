//! JSON error responses: `{"success": false, "error", "code", "timestamp"}`.

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
    pub timestamp: f64,
}

pub fn now_ms() -> f64 {
    crate::clock::ServerClock::shared().now_ms()
}

pub fn error_json(code: &str, message: &str) -> String {
    serde_json::to_string(&ErrorBody {
        success: false,
        error: message,
        code,
        timestamp: now_ms(),
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
