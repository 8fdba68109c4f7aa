//! What every HTTP request counts (`bandsync_http_*`), and the route templates it is counted
//! under.
//!
//! Error rates are not a counter of their own: `http_requests_total` carries the status
//! code, so the 5xx rate of a route is
//! `sum(rate(bandsync_http_requests_total{status=~"5.."}[5m])) by (route)` divided by the
//! same without the status filter. A second counter would say the same thing twice and could
//! drift from the first.
//!
//! Labels are bounded whatever clients send: the route is one of the templates of
//! [`route_label`] (`other` for everything unmatched, so a scanner walking random paths adds
//! one series, not one per path), the method one of nine (`OTHER` beyond), and the status is
//! a code the server itself chose.

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

/// Seconds from 100 µs (a static file or a health check) to 10 s (a render the test route
/// waits for).
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The `status` label of a request whose client went away before its response head was
/// ready (hyper dropped the handler's future).
pub const ABORTED: &str = "aborted";

pub struct HttpMetrics {
    /// Requests by route template, method and status (`aborted`: no response head).
    pub requests: IntCounterVec,
    /// Time from the request head to the response head; for SSE and repository streams
    /// that is until the stream starts, not its whole life.
    pub duration: HistogramVec,
    /// Requests whose response head is being prepared right now.
    pub in_flight: IntGauge,
}

impl HttpMetrics {
    pub fn new() -> Self {
        HttpMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "http_requests_total",
                    "HTTP requests by route template, method and status code (aborted: the client left before the response head)",
                ),
                &["route", "method", "status"],
            )
            .unwrap(),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time from the request head to the response head, by route template and method",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["route", "method"],
            )
            .unwrap(),
            in_flight: IntGauge::new(
                "http_requests_in_flight",
                "HTTP requests whose response head is being prepared",
            )
            .unwrap(),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.in_flight.clone()),
        ]
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `method` label: the nine standard methods, `OTHER` for extension methods (which a
/// client may invent without bound).
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Static files and fixed routes, matched exactly.
const EXACT: &[&str] = &[
    "/",
    "/app.js",
    "/style.css",
    "/health",
    "/metrics",
    "/metrics/history",
    "/alerts/stream",
    "/ws",
    "/ws/stream",
    "/socket.io/",
    "/api/share/start",
    "/webhooks/github",
    "/listen.js",
    "/listen.css",
    "/vendor/tone.js",
    "/overlay",
    "/overlay.js",
    "/overlay.css",
    "/operator",
    "/operator.js",
    "/operator.css",
    "/openapi.json",
];

/// The low-cardinality route template `path` is counted under: the route that serves it,
/// with its parameters as `{name}`, or `other`. `method` matters only where it picks the
/// route (`POST /stream/{repoId}/test` renders, `GET /stream/owner/test` listens to the
/// repository `owner/test`). No allocation: the answer is always a literal.
pub fn route_label(method: &http::Method, path: &str) -> &'static str {
    if let Some(known) = EXACT.iter().find(|known| **known == path) {
        return known;
    }
    if path == "/socket.io" {
        return "/socket.io/";
    }
    if path == "/sessions" || path.starts_with("/sessions/") {
        // The route takes the whole tail as the id (and answers 400 for a bad one).
        return "/sessions/{sessionId}";
    }
    if super::page_assets::is_module_path(path) {
        return "/js/{module}";
    }
    if path.starts_with("/sse/") {
        return "/sse/{sessionId}";
    }
    if path.starts_with("/health/repo/") {
        return "/health/repo/{repoId}";
    }
    if path == "/listen" || path.starts_with("/listen/") {
        return "/listen/{owner}/{name}";
    }
    if let Some(rest) = path.strip_prefix("/api/share/") {
        return share_route(rest);
    }
    if let Some(rest) = path.strip_prefix("/stream/") {
        if crate::repo::path::is_stream_manager(rest) {
            return stream_manager_route(rest);
        }
        let test = *method == http::Method::POST && rest.ends_with("/test");
        return if test {
            "/stream/{repoId}/test"
        } else {
            "/stream/{repoId}"
        };
    }
    "other"
}

/// `/api/share/{sessionId}/{action}`: one non-empty segment, then a known action.
fn share_route(rest: &str) -> &'static str {
    let Some((id, action)) = rest.split_once('/') else {
        return "other";
    };
    if id.is_empty() {
        return "other";
    }
    match action {
        "metadata" => "/api/share/{sessionId}/metadata",
        "audio" => "/api/share/{sessionId}/audio",
        "stop" => "/api/share/{sessionId}/stop",
        "status" => "/api/share/{sessionId}/status",
        _ => "other",
    }
}

/// The Stream Manager's routes (PROTOCOL.md section 17) by their segments after
/// `/stream/`; a path under one of its words that is no route is `other` (it answers 404).
fn stream_manager_route(rest: &str) -> &'static str {
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or_default();
    let second = segments.next();
    let third = segments.next();
    if segments.next().is_some() {
        return "other";
    }
    let id = |s: &str| !s.is_empty();
    match (first, second, third) {
        ("status", None, None) => "/stream/status",
        ("start", None, None) => "/stream/start",
        ("stop", None, None) => "/stream/stop",
        ("pause", None, None) => "/stream/pause",
        ("reset", None, None) => "/stream/reset",
        ("layers", None, None) => "/stream/layers",
        ("layers", Some(l), None) if id(l) => "/stream/layers/{id}",
        ("layers", Some(l), Some("visibility")) if id(l) => "/stream/layers/{id}/visibility",
        ("assets", None, None) => "/stream/assets",
        ("assets", Some("upload"), None) => "/stream/assets/upload",
        ("assets", Some(a), None) if id(a) => "/stream/assets/{id}",
        ("assets", Some(a), Some("content")) if id(a) => "/stream/assets/{id}/content",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
