//! The Music Share REST API (`/api/share/...`) over real HTTP, black-box: the seed's
//! routes, bodies and status codes (200, 204, 400, 401, 404, 409, 413, 429, 503), the
//! error format `{"success": false, "error", "code", "timestamp"}`, the bearer token, the
//! session cap, size and rate limits, the circular audio buffer, metadata expiry, the
//! inactivity timeout, the "ended" retention, listener counting, and the seed's client
//! flow end to end.
//!
//! Fixed durations (timeout, TTL, retention) are shortened through the configuration;
//! waits are bounded and generous, and only lower bounds that follow from the server's
//! rules are asserted, never latency.

mod common;
mod share_support;

use common::TestServer;
use reqwest::Method;
use serde_json::{json, Value};
use share_support::*;
use std::time::Duration;
use tokio::time::{sleep, Instant};

const ID: &str = "123456";
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_missing_or_wrong_token_with_401() {
    // This test is about the answer to each wrong token, not the ban that many of them
    // earn (tests/auth_limits.rs): a limit this high never bans.
    let server = share_server(|c| c.limits.auth_failure_limit = 100_000).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    let wrong = [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer Wrong"),
        Some("Token"),
        Some("bearer Token"),
        Some("Bearer Tokem"),
        Some("Basic QmVhcmVyOlRva2Vu"),
    ];
    // "999999" for start: it would succeed with the right token.
    for id in [ID, "999999"] {
        for route in every_route(id) {
            for auth in wrong {
                let reply = call(&api.auth(auth), &route).await;
                let body = reply.error(401, "UNAUTHORIZED");
                assert!(
                    reply.retry_after.is_none(),
                    "{}: 401 with retry-after",
                    reply.what
                );
                assert_eq!(
                    body.as_object().unwrap().len(),
                    4,
                    "{} with {auth:?}: exactly the error format: {body}",
                    reply.what
                );
            }
        }
    }

    // Nothing the refused requests asked for happened.
    let status = api.status(ID).await.ok();
    assert_eq!(
        status["isActive"],
        json!(true),
        "refused stop ended it: {status}"
    );
    assert_eq!(status["currentMetadata"], Value::Null, "{status}");
    api.get_metadata(ID).await.error(404, "NO_METADATA");
    api.poll(ID, -1).await.no_content();
    api.status("999999").await.error(404, "SESSION_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_the_id_the_session_and_the_body() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    let anonymous = api.auth(None);
    // Bad ids, unknown sessions and bad bodies are all 401 without the token.
    for id in ["12345", "abcdef", "1234567", "654321"] {
        for route in every_route(id) {
            call(&anonymous, &route).await.error(401, "UNAUTHORIZED");
        }
    }
    anonymous
        .post_raw("/api/share/start", "not json")
        .await
        .error(401, "UNAUTHORIZED");
    api.start_ok(ID).await;
    anonymous
        .post_raw(&path(ID, "audio"), r#"{"data": "%%%"}"#)
        .await
        .error(401, "UNAUTHORIZED");
    anonymous
        .get(&format!("{}?since=abc", path(ID, "audio")))
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_configured_value_is_the_header() {
    // The seed's client sends its configured `BearerToken` as the whole header value.
    let server = share_server(|_| {}).await;
    let api = Api::with_auth(&server, Some("Bearer Token"));
    // start, post metadata, post audio, stop, status: all accepted; after the stop, the
    // receiver routes report the session ended.
    let expected = [200, 200, 200, 200, 200, 404, 404];
    for (route, status) in every_route(ID).iter().zip(expected) {
        let reply = call(&api, route).await;
        if status == 404 {
            reply.error(404, "SESSION_ENDED");
        } else {
            reply.ok();
        }
    }
    let status = api.status(ID).await.ok();
    assert_eq!(
        status["status"],
        json!("ended"),
        "the stop went through: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_configured_token_is_sent_with_the_bearer_scheme() {
    let server = TestServer::start_with(|c| c.share.bearer_token = Some("s3cret".into())).await;
    let api = Api::with_auth(&server, Some("Bearer s3cret"));
    api.start_ok(ID).await;
    api.post_metadata(ID, &seed_metadata("A", 1.0)).await.ok();
    api.post_audio_ok(ID, &chunk(0, 8, 1, &tiny_samples(0, 2)))
        .await;
    assert_eq!(api.poll(ID, -1).await.sequences(), vec![0]);
    api.get_metadata(ID).await.ok();
    assert_eq!(api.status(ID).await.ok()["isActive"], json!(true));
    // The bare value itself is the configured value, so it is accepted too.
    Api::with_auth(&server, Some("s3cret"))
        .status(ID)
        .await
        .ok();
    for wrong in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "bearer s3cret",
        "Bearer  s3cret",
        "Bearer Token",
        "Bearers3cret",
    ] {
        Api::with_auth(&server, Some(wrong))
            .status(ID)
            .await
            .error(401, "UNAUTHORIZED");
    }
    api.stop(ID).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_the_share_api_answers_401() {
    for configured in [None, Some(String::new())] {
        let server = TestServer::start_with(|c| c.share.bearer_token = configured.clone()).await;
        for auth in [Some(TOKEN), Some("Bearer "), Some(""), None] {
            let api = Api::with_auth(&server, auth);
            for route in every_route(ID) {
                call(&api, &route).await.error(401, "UNAUTHORIZED");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Session ids, start, conflicts, the cap
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_must_be_exactly_six_digits() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    for bad in [
        "12345",
        "1234567",
        "abcdef",
        "12a456",
        "12345 ",
        "-12345",
        "",
        "０１２３４５",
    ] {
        api.start(bad).await.error(400, "INVALID_SESSION_ID");
    }
    // In the path (letters, 5 and 7 digits), on every route that takes one.
    for bad in ["12345", "abcdef", "1234567", "12a456"] {
        for route in every_route(bad).into_iter().skip(1) {
            call(&api, &route).await.error(400, "INVALID_SESSION_ID");
        }
    }
    // Start bodies that are not `{"sessionId": "<string>"}`.
    for body in [
        "not json",
        "{}",
        r#"{"sessionId": 123456}"#,
        r#"{"sessionId": null}"#,
        "[]",
    ] {
        api.post_raw("/api/share/start", body)
            .await
            .error(400, "INVALID_REQUEST");
    }
    // None of those created anything; leading zeros are digits like any other.
    api.status("012345").await.error(404, "SESSION_NOT_FOUND");
    api.start_ok("000000").await;
    api.start_ok("012345").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sessions_are_404_on_every_session_route() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    for route in every_route(ID).into_iter().skip(1) {
        call(&api, &route).await.error(404, "SESSION_NOT_FOUND");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_id_conflicts_until_it_is_stopped() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    let started = api.start_ok(ID).await;

    let status = api.status(ID).await.ok();
    assert_eq!(status["isActive"], json!(true), "{status}");
    assert_eq!(status["status"], json!("active"), "{status}");
    assert_eq!(status["listenerCount"], json!(0), "{status}");
    assert_eq!(status["currentMetadata"], Value::Null, "{status}");
    let start_time = status["startTime"].as_f64().expect("startTime");
    let timestamp = started["timestamp"].as_f64().unwrap();
    assert!(
        (start_time - timestamp).abs() < 1.0,
        "{status} vs {started}"
    );

    let conflict = api.start(ID).await.error(409, "SESSION_CONFLICT");
    assert_eq!(conflict["error"], json!("Session ID already in use"));
    // From another client too, and the session is untouched.
    Api::new(&server)
        .start(ID)
        .await
        .error(409, "SESSION_CONFLICT");
    api.post_metadata(ID, &seed_metadata("Kept", 1.0))
        .await
        .ok();
    api.start(ID).await.error(409, "SESSION_CONFLICT");
    assert_eq!(api.get_metadata(ID).await.ok()["title"], json!("Kept"));

    api.stop(ID).await.ok();
    let restarted = api.start_ok(ID).await;
    assert!(restarted["timestamp"].as_f64().unwrap() >= timestamp);
    let status = api.status(ID).await.ok();
    assert_eq!(status["isActive"], json!(true), "{status}");
    assert_eq!(status["status"], json!("active"), "{status}");
    // A fresh session: no metadata, no audio from the first one.
    assert_eq!(status["currentMetadata"], Value::Null, "{status}");
    api.get_metadata(ID).await.error(404, "NO_METADATA");
    api.poll(ID, -1).await.no_content();
    api.start(ID).await.error(409, "SESSION_CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cap_answers_503_and_frees_on_stop() {
    // Two addresses, two sessions each at most: together they reach the cap of 3.
    let server = share_server(|c| {
        c.share.max_share_sessions = 3;
        c.limits.share_sessions_per_ip = 2;
    })
    .await;
    let api = Api::from_source(&server, [127, 0, 0, 1].into());
    let other = Api::from_source(&server, [127, 0, 0, 2].into());
    api.start_ok("100001").await;
    api.start_ok("100002").await;
    other.start_ok("100003").await;
    let full = other.start("100004").await.error(503, "SESSION_LIMIT");
    assert!(full["error"].as_str().unwrap().contains('3'), "{full}");
    api.status("100004").await.error(404, "SESSION_NOT_FOUND");
    // An active id is still a conflict, not the cap.
    api.start("100002").await.error(409, "SESSION_CONFLICT");
    // A bad id is still a 400.
    api.start("1").await.error(400, "INVALID_SESSION_ID");

    api.stop("100002").await.ok();
    // The ended session (still reported "ended") does not count.
    assert_eq!(api.status("100002").await.ok()["status"], json!("ended"));
    other.start_ok("100004").await;
    api.start("100005").await.error(503, "SESSION_LIMIT");
    // Restarting the ended id needs a free slot like any other.
    api.start("100002").await.error(503, "SESSION_LIMIT");
    api.stop("100001").await.ok();
    api.start_ok("100002").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_cap_is_fifty_sessions() {
    let server = share_server(|_| {}).await;
    // One address starts at most SHARE_SESSIONS_PER_IP (5): fifty take ten addresses.
    for n in 0..50u8 {
        let api = Api::from_source(&server, [127, 0, 0, 10 + n / 5].into());
        api.start_ok(&format!("{:06}", 200_000 + u32::from(n)))
            .await;
    }
    Api::from_source(&server, [127, 0, 0, 99].into())
        .start("299999")
        .await
        .error(503, "SESSION_LIMIT");
}

// ---------------------------------------------------------------------------------------
// Sizes and bodies
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_chunks_are_at_most_one_mebibyte_decoded() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    // Exactly 1 MiB of stereo float32 is accepted, and comes back whole.
    let full: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let accepted = api
        .post_large(&path(ID, "audio"), json_bytes(&chunk(0, 44_100, 2, &full)))
        .await
        .ok();
    assert_eq!(accepted, json!({"success": true, "buffered": true}));
    let polled = api.poll(ID, -1).await.chunks();
    assert_eq!(polled.len(), 1);
    assert_eq!(unb64(polled[0]["data"].as_str().unwrap()), full);

    // One frame more, a mono sample more, and twice the limit: 413.
    let route = path(ID, "audio");
    for (channels, len) in [(2u16, MIB + 8), (1, MIB + 4), (2, 2 * MIB)] {
        let big = json_bytes(&chunk(1, 44_100, channels, &vec![0u8; len]));
        api.post_large(&route, big.clone())
            .await
            .error(413, "PAYLOAD_TOO_LARGE");
        // Without the token the same request is refused as unauthorized, not as too large.
        for auth in [None, Some("Bearer Wrong")] {
            api.auth(auth)
                .post_large(&route, big.clone())
                .await
                .error(401, "UNAUTHORIZED");
        }
    }
    // None of them was buffered or counted.
    api.poll(ID, 0).await.no_content();
    let stopped = api.stop(ID).await.ok();
    assert_eq!(stopped["bytesTransferred"], json!(MIB), "{stopped}");
}

/// Expects one of `allowed` (status, code), in the error format.
#[track_caller]
fn error_among(reply: &Reply, allowed: &[(u16, &str)]) {
    match allowed.iter().find(|(status, _)| *status == reply.status) {
        Some((status, code)) => {
            reply.error(*status, code);
        }
        None => panic!(
            "{}: expected one of {allowed:?}, got {} with {}",
            reply.what,
            reply.status,
            reply.text()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_far_over_the_limits_are_413_never_another_error() {
    // Far beyond what any share route reads, the server may refuse from Content-Length
    // alone, even before the token check (413), or check the token first (401).
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    let huge_metadata = metadata_of_size(6 * MIB, "Huge");
    let huge_chunk = json_bytes(&chunk(0, 44_100, 2, &vec![0u8; 4 * MIB]));
    let giant_chunk = json_bytes(&chunk(0, 44_100, 2, &vec![0u8; 48 * MIB]));
    for (what, body) in [
        ("metadata", huge_metadata),
        ("audio", huge_chunk),
        ("audio", giant_chunk),
    ] {
        let route = path(ID, what);
        api.post_large(&route, body.clone())
            .await
            .error(413, "PAYLOAD_TOO_LARGE");
        for auth in [None, Some("Bearer Wrong")] {
            let reply = api.auth(auth).post_large(&route, body.clone()).await;
            error_among(&reply, &[(401, "UNAUTHORIZED"), (413, "PAYLOAD_TOO_LARGE")]);
        }
    }
    api.get_metadata(ID).await.error(404, "NO_METADATA");
    api.poll(ID, -1).await.no_content();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_are_read_or_refused_with_411() {
    // HTTP/1.1 lets a client send its body chunked, without Content-Length (streaming
    // clients such as .NET's PostAsJsonAsync do). A server may read it, or refuse it
    // with 411 Length Required; any other answer misleads the client.
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    let anonymous = api
        .auth(None)
        .post_chunked("/api/share/start", &json!({ "sessionId": ID }))
        .await;
    error_among(
        &anonymous,
        &[(401, "UNAUTHORIZED"), (411, "LENGTH_REQUIRED")],
    );

    let started = api
        .post_chunked("/api/share/start", &json!({ "sessionId": ID }))
        .await;
    if started.status == 411 {
        started.error(411, "LENGTH_REQUIRED");
        api.start_ok(ID).await;
        for what in ["metadata", "audio"] {
            let body = chunk(0, 8, 1, &tiny_samples(0, 2));
            let reply = api.post_chunked(&path(ID, what), &body).await;
            reply.error(411, "LENGTH_REQUIRED");
        }
        return;
    }
    assert_eq!(started.ok()["success"], json!(true));
    let metadata = seed_metadata("Chunked", 1.0);
    api.post_chunked(&path(ID, "metadata"), &metadata)
        .await
        .ok();
    let audio = chunk(0, 8, 1, &tiny_samples(0, 2));
    api.post_chunked(&path(ID, "audio"), &audio).await.ok();
    assert_eq!(api.get_metadata(ID).await.ok(), metadata);
    assert_eq!(api.poll(ID, -1).await.sequences(), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_a_body_is_400_or_401_not_405() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    // No body and no Content-Length: a zero-length body (RFC 9112 6.3), so not valid
    // JSON. 411 is tolerated (a server may insist on Content-Length); 405 is wrong.
    let routes = [
        "/api/share/start".to_owned(),
        path(ID, "metadata"),
        path(ID, "audio"),
    ];
    for route in &routes {
        let reply = api.send(Method::POST, route, None).await;
        error_among(
            &reply,
            &[(400, "INVALID_REQUEST"), (411, "LENGTH_REQUIRED")],
        );
        let reply = api.auth(None).send(Method::POST, route, None).await;
        error_among(&reply, &[(401, "UNAUTHORIZED"), (411, "LENGTH_REQUIRED")]);
    }
    // An explicit `Content-Length: 0` is an empty body, which is not valid JSON.
    for route in &routes {
        let reply = api
            .send_with_header(Method::POST, route, ("content-length", "0"))
            .await;
        reply.error(400, "INVALID_REQUEST");
        let reply = api
            .auth(None)
            .send_with_header(Method::POST, route, ("content-length", "0"))
            .await;
        reply.error(401, "UNAUTHORIZED");
    }
}

/// A metadata body of exactly `total` bytes: a big `thumbnailData`.
fn metadata_of_size(total: usize, title: &str) -> Vec<u8> {
    let prefix = format!(r#"{{"title":"{title}","artist":"Artist Name","thumbnailData":""#);
    let suffix = r#""}"#;
    let mut body = prefix.into_bytes();
    body.resize(total - suffix.len(), b'A');
    body.extend_from_slice(suffix.as_bytes());
    assert_eq!(body.len(), total);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_at_most_five_mebibytes() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    let exact = metadata_of_size(5 * MIB, "Big");
    let posted = api
        .post_large(&path(ID, "metadata"), exact.clone())
        .await
        .ok();
    assert_eq!(posted["success"], json!(true), "{posted}");
    let expected: Value = serde_json::from_slice(&exact).unwrap();
    assert_eq!(api.get_metadata(ID).await.ok(), expected);

    for len in [5 * MIB + 1, 5 * MIB + 1000] {
        let over = metadata_of_size(len, "Too big");
        api.post_large(&path(ID, "metadata"), over.clone())
            .await
            .error(413, "PAYLOAD_TOO_LARGE");
        // Without the token: unauthorized, not too large.
        for auth in [None, Some("Bearer Nope")] {
            api.auth(auth)
                .post_large(&path(ID, "metadata"), over.clone())
                .await
                .error(401, "UNAUTHORIZED");
        }
    }
    // The 5 MiB one is still current.
    let current = api.get_metadata(ID).await.ok();
    assert_eq!(current["title"], json!("Big"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_audio_and_metadata_are_400() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    let stereo_frame = pcm(&[0.25, -0.25]);
    let mut bad_chunks = vec![
        // Not base64.
        json!({"data": "not base64!", "sampleRate": 44100, "channels": 2, "timestamp": TS0, "sequenceNumber": 1}),
        json!({"data": "AAAA=AAA", "sampleRate": 44100, "channels": 2, "timestamp": TS0, "sequenceNumber": 1}),
        // Missing or mistyped fields.
        json!({"sampleRate": 44100, "channels": 2, "timestamp": TS0, "sequenceNumber": 1}),
        json!({"data": b64(&stereo_frame), "channels": 2, "timestamp": TS0, "sequenceNumber": 1}),
        json!({"data": b64(&stereo_frame), "sampleRate": "44100", "channels": 2, "timestamp": TS0, "sequenceNumber": 1}),
        json!({"data": b64(&stereo_frame), "sampleRate": 44100, "channels": 2, "timestamp": TS0}),
        json!([1, 2, 3]),
    ];
    // Bad sample rates and channel counts.
    for (rate, channels) in [
        (0i64, 2i64),
        (-44100, 2),
        (384_001, 2),
        (44100, 0),
        (44100, 33),
        (44100, -1),
    ] {
        bad_chunks.push(json!({
            "data": b64(&stereo_frame), "sampleRate": rate, "channels": channels,
            "timestamp": TS0, "sequenceNumber": 1,
        }));
    }
    // Samples that are not whole frames: 3 floats in stereo, 5 bytes in mono, 2 floats in 3 channels.
    bad_chunks.push(chunk(1, 44_100, 2, &pcm(&[0.1, 0.2, 0.3])));
    bad_chunks.push(chunk(1, 44_100, 1, &[0, 0, 128, 63, 7]));
    bad_chunks.push(chunk(1, 44_100, 3, &pcm(&[0.1, 0.2])));
    for body in &bad_chunks {
        let reply = api.post_audio(ID, body).await;
        assert_eq!(
            reply.status,
            400,
            "{body}: {} {}",
            reply.status,
            reply.text()
        );
        reply.error(400, "INVALID_REQUEST");
    }
    for raw in ["not json", "{\"data\": "] {
        api.post_raw(&path(ID, "audio"), raw)
            .await
            .error(400, "INVALID_REQUEST");
    }

    // Metadata must be a JSON object.
    for raw in ["not json", "[1,2]", "\"title\"", "{\"title\": "] {
        api.post_raw(&path(ID, "metadata"), raw)
            .await
            .error(400, "INVALID_REQUEST");
    }

    // `since` must be an integer.
    for since in ["abc", "1.5", "", "9999999999999999999999"] {
        api.get(&format!("{}?since={since}", path(ID, "audio")))
            .await
            .error(400, "INVALID_REQUEST");
    }
    // Nor may it appear twice (found by schemathesis: warp's own query parsing turned this
    // into a 405 from the neighbouring POST route).
    for query in ["since=1&since=2", "since=null&since=null"] {
        api.get(&format!("{}?{query}", path(ID, "audio")))
            .await
            .error(400, "INVALID_REQUEST");
    }
    // Other parameters are ignored.
    api.get(&format!("{}?since=-1&x=1", path(ID, "audio")))
        .await
        .no_content();

    // Nothing was stored or counted.
    api.poll(ID, -1).await.no_content();
    api.get_metadata(ID).await.error(404, "NO_METADATA");
    let stopped = api.stop(ID).await.ok();
    assert_eq!(stopped["bytesTransferred"], json!(0), "{stopped}");

    // The edges of the valid ranges are accepted (on a fresh session, whatever the
    // refused requests did to this one's rate limit).
    api.start_ok("654321").await;
    api.post_audio_ok("654321", &chunk(1, 1, 1, &pcm(&[0.5])))
        .await;
    api.post_audio_ok("654321", &chunk(2, 384_000, 32, &pcm(&[0.5; 32])))
        .await;
    assert_eq!(api.poll("654321", -1).await.sequences(), vec![1, 2]);
}

// ---------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------

/// `Retry-After` of a 429: whole seconds, at least 1.
#[track_caller]
fn retry_after_secs(reply: &Reply) -> u64 {
    let value = reply
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{}: 429 without Retry-After", reply.what));
    let secs: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("{}: Retry-After {value:?} is not whole seconds", reply.what));
    assert!(
        (1..=5).contains(&secs),
        "{}: Retry-After {secs}",
        reply.what
    );
    secs
}

/// Accepted requests in a back-to-back burst: at least the per-second limit (the burst),
/// and no more than what the limit allows in the time the burst took.
#[track_caller]
fn assert_burst(accepted: u64, limit: u64, took: Duration) {
    let allowed = limit + (took.as_secs_f64() * limit as f64).ceil() as u64 + 1;
    assert!(
        (limit..=allowed).contains(&accepted),
        "{accepted} accepted in {took:?} at {limit}/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_limited_to_two_per_second_per_session() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    api.start_ok("654321").await;

    let (accepted, refused, took) = burst_until_429(200, |i| {
        let api = api.clone();
        async move {
            api.post_metadata(ID, &seed_metadata(&format!("burst {i}"), i as f64))
                .await
        }
    })
    .await;
    assert_burst(accepted, 2, took);
    let body = refused.error(429, "RATE_LIMITED");
    assert!(
        body["error"].as_str().unwrap().contains("metadata"),
        "{body}"
    );
    let wait = retry_after_secs(&refused);

    // The refused update was not stored: the last accepted one is current.
    let current = api.get_metadata(ID).await.ok();
    assert_eq!(current["title"], json!(format!("burst {}", accepted - 1)));
    // Per session and per kind: another session's metadata and this session's audio pass.
    api.post_metadata("654321", &seed_metadata("other", 0.0))
        .await
        .ok();
    api.post_audio_ok(ID, &chunk(0, 8, 1, &tiny_samples(0, 2)))
        .await;
    // Reads are not limited.
    for _ in 0..10 {
        api.get_metadata(ID).await.ok();
    }

    sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    api.post_metadata(ID, &seed_metadata("after the wait", 9.0))
        .await
        .ok();
    assert_eq!(
        api.get_metadata(ID).await.ok()["title"],
        json!("after the wait")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_limited_to_ten_per_second_per_session() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    api.start_ok("654321").await;

    let (accepted, refused, took) = burst_until_429(500, |i| {
        let api = api.clone();
        async move {
            api.post_audio(ID, &chunk(i as i64, 8, 1, &tiny_samples(i as i64, 1)))
                .await
        }
    })
    .await;
    assert_burst(accepted, 10, took);
    let body = refused.error(429, "RATE_LIMITED");
    assert!(body["error"].as_str().unwrap().contains("audio"), "{body}");
    let wait = retry_after_secs(&refused);

    // The refused chunk was not buffered.
    let refused_seq = accepted as i64;
    let mut seen = Vec::new();
    let mut since = -1;
    while let reply @ Reply { status: 200, .. } = api.poll(ID, since).await {
        let seqs = reply.sequences();
        since = *seqs.last().unwrap();
        seen.extend(seqs);
    }
    assert_eq!(seen, (0..refused_seq).collect::<Vec<_>>());
    // Per session and per kind.
    api.post_audio_ok("654321", &chunk(0, 8, 1, &tiny_samples(0, 1)))
        .await;
    api.post_metadata(ID, &seed_metadata("still fine", 0.0))
        .await
        .ok();
    // Polling is not limited.
    for _ in 0..20 {
        api.poll(ID, since).await.no_content();
    }

    sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    api.post_audio_ok(ID, &chunk(refused_seq, 8, 1, &tiny_samples(refused_seq, 1)))
        .await;
    assert_eq!(api.poll(ID, since).await.sequences(), vec![refused_seq]);
    let stopped = api.stop(ID).await.ok();
    assert_eq!(
        stopped["bytesTransferred"],
        json!((refused_seq + 1) * 4),
        "{stopped}"
    );
}

// ---------------------------------------------------------------------------------------
// The audio buffer and polling
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_chunks_have_the_seed_shape_and_round_trip_byte_exactly() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    // The seed's chunk: ~4096 interleaved stereo samples at 44.1 kHz.
    let music: Vec<f32> = (0..4096).map(|i| (i as f32 * 0.01).sin()).collect();
    // Bit patterns a float round trip would lose: NaN payloads, -0, subnormals.
    let odd = [
        f32::from_bits(0x7fc0_1234),
        -0.0,
        f32::from_bits(1),
        f32::MAX,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ];
    let posted = vec![
        chunk(41, 44_100, 2, &pcm(&music)),
        chunk(42, 48_000, 2, &pcm(&odd)),
        chunk(43, 22_050, 1, &pcm(&[0.125, -1.0, 1.0])),
    ];
    for body in &posted {
        api.post_audio_ok(ID, body).await;
    }

    let reply = api.poll(ID, -1).await;
    let polled = reply.chunks();
    assert_eq!(polled.len(), posted.len());
    for (got, sent) in polled.iter().zip(&posted) {
        let mut keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "channels",
                "data",
                "sampleRate",
                "sequenceNumber",
                "timestamp"
            ],
            "{got:.200}"
        );
        assert_eq!(got["data"], sent["data"], "base64 text as posted");
        assert_eq!(
            unb64(got["data"].as_str().unwrap()),
            unb64(sent["data"].as_str().unwrap())
        );
        for key in ["sampleRate", "channels", "sequenceNumber"] {
            assert_eq!(got[key], sent[key], "{key}");
        }
        assert_eq!(
            got["timestamp"].as_f64(),
            sent["timestamp"].as_f64(),
            "timestamp"
        );
    }
    assert_eq!(unb64(polled[1]["data"].as_str().unwrap()), pcm(&odd));

    // `since` is exclusive; no `since` is the start; nothing newer is 204.
    assert_eq!(api.poll(ID, 41).await.sequences(), vec![42, 43]);
    assert_eq!(api.poll(ID, 0).await.sequences(), vec![41, 42, 43]);
    assert_eq!(
        api.get(&path(ID, "audio")).await.sequences(),
        vec![41, 42, 43]
    );
    api.poll(ID, 43).await.no_content();
    api.poll(ID, 1_000_000).await.no_content();
    // Polling delivers to everyone: the chunks are still there for another poller.
    assert_eq!(
        Api::new(&server).poll(ID, -1).await.sequences(),
        vec![41, 42, 43]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_chunk_timestamps_come_back_as_posted() {
    // The seed's sharer sends `timestamp` as integer epoch milliseconds (`long`); a
    // receiver deserializing the poll into the same model needs an integer back.
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    api.post_audio_ok(ID, &chunk(0, 8, 1, &tiny_samples(0, 2)))
        .await;
    let reply = api.poll(ID, -1).await;
    let polled = reply.chunks();
    assert_eq!(
        polled[0]["timestamp"].as_i64(),
        Some(TS0),
        "the posted integer timestamp {TS0} came back as {} in {}",
        polled[0]["timestamp"],
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_holds_five_seconds_and_wraps_around() {
    // Default AUDIO_BUFFER_SECONDS (5) and audio rate (10/s): eight 1-second chunks (mono,
    // 8 Hz, 8 frames = 32 bytes each) leave the last five.
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    for seq in 0..8 {
        api.post_audio_ok(ID, &chunk(seq, 8, 1, &tiny_samples(seq, 8)))
            .await;
    }
    let reply = api.poll(ID, -1).await;
    assert_eq!(reply.sequences(), vec![3, 4, 5, 6, 7], "the newest 5 s");
    for got in reply.chunks() {
        let seq = got["sequenceNumber"].as_i64().unwrap();
        assert_eq!(unb64(got["data"].as_str().unwrap()), tiny_samples(seq, 8));
    }
    // The overwritten sequences are gone: asking after them starts at the oldest kept.
    assert_eq!(api.poll(ID, 0).await.sequences(), vec![3, 4, 5, 6, 7]);
    assert_eq!(api.poll(ID, 2).await.sequences(), vec![3, 4, 5, 6, 7]);
    assert_eq!(api.poll(ID, 5).await.sequences(), vec![6, 7]);
    api.poll(ID, 7).await.no_content();
    // Everything counts as transferred, kept or not.
    let stopped = api.stop(ID).await.ok();
    assert_eq!(stopped["bytesTransferred"], json!(8 * 32), "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_returns_at_most_ten_newer_chunks() {
    // Many short chunks, so the audio rate is raised for this test only: 40 quarter-second
    // chunks (mono, 8 Hz, 2 frames) are 10 s; the 5 s buffer keeps the last 20.
    let server = share_server(|c| c.share.share_audio_rate = 10_000).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    for seq in 0..40 {
        api.post_audio_ok(ID, &chunk(seq, 8, 1, &tiny_samples(seq, 2)))
            .await;
    }
    assert_eq!(
        api.poll(ID, -1).await.sequences(),
        (20..30).collect::<Vec<_>>()
    );
    assert_eq!(
        api.poll(ID, 29).await.sequences(),
        (30..40).collect::<Vec<_>>()
    );
    assert_eq!(
        api.poll(ID, 24).await.sequences(),
        (25..35).collect::<Vec<_>>()
    );
    assert_eq!(api.poll(ID, 35).await.sequences(), vec![36, 37, 38, 39]);
    assert_eq!(
        api.poll(ID, 5).await.sequences(),
        (20..30).collect::<Vec<_>>(),
        "sequences 0..20 were overwritten"
    );
    api.poll(ID, 39).await.no_content();

    // A receiver paging with `since` = the last sequence it got sees each chunk once.
    let mut got = Vec::new();
    let mut since = -1;
    loop {
        let reply = api.poll(ID, since).await;
        if reply.status == 204 {
            break;
        }
        let seqs = reply.sequences();
        assert!(seqs.len() <= 10);
        for chunk in reply.chunks() {
            let seq = chunk["sequenceNumber"].as_i64().unwrap();
            assert_eq!(unb64(chunk["data"].as_str().unwrap()), tiny_samples(seq, 2));
        }
        since = *seqs.last().unwrap();
        got.extend(seqs);
    }
    assert_eq!(got, (20..40).collect::<Vec<_>>());

    // The buffer keeps wrapping as audio keeps coming.
    for seq in 40..50 {
        api.post_audio_ok(ID, &chunk(seq, 8, 1, &tiny_samples(seq, 2)))
            .await;
    }
    assert_eq!(
        api.poll(ID, -1).await.sequences(),
        (30..40).collect::<Vec<_>>()
    );
    assert_eq!(
        api.poll(ID, 39).await.sequences(),
        (40..50).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_round_trips_and_expires_after_its_ttl() {
    // 3 s, not less: the reads right after the post must come before it expires, and a
    // busy 2-core machine has stalled a test for over a second (1.5 s used to flake).
    const TTL: Duration = Duration::from_millis(3000);
    let server = share_server(|c| c.share.share_metadata_ttl_ms = TTL.as_millis() as u64).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    let mut metadata = seed_metadata("Song Title", 45.2);
    metadata["thumbnailData"] = json!(b64(b"\xff\xd8\xff\xe0 not really a jpeg"));
    metadata["extra"] = json!({"nested": [1, 2.5, "three", null]});
    let posted_at = Instant::now();
    let answer = api.post_metadata(ID, &metadata).await.ok();
    assert_eq!(answer, json!({"success": true, "listenersNotified": 0}));

    let got = api.get_metadata(ID).await;
    assert_eq!(got.ok(), metadata, "as posted");
    let status = api.status(ID).await.ok();
    assert_eq!(
        status["currentMetadata"],
        json!({"title": "Song Title", "artist": "Artist Name"}),
        "{status}"
    );

    let expired = eventually("metadata to expire", TTL + WAIT, || {
        let api = api.clone();
        async move {
            let reply = api.get_metadata(ID).await;
            (reply.status == 404).then_some(reply)
        }
    })
    .await;
    assert!(posted_at.elapsed() >= TTL, "expired before its TTL");
    expired.error(404, "NO_METADATA");
    // The status forgets it too, and the session itself lives on.
    eventually("status to drop the expired metadata", WAIT, || {
        let api = api.clone();
        async move {
            let status = api.status(ID).await.ok();
            assert_eq!(status["isActive"], json!(true), "{status}");
            status["currentMetadata"].is_null().then_some(())
        }
    })
    .await;

    // A new update is current again.
    api.post_metadata(ID, &seed_metadata("Next Song", 0.0))
        .await
        .ok();
    assert_eq!(api.get_metadata(ID).await.ok()["title"], json!("Next Song"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_metadata_replaces_the_previous() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    api.post_metadata(ID, &seed_metadata("First", 1.0))
        .await
        .ok();
    let second = json!({"title": "Second", "elapsedSeconds": 2.0});
    api.post_metadata(ID, &second).await.ok();
    assert_eq!(api.get_metadata(ID).await.ok(), second);
    let status = api.status(ID).await.ok();
    assert_eq!(
        status["currentMetadata"],
        json!({"title": "Second", "artist": null}),
        "{status}"
    );
}

// ---------------------------------------------------------------------------------------
// Ending: stop, inactivity, retention
// ---------------------------------------------------------------------------------------

/// Every sharer and receiver route of an ended session answers 404 `SESSION_ENDED`.
async fn assert_routes_ended(api: &Api, id: &str) {
    for route in every_route(id).into_iter().skip(1) {
        if route.1.ends_with("/status") {
            continue;
        }
        call(api, &route).await.error(404, "SESSION_ENDED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reports_duration_and_bytes_and_the_session_reports_ended() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    let before_start = Instant::now();
    api.start_ok(ID).await;
    let after_start = Instant::now();

    let sizes = [16_384usize, 8, 4096, 4];
    for (seq, size) in sizes.iter().enumerate() {
        api.post_audio_ok(ID, &chunk(seq as i64, 44_100, 1, &vec![1u8; *size]))
            .await;
    }
    // Refused chunks do not count.
    api.post_audio(ID, &chunk(9, 44_100, 2, &[0; 12]))
        .await
        .error(400, "INVALID_REQUEST");
    let oversized = json_bytes(&chunk(9, 44_100, 2, &vec![0; MIB + 8]));
    api.post_large(&path(ID, "audio"), oversized)
        .await
        .error(413, "PAYLOAD_TOO_LARGE");
    api.post_metadata(ID, &seed_metadata("Song", 1.0))
        .await
        .ok();
    sleep(Duration::from_millis(300)).await;

    let before_stop = Instant::now();
    let stopped = api.stop(ID).await.ok();
    let after_stop = Instant::now();
    assert_eq!(stopped["success"], json!(true), "{stopped}");
    assert_eq!(
        stopped["bytesTransferred"],
        json!(sizes.iter().sum::<usize>()),
        "{stopped}"
    );
    let duration = stopped["sessionDuration"]
        .as_f64()
        .expect("sessionDuration");
    assert!(
        duration >= (before_stop - after_start).as_secs_f64() - 1e-3
            && duration <= (after_stop - before_start).as_secs_f64() + 1e-3,
        "sessionDuration {duration}"
    );

    // Late joiners see "ended" (the default retention is 5 minutes).
    for _ in 0..3 {
        let status = api.status(ID).await.ok();
        assert_eq!(status["isActive"], json!(false), "{status}");
        assert_eq!(status["status"], json!("ended"), "{status}");
        assert_eq!(status["listenerCount"], json!(0), "{status}");
        assert!(status["startTime"].is_number(), "{status}");
        // The buffer and the metadata are cleared.
        assert_eq!(status["currentMetadata"], Value::Null, "{status}");
    }
    assert_routes_ended(&api, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_after_the_timeout() {
    // 0.05 min = 3 s without sharer activity; the sweeper runs once a second. Not less:
    // the busy session's keep-alive posts must never be a timeout apart, and a busy
    // 2-core machine has stalled a test for over a second (1.5 s used to flake).
    const TIMEOUT: Duration = Duration::from_millis(3000);
    let server = share_server(|c| c.share.session_timeout_minutes = 0.05).await;
    let api = Api::new(&server);
    let before_start = Instant::now();
    api.start_ok(ID).await;
    api.start_ok("654321").await;
    let receiver = Api::new(&server);

    // "654321" keeps sending audio (the sharer's activity), "123456" sends nothing; a
    // receiver polls both. Polling is not sharer activity.
    let mut keepalive_seq = 0;
    let ended_after = eventually("the idle session to end", TIMEOUT + WAIT, || {
        let (api, receiver) = (api.clone(), receiver.clone());
        keepalive_seq += 1;
        let seq = keepalive_seq;
        async move {
            // Every ~150 ms: well under both the timeout and the 10/s audio limit.
            sleep(Duration::from_millis(100)).await;
            api.post_audio_ok("654321", &chunk(seq, 8, 1, &tiny_samples(seq, 1)))
                .await;
            let _ = receiver.poll(ID, -1).await;
            let status = api.status(ID).await.ok();
            (status["isActive"] == json!(false)).then_some(before_start.elapsed())
        }
    })
    .await;
    assert!(ended_after >= TIMEOUT, "ended after {ended_after:?}");
    let status = api.status(ID).await.ok();
    assert_eq!(status["status"], json!("ended"), "{status}");
    assert_eq!(status["listenerCount"], json!(0), "{status}");
    assert_routes_ended(&api, ID).await;
    // It can be started again.
    api.start_ok(ID).await;

    // The busy session outlived the idle one by far more than the timeout and is active.
    for seq in 1000..1005 {
        sleep(Duration::from_millis(150)).await;
        api.post_audio_ok("654321", &chunk(seq, 8, 1, &tiny_samples(seq, 1)))
            .await;
    }
    let status = api.status("654321").await.ok();
    assert_eq!(status["isActive"], json!(true), "{status}");
    assert!(before_start.elapsed() > TIMEOUT);

    // Once it goes quiet, it ends too.
    eventually("the second session to end", TIMEOUT + WAIT, || {
        let api = api.clone();
        async move {
            let status = api.status("654321").await.ok();
            (status["isActive"] == json!(false)).then_some(())
        }
    })
    .await;
    api.post_audio("654321", &chunk(0, 8, 1, &tiny_samples(0, 1)))
        .await
        .error(404, "SESSION_ENDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_updates_keep_a_session_alive() {
    // A 3 s timeout (0.05 min), so that the 600 ms between posts leave 2.4 s for a busy
    // machine's stalls (a 1.5 s timeout used to flake).
    let server = share_server(|c| c.share.session_timeout_minutes = 0.05).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    // Metadata every 600 ms (within 2/s) for 4.2 s, well past the 3 s timeout.
    for i in 0..7 {
        sleep(Duration::from_millis(600)).await;
        api.post_metadata(ID, &seed_metadata("alive", f64::from(i)))
            .await
            .ok();
    }
    let status = api.status(ID).await.ok();
    assert_eq!(status["isActive"], json!(true), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_forgotten_after_the_retention() {
    // 3 s, not less: the status read right after the stop must come before the session is
    // forgotten, and a busy 2-core machine has stalled a test for over a second.
    const RETENTION: Duration = Duration::from_millis(3000);
    let server = share_server(|c| {
        c.share.share_ended_retention_ms = RETENTION.as_millis() as u64;
    })
    .await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    let before_stop = Instant::now();
    api.stop(ID).await.ok();
    let status = api.status(ID).await.ok();
    assert_eq!(status["isActive"], json!(false), "{status}");
    assert_eq!(status["status"], json!("ended"), "{status}");

    let forgotten = eventually(
        "the ended session to be forgotten",
        RETENTION + WAIT,
        || {
            let api = api.clone();
            async move {
                let reply = api.status(ID).await;
                if reply.status == 200 {
                    assert_eq!(reply.json()["status"], json!("ended"));
                    None
                } else {
                    Some(reply)
                }
            }
        },
    )
    .await;
    assert!(
        before_stop.elapsed() >= RETENTION,
        "forgotten before the retention"
    );
    forgotten.error(404, "SESSION_NOT_FOUND");
    for route in every_route(ID).into_iter().skip(1) {
        call(&api, &route).await.error(404, "SESSION_NOT_FOUND");
    }
    api.start_ok(ID).await;
}

// ---------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_count_counts_each_polling_connection() {
    let server = share_server(|_| {}).await;
    let sharer = Api::new(&server);
    sharer.start_ok(ID).await;
    sharer.start_ok("654321").await;
    sharer
        .post_metadata(ID, &seed_metadata("Song", 1.0))
        .await
        .ok();
    assert_eq!(sharer.listener_count(ID).await, 0);

    // Two receivers, each its own connection: one polls audio twice, one polls metadata
    // and audio.
    let mut a = RawConn::open(&server).await;
    let mut b = RawConn::open(&server).await;
    let audio = format!("{}?since=-1", path(ID, "audio"));
    a.get(&audio).await.no_content();
    a.get(&audio).await.no_content();
    b.get(&path(ID, "metadata")).await.ok();
    b.get(&audio).await.no_content();
    assert_eq!(sharer.listener_count(ID).await, 2);
    // Two separate clients (each its own pool) are two listeners too.
    Api::new(&server).poll(ID, -1).await.no_content();
    Api::new(&server).get_metadata(ID).await.ok();
    assert_eq!(sharer.listener_count(ID).await, 4);
    // Checking the status (as the sharer does here) is not listening.
    for _ in 0..3 {
        Api::new(&server).status(ID).await.ok();
    }
    assert_eq!(sharer.listener_count(ID).await, 4);
    // Listening to one session does not count for another.
    assert_eq!(sharer.listener_count("654321").await, 0);

    let notified = sharer
        .post_metadata(ID, &seed_metadata("Song", 2.0))
        .await
        .ok();
    assert_eq!(notified, json!({"success": true, "listenersNotified": 4}));

    // A poller that stopped polling stops counting (after a few seconds).
    eventually(
        "idle pollers to stop counting",
        Duration::from_secs(20),
        || {
            let sharer = sharer.clone();
            async move { (sharer.listener_count(ID).await == 0).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_count_counts_websocket_and_sse_subscribers() {
    // A share session is also the bandsync session with the same id: its WebSocket
    // members and SSE listeners are receivers too.
    let server = share_server(|_| {}).await;
    let sharer = Api::new(&server);
    sharer.start_ok(ID).await;
    assert_eq!(sharer.listener_count(ID).await, 0);

    let mut ws = bandsync_client::WsClient::connect(&server.ws_url())
        .await
        .expect("websocket connect");
    ws.join(ID, None, Some("receiver")).await.expect("join");
    let count_is = |n: u64| {
        let sharer = sharer.clone();
        async move { (sharer.listener_count(ID).await == n).then_some(()) }
    };
    eventually("the WebSocket member to count", WAIT, || count_is(1)).await;

    let _sse = bandsync_client::SseClient::connect(&server.base_url(), ID, None)
        .await
        .expect("sse connect");
    eventually("the SSE listener to count", WAIT, || count_is(2)).await;

    Api::new(&server).poll(ID, -1).await.no_content();
    eventually("the poller to count", WAIT, || count_is(3)).await;
    let notified = sharer
        .post_metadata(ID, &seed_metadata("Song", 1.0))
        .await
        .ok();
    assert_eq!(notified["listenersNotified"], json!(3));

    ws.close().await.expect("close");
    eventually("the WebSocket member to leave", WAIT, || count_is(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_count_includes_subscribers_from_before_the_start() {
    // Receivers may be on the session (WebSocket) before the sharer starts, and stay
    // on it while the sharer stops and starts again: they are listening all along.
    let server = share_server(|_| {}).await;
    let sharer = Api::new(&server);
    let mut ws = bandsync_client::WsClient::connect(&server.ws_url())
        .await
        .expect("websocket connect");
    ws.join(ID, None, Some("early")).await.expect("join");
    let count_is = |n: u64| {
        let sharer = sharer.clone();
        async move { (sharer.listener_count(ID).await == n).then_some(()) }
    };

    sharer.start_ok(ID).await;
    eventually(
        "the member who joined before the start to count",
        WAIT,
        || count_is(1),
    )
    .await;

    sharer.stop(ID).await.ok();
    sharer.start_ok(ID).await;
    eventually("the member to count after a restart", WAIT, || count_is(1)).await;
    ws.close().await.expect("close");
}

// ---------------------------------------------------------------------------------------
// The seed's client flow
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_client_flow_end_to_end() {
    const CHUNKS: i64 = 8;
    let server = share_server(|_| {}).await;
    let sharer = Api::new(&server);
    let receiver = Api::new(&server);

    // The seed's chunk: 4096 interleaved stereo float32 samples at 44.1 kHz (~93 ms).
    let audio = |seq: i64| -> Vec<u8> {
        let samples: Vec<f32> = (0..4096)
            .map(|i| ((seq * 4096 + i) as f32 * 0.03).sin() * 0.8)
            .collect();
        pcm(&samples)
    };
    let metadata = |n: u32| {
        let mut m = seed_metadata(&format!("Song {n}"), 45.2 + f64::from(n) * 0.5);
        m["thumbnailData"] = json!(b64(&[n as u8; 64]));
        m
    };

    sharer.start_ok(ID).await;

    let sharing = async {
        let mut notified = Vec::new();
        for seq in 0..CHUNKS {
            // Metadata every 500 ms: at chunks 0 and 5 (audio every 100 ms).
            if seq % 5 == 0 {
                let n = (seq / 5) as u32;
                let answer = sharer.post_metadata(ID, &metadata(n)).await.ok();
                assert_eq!(answer["success"], json!(true), "{answer}");
                notified.push(answer["listenersNotified"].as_u64().unwrap());
            }
            let body = json!({
                "data": b64(&audio(seq)),
                "sampleRate": 44_100,
                "channels": 2,
                "timestamp": TS0 + seq * 93,
                "sequenceNumber": seq,
            });
            sharer.post_audio_ok(ID, &body).await;
            sleep(Duration::from_millis(100)).await;
        }
        notified
    };

    let receiving = async {
        let status = receiver.status(ID).await.ok();
        assert_eq!(status["isActive"], json!(true), "{status}");
        let mut chunks: Vec<Value> = Vec::new();
        let mut metadata_seen: Vec<Value> = Vec::new();
        let mut since = -1;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut round = 0;
        while (chunks.len() as i64) < CHUNKS {
            assert!(
                Instant::now() < deadline,
                "received only {} chunks",
                chunks.len()
            );
            let reply = receiver.poll(ID, since).await;
            match reply.status {
                200 => {
                    let got = reply.chunks();
                    since = got.last().unwrap()["sequenceNumber"].as_i64().unwrap();
                    chunks.extend(got);
                }
                204 => {}
                _ => panic!("poll: {} {}", reply.status, reply.text()),
            }
            if round % 5 == 0 {
                let reply = receiver.get_metadata(ID).await;
                match reply.status {
                    200 => metadata_seen.push(reply.json()),
                    404 => {
                        reply.error(404, "NO_METADATA");
                    }
                    _ => panic!("metadata: {} {}", reply.status, reply.text()),
                }
            }
            round += 1;
            sleep(Duration::from_millis(100)).await;
        }
        (chunks, metadata_seen)
    };

    let (notified, (chunks, metadata_seen)) = tokio::join!(sharing, receiving);
    assert_eq!(notified.len(), 2, "metadata every 500 ms, twice");

    // Every chunk once, in order, exactly as sent.
    let seqs: Vec<i64> = chunks
        .iter()
        .map(|c| c["sequenceNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (0..CHUNKS).collect::<Vec<_>>());
    for chunk in &chunks {
        let seq = chunk["sequenceNumber"].as_i64().unwrap();
        assert_eq!(unb64(chunk["data"].as_str().unwrap()), audio(seq));
        assert_eq!(chunk["sampleRate"], json!(44_100));
        assert_eq!(chunk["channels"], json!(2));
        assert_eq!(chunk["timestamp"].as_f64(), Some((TS0 + seq * 93) as f64));
    }
    // The metadata the receiver saw was what the sharer posted, in order.
    for seen in &metadata_seen {
        assert!(seen == &metadata(0) || seen == &metadata(1), "{seen}");
    }
    assert_eq!(receiver.get_metadata(ID).await.ok(), metadata(1));

    let status = receiver.status(ID).await.ok();
    assert_eq!(status["isActive"], json!(true), "{status}");
    // The receiver polled within the last seconds (on one connection or, if its pool
    // opened another, more).
    assert!(status["listenerCount"].as_u64() >= Some(1), "{status}");
    assert_eq!(
        status["currentMetadata"],
        json!({"title": "Song 1", "artist": "Artist Name"}),
        "{status}"
    );

    let stopped = sharer.stop(ID).await.ok();
    assert_eq!(stopped["success"], json!(true));
    assert_eq!(stopped["bytesTransferred"], json!(CHUNKS * 4096 * 4));
    assert!(
        stopped["sessionDuration"].as_f64().unwrap() > 0.0,
        "{stopped}"
    );

    let status = receiver.status(ID).await.ok();
    assert_eq!(status["isActive"], json!(false), "{status}");
    assert_eq!(status["status"], json!("ended"), "{status}");
    receiver
        .poll(ID, since_of(&chunks))
        .await
        .error(404, "SESSION_ENDED");
    receiver.get_metadata(ID).await.error(404, "SESSION_ENDED");
}

fn since_of(chunks: &[Value]) -> i64 {
    chunks
        .last()
        .and_then(|c| c["sequenceNumber"].as_i64())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_outside_the_api_are_not_share_routes() {
    // Wrong methods on share paths are not answered by the share API.
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;
    let reply = api.send(Method::GET, "/api/share/start", None).await;
    assert!(
        [404, 405].contains(&reply.status),
        "GET start: {} {}",
        reply.status,
        reply.text()
    );
    let reply = api.send(Method::DELETE, &path(ID, "status"), None).await;
    assert!(
        [404, 405].contains(&reply.status),
        "DELETE status: {}",
        reply.status
    );
    assert_eq!(api.status(ID).await.ok()["isActive"], json!(true));
}
