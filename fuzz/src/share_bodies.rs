//! Target: the Music Share API's bodies (the JSON of start, metadata and audio requests,
//! and `decode_chunk`'s base64 and sample checks) and the registry calls they feed, through
//! the real routes of a fresh server.
//!
//! Input: a script, one request per line, `METHOD SUFFIX BODY` with SUFFIX under
//! `/api/share/` (e.g. `POST 123456/audio {"data":..}`); a METHOD starting with `!` sends
//! no token. Beyond "no panic":
//! - every request is answered; every error is the contract's JSON error and no 5xx but
//!   503 (the session cap);
//! - `decode_chunk` on a posted chunk gives whole frames of float32 samples, exactly the
//!   base64 payload, at most 1 MiB; a chunk it refuses is refused by the route as a bad
//!   body (400/413) whatever the session's state, and a chunk the route buffers passes it;
//! - what polling returns are chunks that pass `decode_chunk` again;
//! - a session's status agrees with the starts and stops that succeeded before it.

use super::harness::{Reply, Server, TOKEN};
use bandsync::share::audio::decode_chunk;
use bandsync::share::audio::ChunkBody;
use bandsync::share::{valid_id, MAX_CHUNK_BYTES};
use base64::Engine as _;
use std::collections::HashMap;

/// Most requests per input: keeps one input's run time bounded.
const MAX_REQUESTS: usize = 32;

/// Runs the script in `data` against a fresh server and checks every answer.
pub fn check(data: &[u8]) {
    let server = Server::start();
    // Session id -> active, for the starts and stops that succeeded.
    let mut sessions: HashMap<String, bool> = HashMap::new();
    for line in data.split(|&b| b == b'\n').take(MAX_REQUESTS) {
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (Some(method), Some(suffix)) = (parts.next(), parts.next()) else {
            continue;
        };
        let body = parts.next().unwrap_or_default();
        let (method, token) = match method.strip_prefix(b"!") {
            Some(m) => (m, false),
            None => (method, true),
        };
        let request = build(method, suffix, body, token);
        let reply = server
            .exchange(&request)
            .unwrap_or_else(|e| panic!("no answer ({e:?}) to {:?}", lossy(&request)));
        if !reply.made_by_service() {
            // hyper refused the request line itself (a byte not allowed in a method or
            // path): nothing of ours ran.
            assert_eq!(reply.status, 400, "hyper's own answer");
            continue;
        }
        let context = lossy(line);
        assert!(
            reply.status < 500 || reply.status == 503,
            "{context}: status {}",
            reply.status
        );
        if reply.status >= 400 {
            reply.assert_json_error(&context);
        }
        if token {
            follow(method, suffix, body, &reply, &mut sessions, &context);
        }
    }
}

/// The request a script line stands for.
fn build(method: &[u8], suffix: &[u8], body: &[u8], token: bool) -> Vec<u8> {
    let mut request = Vec::with_capacity(body.len() + 160);
    request.extend_from_slice(method);
    request.extend_from_slice(b" /api/share/");
    request.extend_from_slice(suffix);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: fuzz\r\ncontent-type: application/json\r\n");
    if token {
        request.extend_from_slice(format!("authorization: {TOKEN}\r\n").as_bytes());
    }
    request.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request
}

/// Checks one authorised answer against the body it was given and the sessions so far.
fn follow(
    method: &[u8],
    suffix: &[u8],
    body: &[u8],
    reply: &Reply,
    sessions: &mut HashMap<String, bool>,
    context: &str,
) {
    let suffix = String::from_utf8_lossy(suffix);
    let (id, action) = suffix.split_once('/').unwrap_or(("", &suffix));
    match (method, action) {
        (b"POST", "start") if reply.status == 200 => {
            let start: serde_json::Value = serde_json::from_slice(body).expect("a started body");
            let id = start["sessionId"].as_str().expect("a started id");
            assert!(valid_id(id), "{context}: started an invalid id");
            sessions.insert(id.to_owned(), true);
        }
        (b"POST", "stop") if reply.status == 200 => {
            assert_eq!(
                sessions.insert(id.to_owned(), false),
                Some(true),
                "{context}"
            );
        }
        (b"POST", "audio") if valid_id(id) => {
            let Ok(chunk) = serde_json::from_slice::<ChunkBody>(body) else {
                return;
            };
            match check_chunk(&chunk) {
                Ok(()) => {}
                Err(()) => assert!(
                    matches!(reply.status, 400 | 413 | 429),
                    "{context}: a bad chunk got {}",
                    reply.status
                ),
            }
            if reply.status == 200 {
                assert_eq!(
                    sessions.get(id),
                    Some(&true),
                    "{context}: audio to a session not active"
                );
            }
        }
        (b"GET", action) if action.starts_with("audio") && reply.status == 200 => {
            let chunks: Vec<ChunkBody> = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|e| panic!("{context}: polled audio is not chunks: {e}"));
            assert!(
                !chunks.is_empty(),
                "{context}: 200 with no chunks (204 expected)"
            );
            for chunk in &chunks {
                assert_eq!(check_chunk(chunk), Ok(()), "{context}: served a bad chunk");
            }
        }
        (b"GET", "status") if valid_id(id) => {
            let known = sessions.get(id).copied();
            match reply.status {
                200 => {
                    let status: serde_json::Value =
                        serde_json::from_slice(&reply.body).expect("status is JSON");
                    assert_eq!(status["isActive"].as_bool(), known, "{context}");
                }
                404 => assert_eq!(known, None, "{context}: a started session not found"),
                other => panic!("{context}: status answered {other}"),
            }
        }
        _ => {}
    }
}

/// `decode_chunk` on a chunk, with its guarantees checked when it accepts.
fn check_chunk(chunk: &ChunkBody) -> Result<(), ()> {
    let samples = decode_chunk(chunk).map_err(drop)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(chunk.data.as_bytes())
        .expect("accepted data is base64");
    assert_eq!(
        samples.as_ref(),
        decoded.as_slice(),
        "samples are the payload"
    );
    assert!(samples.len() <= MAX_CHUNK_BYTES);
    assert_eq!(
        samples.len() % (4 * usize::from(chunk.channels)),
        0,
        "whole frames"
    );
    assert!((1..=32).contains(&chunk.channels));
    assert!((1..=384_000).contains(&chunk.sample_rate));
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
