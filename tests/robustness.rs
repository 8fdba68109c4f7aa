//! Garbage on the WebSocket: binary frames, invalid UTF-8, JSON of every wrong shape,
//! oversized messages and frames. Each bad frame gets an `error` (or, past the hard frame
//! cap, close 1009); the session, its other members and the sender carry on.

mod common;
mod support;

use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{close, ClientEvent, ErrorCode, RequestId};
use bandsync_client::WsClient;
use common::TestServer;
use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// Deterministic pseudo-random bytes (xorshift64), so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The next frame must be an `error` with `code` and no id.
async fn expect_error_frame(client: &mut WsClient, code: ErrorCode, what: &str) {
    let frame = next_skipping(client, &["room_stats", "scroll_tick"]).await;
    match frame.event {
        ServerEvent::Error(e) => {
            assert_eq!(e.code, code, "{what}: {}", e.message);
            assert_eq!(frame.id, None, "{what}");
        }
        other => panic!("{what}: expected error {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_get_invalid_message_and_the_socket_stays_usable() {
    let server = TestServer::start().await;
    let (mut b, snap) = join_follower(&server, "band").await;
    for (seed, len) in [
        (1, 0),
        (2, 1),
        (3, 17),
        (4, 200),
        (5, 1500),
        (6, 9000),
        (7, 40),
    ] {
        b.send_raw_binary(noise(seed, len)).await.unwrap();
        expect_error_frame(
            &mut b,
            ErrorCode::InvalidMessage,
            &format!("binary of {len} bytes"),
        )
        .await;
    }
    // JSON that would be valid as text is still refused as binary, and not acted on.
    b.send_raw_binary(br#"{"type":"update_message","data":{"text":"bin"}}"#.to_vec())
        .await
        .unwrap();
    expect_error_frame(&mut b, ErrorCode::InvalidMessage, "json in a binary frame").await;
    let state = sync(&mut b).await;
    assert_eq!((state.version, state.message.as_str()), (snap.version, ""));
}

/// Sends `bytes` as a text frame on a fresh member socket of `session`; `Ok` when the
/// server answered exactly as PROTOCOL.md promises (section 5, close 1007): an `error`
/// `INVALID_MESSAGE` without an id first (the frame was not parsed), then close 1007, and
/// nothing else but `room_stats`. `Err` describing anything else.
async fn send_invalid_utf8(server: &TestServer, session: &str, bytes: &[u8]) -> Result<(), String> {
    let mut raw = raw_connect(server).await;
    let join = format!(r#"{{"type":"join_session","data":{{"sessionId":"{session}"}}}}"#);
    raw_send_text(&mut raw, &join).await;
    assert_eq!(
        raw_next_json(&mut raw, &["room_stats"]).await["type"],
        "snapshot"
    );

    let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
    raw.send(Message::Frame(frame))
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let error = loop {
        match raw_next(&mut raw).await {
            RawNext::Json(v) if v["type"] == "room_stats" => {}
            RawNext::Json(v) => break v,
            other => return Err(format!("no error before {other:?}")),
        }
    };
    if error["type"] != "error" || error["data"]["code"] != "INVALID_MESSAGE" {
        return Err(format!("expected INVALID_MESSAGE, got {error}"));
    }
    if error.get("id").is_some() {
        return Err(format!("the error carries an id: {error}"));
    }
    loop {
        match raw_next(&mut raw).await {
            RawNext::Json(v) if v["type"] == "room_stats" => {}
            RawNext::Closed(Some(INVALID_PAYLOAD)) => return Ok(()),
            other => {
                return Err(format!(
                    "after INVALID_MESSAGE, expected close 1007: {other:?}"
                ))
            }
        }
    }
}

/// RFC 6455 close code for a text frame that is not UTF-8.
const INVALID_PAYLOAD: u16 = 1007;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_gets_invalid_message_then_close_1007() {
    // The contract: a frame that is not JSON gets INVALID_MESSAGE; RFC 6455: a text frame
    // that is not UTF-8 fails the connection with 1007. PROTOCOL.md promises both, in
    // that order (tungstenite cannot read past such a frame).
    let server = TestServer::start().await;
    let (mut member, _) = join_follower(&server, "band").await;

    let bad: &[&[u8]] = &[
        b"\xff\xfe\xfd",
        b"{\"type\":\"update_message\",\"data\":{\"text\":\"\xc3\x28\"}}",
        b"\xed\xa0\x80", // a UTF-16 surrogate, encoded
        b"{\"type\":\"sync_request\"}\xc3",
    ];
    let mut failures = Vec::new();
    for bytes in bad {
        if let Err(e) = send_invalid_utf8(&server, "band", bytes).await {
            failures.push(format!("{}: {e}", bytes.escape_ascii()));
        }
    }
    // Whatever became of those sockets, the session and its other members carry on.
    let (mut leader, _) = join_leader(&server, "band").await;
    leader.send(tempo(111.0)).await.unwrap();
    assert!(next_state_update(&mut member).await.leader_id.is_some());
    assert_eq!(next_state_update(&mut member).await.transport.tempo, 111.0);
    assert_eq!(
        sync(&mut member).await.message,
        "",
        "no bad frame was acted on"
    );
    assert!(
        failures.is_empty(),
        "invalid UTF-8 must get INVALID_MESSAGE, then close 1007:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_of_every_shape_gets_its_error_and_changes_nothing() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let (mut b, _) = join_follower(&server, "band").await;

    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let long_type = format!(r#"{{"type":"{}"}}"#, "x".repeat(300));
    let invalid_message = [
        "",
        " ",
        "{not json",
        "[]",
        "42",
        r#""play""#,
        "null",
        "true",
        "{}",
        r#"{"data":{}}"#,
        r#"{"type":5}"#,
        r#"{"type":null}"#,
        r#"{"type":["play"]}"#,
        r#"{"type":"set_tempo"}"#,
        r#"{"type":"set_tempo","data":{"tempo":"fast"}}"#,
        r#"{"type":"set_tempo","data":{"tempo":null}}"#,
        r#"{"type":"seek","data":{}}"#,
        r#"{"type":"play","data":{"beat":"1"}}"#,
        r#"{"type":"join_session","data":[]}"#,
        r#"{"type":"join_session","data":{"sessionId":42}}"#,
        r#"{"type":"join_session","data":{"sessionId":"band","role":"boss"}}"#,
        r#"{"type":"set_role","data":{"role":"boss"}}"#,
        r#"{"type":"pause","data":5}"#,
        r#"{"type":"sync_request","data":"x"}"#,
        r#"{"type":"heartbeat","data":{"t0":"x"}}"#,
        r#"{"type":"heartbeat"}"#,
        r#"{"type":"update_message","data":{"text":null}}"#,
        r#"{"type":"update_message","data":{"text":["a"]}}"#,
        r#"{"type":"sync_request"} trailing"#,
        deep.as_str(),
    ];
    for text in invalid_message {
        b.send_raw_text(text.to_owned()).await.unwrap();
        let what: String = text.chars().take(80).collect();
        expect_error_frame(&mut b, ErrorCode::InvalidMessage, &what).await;
    }
    for text in [
        r#"{"type":"PLAY"}"#,
        r#"{"type":""}"#,
        r#"{"type":"drop_table"}"#,
        long_type.as_str(),
    ] {
        b.send_raw_text(text.to_owned()).await.unwrap();
        let what: String = text.chars().take(80).collect();
        expect_error_frame(&mut b, ErrorCode::UnknownType, &what).await;
    }

    // Unknown fields are ignored, at both levels.
    let id = RequestId::from("extra");
    let text = r#"{"type":"sync_request","id":"extra","extra":1,"data":{"foo":[1,2]}}"#;
    let reply = raw_request(&mut b, text, &id).await;
    let ServerEvent::SyncResponse(state) = reply.event else {
        panic!("expected sync_response, got {reply:?}")
    };
    assert_eq!(
        state.version, snap.version,
        "no garbage changed the session"
    );
    assert_eq!(state.transport, snap.transport);

    // Nobody else heard of it: the leader's next state_update is its own next change.
    l.send(tempo(100.0)).await.unwrap();
    assert_eq!(next_state_update(&mut l).await.version, snap.version + 1);
    assert_eq!(next_state_update(&mut b).await.version, snap.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_over_max_message_bytes_is_refused_and_the_socket_stays_usable() {
    let server = TestServer::start().await; // MAX_MESSAGE_BYTES = 16384
    let (mut l, snap) = join_leader(&server, "band").await;
    let limit = 16 * 1024;

    // A valid request padded (with an ignored field) to exactly the limit is handled...
    let padded = |len: usize, text: &str| {
        let head = format!(r#"{{"type":"update_message","data":{{"text":"{text}"}},"pad":""#);
        let mut frame = head.clone();
        frame.push_str(&"p".repeat(len - head.len() - 2));
        frame.push_str(r#""}"#);
        assert_eq!(frame.len(), len);
        frame
    };
    l.send_raw_text(padded(limit, "at the limit"))
        .await
        .unwrap();
    let state = next_state_update(&mut l).await;
    assert_eq!(
        (state.version, state.message.as_str()),
        (snap.version + 1, "at the limit")
    );

    // ...one byte more is not, and the error carries no id (the frame was never parsed).
    l.send_raw_text(padded(limit + 1, "over")).await.unwrap();
    expect_error_frame(&mut l, ErrorCode::InvalidMessage, "one byte over").await;
    let huge = format!(
        r#"{{"type":"sync_request","id":"big","pad":"{}"}}"#,
        "x".repeat(200_000)
    );
    l.send_raw_text(huge).await.unwrap();
    expect_error_frame(&mut l, ErrorCode::InvalidMessage, "200 KB").await;

    let state = sync(&mut l).await;
    assert_eq!(
        (state.version, state.message.as_str()),
        (snap.version + 1, "at the limit")
    );
    l.send(play(None)).await.unwrap();
    assert!(next_state_update(&mut l).await.transport.playing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_max_frame_bytes_close_with_1009_and_only_that_socket() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 64 * 1024).await;
    let (mut l, _) = join_leader(&server, "band").await;
    // How each oversized sender's connection ended, asserted at the end.
    let mut endings = Vec::new();

    // One large text frame.
    let (mut big_text, _) = join_follower(&server, "band").await;
    let pad = "x".repeat(70_000);
    big_text
        .send_raw_text(format!(r#"{{"type":"sync_request","pad":"{pad}"}}"#))
        .await
        .unwrap();
    endings.push((
        "text frame",
        closing(&mut big_text).await.map(|(code, _)| code),
    ));

    // A large binary frame.
    let (mut big_binary, _) = join_follower(&server, "band").await;
    big_binary.send_raw_binary(noise(9, 100_000)).await.unwrap();
    endings.push((
        "binary frame",
        closing(&mut big_binary).await.map(|(code, _)| code),
    ));

    // Fragments each under the cap, together over it.
    let mut raw = raw_connect(&server).await;
    let chunk = "y".repeat(30_000);
    let parts = [
        Frame::message(chunk.clone(), OpCode::Data(Data::Text), false),
        Frame::message(chunk.clone(), OpCode::Data(Data::Continue), false),
        Frame::message(chunk, OpCode::Data(Data::Continue), true),
    ];
    for part in parts {
        // The server may close before the last fragment is written.
        if raw.send(Message::Frame(part)).await.is_err() {
            break;
        }
    }
    // First an error saying why, then the close.
    let ending = match raw_next(&mut raw).await {
        RawNext::Json(error) if error["data"]["code"] == "INVALID_MESSAGE" => {
            match raw_next(&mut raw).await {
                RawNext::Closed(code) => Ok(code),
                other => Err(format!("after the error: {other:?}")),
            }
        }
        other => Err(format!(
            "expected an INVALID_MESSAGE error first: {other:?}"
        )),
    };
    endings.push(("fragmented message", ending));

    // The leader and the session carry on.
    l.send(play(None)).await.unwrap();
    assert!(next_state_update(&mut l).await.transport.playing);
    next_tick(&mut l).await;
    room_stats_counts(&mut l, 1, 0).await;
    let text = metrics_text(&server).await;
    assert!(
        text.contains("bandsync_connections{transport=\"ws\"} 1"),
        "{text}"
    );

    let expected: Vec<_> = endings
        .iter()
        .map(|(what, _)| (*what, Ok(Some(close::MESSAGE_TOO_BIG))))
        .collect();
    assert_eq!(
        endings, expected,
        "how each sender over MAX_FRAME_BYTES was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_member_leaves_the_session_and_the_others_alone() {
    let server = TestServer::start().await;
    let (mut l, _) = join_leader(&server, "band").await;
    let (mut f, _) = join_follower(&server, "band").await;
    let (mut bad, _) = join_follower(&server, "band").await;
    l.send(play(None)).await.unwrap();
    let playing = next_state_update(&mut l).await;
    assert_eq!(next_state_update(&mut f).await, playing);
    assert_eq!(next_state_update(&mut bad).await, playing);

    // A barrage of every kind of bad input (well under the rate limit).
    for round in 0..4u64 {
        bad.send_raw_binary(noise(round + 100, 64)).await.unwrap();
        bad.send_raw_text("{\"type\":".into()).await.unwrap();
        bad.send_raw_text(r#"{"type":"explode"}"#.into())
            .await
            .unwrap();
        bad.send_raw_text("x".repeat(20_000)).await.unwrap();
        bad.send(tempo(300.0)).await.unwrap(); // NOT_LEADER
        bad.send(seek(-4.0)).await.unwrap(); // INVALID_BEAT
        bad.send(ClientEvent::Pause(Default::default()))
            .await
            .unwrap(); // NOT_LEADER
    }
    let mut errors = 0;
    while errors < 28 {
        let frame = next_skipping(&mut bad, &["room_stats", "scroll_tick"]).await;
        assert!(matches!(frame.event, ServerEvent::Error(_)), "{frame:?}");
        errors += 1;
    }

    // The follower kept ticking along the same transport, and nothing changed.
    for _ in 0..5 {
        let tick = next_tick(&mut f).await;
        assert_eq!(tick.version, playing.version);
    }
    assert_eq!(sync(&mut f).await.transport, playing.transport);

    // Everyone still hears the leader, and the bad client can still act.
    l.send(seek(32.0)).await.unwrap();
    for client in [&mut l, &mut f, &mut bad] {
        assert_eq!(next_state_update(client).await.transport.beat, 32.0);
    }
    bad.send(message("sorry")).await.unwrap();
    for client in [&mut l, &mut f, &mut bad] {
        assert_eq!(next_state_update(client).await.message, "sorry");
    }
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
}
