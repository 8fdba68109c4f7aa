//! Issue 11, part 2: the Music Share desktop client against the real server.
//!
//! - A strictly typed client (`share_support/models.rs`: the client's models, `i64` for
//!   `long`) reads every answer of the seven routes, success and each documented error,
//!   and `204` with an empty body. The server used to answer `"timestamp":
//!   1795987760689.0574`, which `System.Text.Json` refuses for a `long`.
//! - A client that writes its whole request before it reads (`share_support/write_first.rs`,
//!   as Python's `httpx` does) reads every early answer (`413`, `401`, `404`, `429`),
//!   on the share API and elsewhere, instead of a connection reset.

mod common;
#[path = "share_support/models.rs"]
mod models;
mod share_support;
mod support;
#[path = "share_support/write_first.rs"]
mod write_first;

use common::TestServer;
use models::*;
use serde_json::json;
use share_support::*;
use std::time::{SystemTime, UNIX_EPOCH};
use support::wait_metric_at_least;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ID: &str = "123456";
const MIB: usize = 1024 * 1024;

/// The host's wall clock in epoch ms (the server's clock starts from it).
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Parses an error answer into the error model and checks its status and code.
#[track_caller]
fn strict_error(reply: &Reply, status: u16, code: &str) -> ErrorResponse {
    reply.expect_status(status);
    reply.assert_json_content_type();
    let error: ErrorResponse = strict(&reply.what, &reply.body);
    assert!(!error.success, "{}: {}", reply.what, reply.text());
    assert_eq!(error.code, code, "{}: {}", reply.what, reply.text());
    assert!(!error.error.is_empty(), "{}", reply.what);
    let now = wall_ms();
    assert!(
        (error.timestamp - now).abs() < 60_000,
        "{}: timestamp {} is not epoch ms near {now}",
        reply.what,
        error.timestamp
    );
    if status == 404 {
        // The specification's 404 of `status`: `{"isActive": false, "error"}`.
        let not_found: StatusNotFound = strict(&reply.what, &reply.body);
        assert!(!not_found.is_active, "{}", reply.what);
    }
    error
}

#[test]
fn the_models_refuse_fractions_missing_fields_and_other_types() {
    models::self_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_success_answer_parses_into_the_clients_models() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);

    let reply = api.start(ID).await;
    let started: StartResponse = strict("start", &reply.expect_status(200).body);
    assert!(started.success);
    assert_eq!(started.session_id, ID);
    assert!(
        (started.timestamp - wall_ms()).abs() < 60_000,
        "{started:?}"
    );

    let reply = api.status(ID).await;
    let fresh: StatusResponse = strict("status", &reply.expect_status(200).body);
    assert!(fresh.is_active);
    assert_eq!(
        fresh.start_time, started.timestamp,
        "startTime is the start"
    );
    assert_eq!(fresh.listener_count, 0);
    assert!(fresh.current_metadata.is_none());

    let posted = seed_metadata("Song Title", 45.2);
    let reply = api.post_metadata(ID, &posted).await;
    let accepted: MetadataAccepted = strict("post metadata", &reply.expect_status(200).body);
    assert!(accepted.success);
    assert_eq!(accepted.listeners_notified, 0);

    let reply = api.get_metadata(ID).await;
    let metadata: Metadata = strict("get metadata", &reply.expect_status(200).body);
    assert_eq!(metadata.title.as_deref(), Some("Song Title"));
    assert_eq!(metadata.artist.as_deref(), Some("Artist Name"));
    assert!(metadata.lyrics.is_some_and(|l| l.starts_with("[00:12.50]")));
    assert!(metadata.has_synced_lyrics);
    assert_eq!(metadata.elapsed_seconds, 45.2);
    assert_eq!(metadata.total_seconds, 180.5);
    assert_eq!(metadata.thumbnail_data, None);
    assert_eq!(metadata.timestamp, 1_234_567_890_123);

    // The specification's chunk: ~4096 interleaved stereo samples at 44.1 kHz.
    let samples: Vec<f32> = (0..4096).map(|i| (i as f32 * 0.01).sin()).collect();
    for seq in [42, 43] {
        let reply = api
            .post_audio(ID, &chunk(seq, 44_100, 2, &pcm(&samples)))
            .await;
        let buffered: AudioAccepted = strict("post audio", &reply.expect_status(200).body);
        assert!(buffered.success && buffered.buffered);
    }

    let reply = api.poll(ID, -1).await;
    let chunks: Vec<AudioChunk> = strict("poll", &reply.expect_status(200).body);
    let seqs: Vec<i64> = chunks.iter().map(|c| c.sequence_number).collect();
    assert_eq!(seqs, [42, 43]);
    for c in &chunks {
        assert_eq!((c.sample_rate, c.channels), (44_100, 2));
        assert_eq!(c.timestamp, TS0 + c.sequence_number);
        assert_eq!(unb64(&c.data), pcm(&samples));
    }
    // Nothing newer: 204 with an empty body.
    api.poll(ID, 43).await.no_content();

    let reply = api.status(ID).await;
    let playing: StatusResponse = strict("status", &reply.expect_status(200).body);
    assert!(
        playing.listener_count >= 1,
        "the poller listens: {playing:?}"
    );
    let current = playing.current_metadata.expect("currentMetadata");
    assert_eq!(current.title.as_deref(), Some("Song Title"));
    assert_eq!(current.artist.as_deref(), Some("Artist Name"));

    let reply = api.stop(ID).await;
    let stopped: StopResponse = strict("stop", &reply.expect_status(200).body);
    assert!(stopped.success);
    assert!(stopped.session_duration >= 0.0);
    assert_eq!(stopped.bytes_transferred, 2 * 4096 * 4);

    // Ended: still the same model, inactive, with the same start.
    let reply = api.status(ID).await;
    let ended: StatusResponse = strict("status", &reply.expect_status(200).body);
    assert!(!ended.is_active);
    assert_eq!(ended.start_time, started.timestamp);
    assert_eq!(ended.listener_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_timestamps_a_sharer_posts_come_back_as_whole_milliseconds() {
    let server = share_server(|_| {}).await;
    let api = Api::new(&server);
    api.start_ok(ID).await;

    let mut posted = seed_metadata("Song Title", 1.0);
    posted["timestamp"] = json!(1_795_987_760_689.057_4);
    api.post_metadata(ID, &posted).await.ok();
    let reply = api.get_metadata(ID).await;
    let metadata: Metadata = strict("get metadata", &reply.expect_status(200).body);
    assert_eq!(metadata.timestamp, 1_795_987_760_689);

    let mut body = chunk(1, 8, 1, &tiny_samples(1, 8));
    body["timestamp"] = json!(1_700_000_000_000.75);
    api.post_audio_ok(ID, &body).await;
    let reply = api.poll(ID, -1).await;
    let chunks: Vec<AudioChunk> = strict("poll", &reply.expect_status(200).body);
    assert_eq!(chunks[0].timestamp, 1_700_000_000_000);

    // What no `long` holds, and fields of another type, are refused, not stored.
    let mut huge = chunk(2, 8, 1, &tiny_samples(2, 8));
    huge["timestamp"] = json!(1e300);
    strict_error(&api.post_audio(ID, &huge).await, 400, "INVALID_REQUEST");
    for (field, value) in [
        ("timestamp", json!("1234567890123")),
        ("hasSyncedLyrics", json!("true")),
        ("elapsedSeconds", json!("45.2")),
        ("title", json!(7)),
    ] {
        let mut bad = seed_metadata("Bad", 1.0);
        bad[field] = value;
        strict_error(&api.post_metadata(ID, &bad).await, 400, "INVALID_REQUEST");
    }
    let reply = api.get_metadata(ID).await;
    let kept: Metadata = strict("get metadata", &reply.expect_status(200).body);
    assert_eq!(kept.title.as_deref(), Some("Song Title"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_error_parses_into_the_error_model() {
    let server = share_server(|c| {
        c.share.max_share_sessions = 3;
        c.limits.share_sessions_per_ip = 2;
        c.share.share_metadata_rate = 2;
        c.share.share_audio_rate = 2;
        c.limits.auth_failure_limit = 100_000;
    })
    .await;
    let api = Api::from_source(&server, [127, 0, 0, 1].into());
    let other = Api::from_source(&server, [127, 0, 0, 2].into());
    let wrong = api.auth(Some("Bearer Wrong"));
    let unknown = "999999";
    api.start_ok(ID).await;

    // start: 400 (id, body), 401, 409, 429 (this address's cap), 503 (the server's cap).
    strict_error(&api.start("12345").await, 400, "INVALID_SESSION_ID");
    let reply = api.post_raw("/api/share/start", "not json").await;
    strict_error(&reply, 400, "INVALID_REQUEST");
    strict_error(&wrong.start("654321").await, 401, "UNAUTHORIZED");
    strict_error(&api.start(ID).await, 409, "SESSION_CONFLICT");
    api.start_ok("100001").await;
    strict_error(&api.start("100002").await, 429, "ADDRESS_LIMIT");
    other.start_ok("100003").await;
    strict_error(&other.start("100004").await, 503, "SESSION_LIMIT");

    // Every session route: 401 with a wrong token, 404 for an unknown session.
    for (method, path, body) in every_route(ID).into_iter().skip(1) {
        let route = (method, path, body);
        strict_error(&call(&wrong, &route).await, 401, "UNAUTHORIZED");
    }
    for route in every_route(unknown).into_iter().skip(1) {
        strict_error(&call(&api, &route).await, 404, "SESSION_NOT_FOUND");
    }

    // metadata: 400, 413, 429; none yet is 404 too.
    strict_error(&api.get_metadata(ID).await, 404, "NO_METADATA");
    let reply = api.post_raw(&path(ID, "metadata"), "[1]").await;
    strict_error(&reply, 400, "INVALID_REQUEST");
    let big = format!(r#"{{"title": "{}"}}"#, "x".repeat(5 * MIB));
    let reply = api.post_large(&path(ID, "metadata"), big).await;
    strict_error(&reply, 413, "PAYLOAD_TOO_LARGE");
    let (_, limited, _) = burst_until_429(10, |n| {
        let api = api.clone();
        async move {
            api.post_metadata(ID, &seed_metadata("Burst", n as f64))
                .await
        }
    })
    .await;
    strict_error(&limited, 429, "RATE_LIMITED");

    // audio: 400, 413, 429, and 400 for a bad `since`.
    let reply = api.post_raw(&path(ID, "audio"), r#"{"data": 1}"#).await;
    strict_error(&reply, 400, "INVALID_REQUEST");
    let oversized = json_bytes(&chunk(9, 44_100, 2, &vec![0; MIB + 8]));
    let reply = api.post_large(&path(ID, "audio"), oversized).await;
    strict_error(&reply, 413, "PAYLOAD_TOO_LARGE");
    let (_, limited, _) = burst_until_429(10, |n| {
        let api = api.clone();
        async move {
            api.post_audio(ID, &chunk(n as i64, 8, 1, &tiny_samples(n as i64, 1)))
                .await
        }
    })
    .await;
    strict_error(&limited, 429, "RATE_LIMITED");
    let reply = api.get(&format!("{}?since=1.5", path(ID, "audio"))).await;
    strict_error(&reply, 400, "INVALID_REQUEST");

    // After a stop, the session routes report it ended.
    api.stop(ID).await.ok();
    for route in every_route(ID).into_iter().skip(1) {
        let reply = call(&api, &route).await;
        if route.1.ends_with("/status") {
            let ended: StatusResponse = strict(&reply.what, &reply.expect_status(200).body);
            assert!(!ended.is_active);
        } else {
            strict_error(&reply, 404, "SESSION_ENDED");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Early answers reach a client that writes its whole request first
// ---------------------------------------------------------------------------------------

/// 1.1 MB of float32 samples as the share API's audio body (about 1.5 MB of base64: over
/// the route's limit), and its headers with `auth` (none: no header).
fn oversized_chunk(auth: Option<&str>) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let samples = vec![0u8; 1_100_000];
    let body = json_bytes(&chunk(1, 44_100, 2, &samples));
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("content-length", body.len().to_string()),
    ];
    if let Some(auth) = auth {
        headers.push(("authorization", auth.to_owned()));
    }
    (headers, body)
}

/// Checks an early answer: `status` and `code`, its JSON error in the strict model, and a
/// closed connection (end of stream, never a reset) after it.
#[track_caller]
fn early(answer: &write_first::Answer, what: &str, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
    let error: ErrorResponse = strict(what, &answer.body);
    assert_eq!(error.code, code, "{what}");
    assert_eq!(
        answer.then, "closed",
        "{what}: the connection after an early answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_audio_chunk_written_whole_reads_its_413() {
    let server = share_server(|_| {}).await;
    Api::new(&server).start_ok(ID).await;
    let (headers, body) = oversized_chunk(Some(TOKEN));
    let what = "oversized chunk, Content-Length";
    let answer = write_first::send_early(
        server.addr,
        what,
        "POST",
        &path(ID, "audio"),
        &headers,
        &body,
    )
    .await;
    early(&answer, what, 413, "PAYLOAD_TOO_LARGE");

    // Chunked: the server finds it too large part-way through the body.
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("transfer-encoding", "chunked".to_owned()),
        ("authorization", TOKEN.to_owned()),
    ];
    let what = "oversized chunk, chunked";
    let chunked = write_first::chunked(&body);
    let answer = write_first::send_early(
        server.addr,
        what,
        "POST",
        &path(ID, "audio"),
        &headers,
        &chunked,
    )
    .await;
    early(&answer, what, 413, "PAYLOAD_TOO_LARGE");

    // The session took nothing, and the server still answers on a new connection.
    Api::new(&server).poll(ID, -1).await.no_content();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_a_ban_and_an_unknown_route_reach_a_client_writing_first() {
    let server = share_server(|c| {
        c.limits.auth_failure_limit = 2;
        c.limits.auth_ban_ms = 60_000;
    })
    .await;
    Api::new(&server).start_ok(ID).await;
    let route = path(ID, "audio");
    for auth in [None, Some("Bearer Wrong"), Some("Bearer Wrong")] {
        let (headers, body) = oversized_chunk(auth);
        let what = format!("oversized chunk with token {auth:?}");
        let answer =
            write_first::send_early(server.addr, &what, "POST", &route, &headers, &body).await;
        early(&answer, &what, 401, "UNAUTHORIZED");
    }
    // Two wrong tokens: the address is banned, even with the right token.
    let (headers, body) = oversized_chunk(Some(TOKEN));
    let what = "oversized chunk from a banned address";
    let answer = write_first::send_early(server.addr, what, "POST", &route, &headers, &body).await;
    early(&answer, what, 429, "RATE_LIMITED");
    assert!(answer.retry_after.is_some(), "{what}: Retry-After");

    // A 1 MiB chunk (within the limit) for a session that does not exist.
    let samples = vec![0u8; MIB];
    let body = json_bytes(&chunk(1, 44_100, 2, &samples));
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("content-length", body.len().to_string()),
    ];
    let what = "POST to a route that does not exist";
    let answer = write_first::send_early(
        server.addr,
        what,
        "POST",
        "/api/share/123456/nothing",
        &headers,
        &body,
    )
    .await;
    assert!(
        [404, 405].contains(&answer.status),
        "{what}: {} {}",
        answer.status,
        answer.text()
    );
    let error: ErrorResponse = strict(what, &answer.body);
    assert!(["NOT_FOUND", "METHOD_NOT_ALLOWED"].contains(&error.code.as_str()));
    assert_eq!(answer.then, "closed", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_reads_its_404_whole_body_written_first() {
    let server = share_server(|_| {}).await;
    let samples = vec![0u8; MIB];
    let body = json_bytes(&chunk(1, 44_100, 2, &samples));
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("content-length", body.len().to_string()),
        ("authorization", TOKEN.to_owned()),
    ];
    let what = "1 MiB chunk for an unknown session";
    let answer = write_first::send(
        server.addr,
        what,
        "POST",
        &path("999999", "audio"),
        &headers,
        &body,
    )
    .await;
    assert_eq!(answer.status, 404, "{what}: {}", answer.text());
    let error: ErrorResponse = strict(what, &answer.body);
    assert_eq!(error.code, "SESSION_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_outside_the_share_api_reach_a_client_writing_first() {
    let server = TestServer::start_with(|c| {
        c.share.bearer_token = Some("stage-secret".into());
        c.stream_manager.max_upload_size = 1024;
    })
    .await;
    let body = vec![b'x'; 1_100_000];
    // Over MAX_HTTP_BODY_BYTES on a plain route: 413 before warp reads anything.
    let headers = vec![("content-length", body.len().to_string())];
    let what = "1.1 MB to /sessions/abc";
    let answer =
        write_first::send_early(server.addr, what, "POST", "/sessions/abc", &headers, &body).await;
    early(&answer, what, 413, "PAYLOAD_TOO_LARGE");

    // A Stream Manager upload: 401 without the token, 413 past MAX_UPLOAD_SIZE.
    let boundary = "writeFirstBoundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    form.extend_from_slice(&body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut headers = vec![
        (
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        ),
        ("content-length", form.len().to_string()),
    ];
    let upload = "/stream/assets/upload";
    let what = "1.1 MB upload without the token";
    let answer = write_first::send_early(server.addr, what, "POST", upload, &headers, &form).await;
    assert_eq!(answer.status, 401, "{what}: {}", answer.text());
    assert_eq!(answer.then, "closed", "{what}");
    headers.push(("authorization", "Bearer stage-secret".to_owned()));
    let what = "1.1 MB upload over MAX_UPLOAD_SIZE";
    let answer = write_first::send_early(server.addr, what, "POST", upload, &headers, &form).await;
    assert_eq!(answer.status, 413, "{what}: {}", answer.text());
    assert_eq!(answer.then, "closed", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_after_the_answer_is_cut_off_and_counted() {
    // The lingering close is bounded: a client announcing 64 MiB after its 401 is read
    // from for 8 MiB (`LINGER_BYTES`), then the socket is closed; that is counted.
    let server = share_server(|_| {}).await;
    let socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        path(ID, "audio"),
        server.addr,
        64 * MIB
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let block = vec![b' '; 256 * 1024];
        let mut sent = 0;
        while sent < 64 * MIB {
            writer.write_all(&block).await?;
            sent += block.len();
        }
        Ok::<_, std::io::Error>(sent)
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, reader.read(&mut buf))
            .await
            .expect("an answer")
            .expect("reading the answer");
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let sent = tokio::time::timeout(WAIT, sender)
        .await
        .expect("the server stops reading within its bounds")
        .unwrap();
    assert!(sent.is_err(), "all 64 MiB were taken: {sent:?}");
    let cut = r#"bandsync_http_timeouts_total{kind="linger"}"#;
    assert_eq!(wait_metric_at_least(&server, cut, 1.0).await, 1.0);
}
