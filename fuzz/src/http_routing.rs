//! Target: HTTP routing of every API: the whole HTTP service (router, `/ws` upgrade,
//! `/sse/...`, warp's page, health, metrics and session routes, the share API, CORS and
//! security headers) fed one arbitrary HTTP/1.1 request as raw bytes, on a fresh server.
//!
//! Beyond "no panic": a request that parses as HTTP/1.x gets an HTTP response (hyper's own
//! 400 for what it refuses before routing); every error our service answers is the
//! contract's JSON error, and it answers no 5xx but 503 (server full, shutting down, or an
//! unhealthy `/health`, whose body is the health report).

use super::harness::{NoReply, Server};

/// Serves `data` as one request and checks the answer.
pub fn check(data: &[u8]) {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    let parsed = matches!(request.parse(data), Ok(httparse::Status::Complete(_)));
    // hyper refuses some Transfer-Encoding values by closing the connection without an
    // answer; that is hyper's framing, before any of our code runs (a panic of ours is
    // caught by the harness, not seen as a close).
    let framing = request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let path = request.path.unwrap_or_default().to_owned();
    let server = Server::start();
    let reply = match server.exchange(data) {
        Ok(reply) => reply,
        // h2's preface or bytes that are no request at all may go unanswered.
        Err(NoReply::Closed | NoReply::Garbled) if !parsed => return,
        Err(NoReply::Closed) if framing => return,
        Err(e) => panic!("no answer ({e:?}) to {:?}", String::from_utf8_lossy(data)),
    };
    if !reply.made_by_service() {
        return;
    }
    let context = format!("{:?}", String::from_utf8_lossy(data));
    assert!(
        reply.status < 500 || reply.status == 503,
        "{context}: status {}",
        reply.status
    );
    let health = path == "/health" || path.starts_with("/health?");
    if reply.status >= 400 && !health {
        reply.assert_json_error(&context);
    }
}
