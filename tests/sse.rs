//! SSE listeners at `GET /sse/{sessionId}`: a snapshot first, then the very same events WS
//! members get (state_update, room_stats, scroll_tick), each with an `id:`; `Last-Event-ID`
//! replays the missed state events, or starts over with a snapshot when it cannot.

mod common;
mod support;

use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, Role, ServerFrame};
use bandsync_client::{SseClient, SseEvent, WsClient};
use common::TestServer;
use support::*;

/// The next frame on `client` that is not room_stats (the full frame, for equality).
async fn next_broadcast(client: &mut WsClient) -> ServerFrame {
    next_skipping(client, &["room_stats"]).await
}

/// Reads SSE events until one satisfies `pred`; returns everything read, in order.
async fn sse_until<F>(stream: &mut SseClient, mut pred: F) -> Vec<SseEvent>
where
    F: FnMut(&SseEvent) -> bool,
{
    let mut seen = Vec::new();
    loop {
        let event = sse_next(stream).await;
        let done = pred(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn version_of(event: &SseEvent) -> Option<u64> {
    match &event.frame.event {
        ServerEvent::StateUpdate(s) => Some(s.version),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_gets_a_snapshot_then_the_same_events_as_members() {
    let server = TestServer::start().await;
    let (mut l, snap_l) = join_leader(&server, "band").await;
    room_stats_counts(&mut l, 1, 0).await;

    let mut listener = sse(&server, "band", None).await;
    let first = sse_next(&mut listener).await;
    let ServerEvent::Snapshot(snap) = &first.frame.event else {
        panic!("first SSE event must be a snapshot: {first:?}")
    };
    assert_eq!(snap.session_id, "band");
    assert_eq!(snap.role, Role::Listener);
    assert_eq!(snap.resume_token, "", "listeners resume with Last-Event-ID");
    assert!(!snap.client_id.is_empty());
    assert_eq!(snap.leader_id.as_deref(), Some(snap_l.client_id.as_str()));
    assert_eq!(snap.version, snap_l.version);
    assert_eq!(snap.members.len(), 1, "members are WebSocket members");
    let mut last_id = sse_id(&first);

    // Everyone, the listener included, learns of the listener.
    let stats = room_stats_counts(&mut l, 1, 1).await;
    assert_eq!(stats.followers, 0);
    let event = sse_next(&mut listener).await;
    match &event.frame.event {
        ServerEvent::RoomStats(s) => assert_eq!((s.members, s.listeners), (1, 1)),
        other => panic!("expected room_stats, got {other:?}"),
    }
    assert!(sse_id(&event) > last_id);
    last_id = sse_id(&event);

    // State changes arrive as the identical frame members get.
    for event in [tempo(100.0), message("intro"), seek(2.0), play(None)] {
        l.send(event).await.unwrap();
        let member_frame = next_broadcast(&mut l).await;
        assert_eq!(member_frame.event.type_name(), "state_update");
        let heard = sse_next_skipping(&mut listener, &["room_stats"]).await;
        assert_eq!(heard.frame, member_frame);
        assert!(sse_id(&heard) > last_id, "ids increase");
        last_id = sse_id(&heard);
    }

    // Ticks too, each with its own id.
    let state = sync(&mut l).await;
    for _ in 0..5 {
        let tick = sse_next_skipping(&mut listener, &["room_stats"]).await;
        let ServerEvent::ScrollTick(t) = &tick.frame.event else {
            panic!("expected scroll_tick, got {tick:?}")
        };
        assert!((t.beat - state.transport.position_at(t.server_time)).abs() < 1e-4);
        assert_eq!(t.version, state.version);
        assert!(sse_id(&tick) > last_id, "ticks take ids too");
        last_id = sse_id(&tick);
    }
    assert_eq!(listener.last_event_id(), Some(last_id.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_has_event_stream_headers() {
    let server = TestServer::start().await;
    let response = http()
        .get(server.http_url("/sse/band"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(header("content-type").starts_with("text/event-stream"));
    assert!(header("cache-control").contains("no-cache"));
    assert_eq!(header("x-accel-buffering"), "no");
    assert_eq!(header("x-content-type-options"), "nosniff");
    // The body starts with the snapshot, in `id:` / `data:` lines.
    let mut body = response;
    let chunk = body.chunk().await.unwrap().expect("first chunk");
    let text = String::from_utf8(chunk.to_vec()).unwrap();
    assert!(text.starts_with("id: "), "{text}");
    assert!(text.contains("\ndata: {\"type\":\"snapshot\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_the_missed_state_events_without_a_snapshot() {
    let server = TestServer::start().await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let mut first = sse(&server, "band", None).await;
    sse_until(&mut first, |e| e.frame.event.type_name() == "room_stats").await;
    let last = first.last_event_id().expect("ids seen").to_owned();
    drop(first);
    room_stats_counts(&mut l, 1, 0).await;

    // Missed while away: three state changes (and the room_stats of leaving).
    let mut missed = Vec::new();
    for event in [tempo(90.0), message("bridge"), seek(3.0)] {
        l.send(event).await.unwrap();
        missed.push(next_broadcast(&mut l).await);
    }

    let mut again = sse(&server, "band", Some(&last)).await;
    let replayed = sse_until(&mut again, |e| version_of(e) == Some(snap.version + 3)).await;
    assert!(
        replayed
            .iter()
            .all(|e| e.frame.event.type_name() != "snapshot"),
        "a replay has no snapshot: {replayed:?}"
    );
    let states: Vec<&ServerFrame> = replayed
        .iter()
        .filter(|e| e.frame.event.type_name() == "state_update")
        .map(|e| &e.frame)
        .collect();
    assert_eq!(
        states,
        missed.iter().collect::<Vec<_>>(),
        "exactly the missed ones, in order"
    );
    let last: u64 = last.parse().unwrap();
    let ids: Vec<u64> = replayed.iter().map(sse_id).collect();
    assert!(
        ids[0] > last && ids.windows(2).all(|w| w[1] > w[0]),
        "{ids:?} after {last}"
    );

    // Then it is live again.
    l.send(ClientEvent::Pause(Default::default()))
        .await
        .unwrap();
    l.send(play(None)).await.unwrap();
    let live = sse_until(&mut again, |e| version_of(e) == Some(snap.version + 4)).await;
    assert!(live.iter().all(|e| e.frame.event.type_name() != "snapshot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_evicted_last_event_id_starts_over_with_a_snapshot() {
    let server = TestServer::start_with(|c| c.sse_history = 4).await;
    let (mut l, snap) = join_leader(&server, "band").await;
    let mut first = sse(&server, "band", None).await;
    sse_until(&mut first, |e| e.frame.event.type_name() == "room_stats").await;
    let old = first.last_event_id().unwrap().to_owned();
    drop(first);
    room_stats_counts(&mut l, 1, 0).await;
    for n in 0..6 {
        l.send(tempo(100.0 + f64::from(n))).await.unwrap();
        next_state_update(&mut l).await;
    }
    let current = snap.version + 6;

    for last_event_id in [old.as_str(), "999999", "not-a-number", ""] {
        let mut stream = sse(&server, "band", Some(last_event_id)).await;
        let event = sse_next(&mut stream).await;
        match &event.frame.event {
            ServerEvent::Snapshot(s) => assert_eq!(s.version, current, "{last_event_id:?}"),
            other => panic!("Last-Event-ID {last_event_id:?}: expected a snapshot, got {other:?}"),
        }
    }

    // The newest id is still held: nothing to replay, no snapshot, just what comes next.
    let mut latest = sse(&server, "band", None).await;
    let snapshot = sse_next(&mut latest).await;
    drop(latest);
    let mut resumed = sse(&server, "band", snapshot.id.as_deref()).await;
    l.send(message("next")).await.unwrap();
    let events = sse_until(&mut resumed, |e| version_of(e) == Some(current + 1)).await;
    assert!(
        events
            .iter()
            .all(|e| e.frame.event.type_name() != "snapshot"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_ids_get_400_json() {
    let server = TestServer::start().await;
    let too_long = format!("/sse/{}", "x".repeat(129));
    for path in [
        "/sse/bad%20id",
        "/sse/",
        too_long.as_str(),
        "/sse/a:b",
        "/sse/caf%C3%A9",
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["success"], false, "{path}: {body}");
        assert_eq!(body["code"], "INVALID_SESSION_ID", "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(body["timestamp"].as_f64().is_some_and(|t| t > 1.6e12));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_repo_sessions_and_listener_counts() {
    let server = TestServer::start().await;
    let (mut member, _) = join_follower(&server, "owner/repo").await;

    let mut one = sse(&server, "owner/repo", None).await;
    let first = sse_next(&mut one).await;
    let ServerEvent::Snapshot(snap) = &first.frame.event else {
        panic!("expected snapshot, got {first:?}")
    };
    assert_eq!(snap.session_id, "owner/repo");
    let mut two = sse(&server, "owner/repo", None).await;
    sse_next(&mut two).await;
    let stats = room_stats_counts(&mut member, 1, 2).await;
    assert_eq!(stats.session_id, "owner/repo");
    let (_, info) = get_json(&server, "/sessions/owner/repo").await;
    assert_eq!(info["listeners"], 2);

    drop(one);
    room_stats_counts(&mut member, 1, 1).await;
    // The remaining listener hears the count drop too.
    sse_until(
        &mut two,
        |e| matches!(&e.frame.event, ServerEvent::RoomStats(s) if s.listeners == 1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_alone_keeps_a_new_session_alive() {
    let server = TestServer::start().await;
    let mut stream = sse(&server, "quiet", None).await;
    let first = sse_next(&mut stream).await;
    let ServerEvent::Snapshot(snap) = &first.frame.event else {
        panic!("expected snapshot, got {first:?}")
    };
    assert_eq!(
        (snap.version, snap.leader_id.as_deref(), snap.members.len()),
        (0, None, 0)
    );
    assert!(!snap.transport.playing);
    let (status, info) = get_json(&server, "/sessions/quiet").await;
    assert_eq!(status, 200);
    assert_eq!(
        (info["live"].as_bool(), info["listeners"].as_u64()),
        (Some(true), Some(1))
    );

    // A member joining later is announced to the listener.
    let (_m, _) = join_leader(&server, "quiet").await;
    let events = sse_until(&mut stream, |e| e.frame.event.type_name() == "state_update").await;
    let ServerEvent::StateUpdate(state) = &events.last().unwrap().frame.event else {
        unreachable!()
    };
    assert_eq!(state.version, 1, "a new leader is announced");
}

/// A listener that stops reading is ended as a slow consumer (PROTOCOL.md section 9): once
/// more than `OUTBOX_MAX_FRAMES` state events wait for it, its backlog is discarded and its
/// stream simply ends, without a `shutdown` event; it is counted, and leaves the session.
/// The members carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_does_not_read_is_ended_as_slow() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLOW: &str = "bandsync_slow_client_disconnects_total";
    let server = TestServer::start_with(|c| {
        c.outbox_max_frames = 8;
        c.rate_limit_max_requests = 100_000;
    })
    .await;
    let (mut leader, _) = join_leader(&server, "slow").await;

    // A plain socket with a small receive buffer, so the kernel holds little for it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut listener = socket.connect(server.addr).await.unwrap();
    let head = format!(
        "GET /sse/slow HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        server.addr
    );
    listener.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, listener.read(&mut buf))
            .await
            .expect("a response head")
            .unwrap();
        assert!(n > 0, "closed before the response head");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 200"), "{received:?}");
    room_stats_counts(&mut leader, 1, 1).await;

    // Now it reads nothing while the leader changes the message (1000 four-byte
    // characters, each text different) until the server gives up on the listener. That
    // takes megabytes: the kernel's send buffer to the listener grows to 4 MiB before
    // the server's own queue fills, hence three WAITs.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let mut sent = 0;
    while metric(&server, SLOW).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ended as slow after {sent} updates"
        );
        for _ in 0..25 {
            // Four in flight: the leader's own queue holds at most OUTBOX_MAX_FRAMES (8).
            let mut texts = Vec::new();
            for _ in 0..4 {
                sent += 1;
                let text = format!("{sent:06}{}", "\u{1F3B8}".repeat(994));
                leader.send(message(&text)).await.unwrap();
                texts.push(text);
            }
            for text in texts {
                assert_eq!(next_state_update(&mut leader).await.message, text);
            }
        }
    }
    assert_eq!(
        metric(&server, SLOW).await,
        1.0,
        "only the listener was slow"
    );

    // Reading again, it finds what the kernel held, then the end of the stream (the last
    // chunk of the chunked body): no `shutdown` event, nothing after the end.
    let ended = tokio::time::timeout(WAIT, async {
        while !received.ends_with(b"\r\n0\r\n\r\n") {
            let n = listener.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed instead of ending the stream");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end");
    let text = String::from_utf8_lossy(&received);
    assert!(
        !text.contains("\"shutdown\""),
        "a slow listener gets no shutdown event"
    );
    assert!(
        text.matches("\"state_update\"").count() < sent,
        "the backlog was discarded, not delivered"
    );

    // It left the session; the leader carries on.
    room_stats_counts(&mut leader, 1, 0).await;
    let (status, info) = get_json(&server, "/sessions/slow").await;
    assert_eq!((status, &info["listeners"]), (200, &serde_json::json!(0)));
    sync(&mut leader).await;
}
