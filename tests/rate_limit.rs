//! The per-socket rate limit: events over it are dropped and answered with
//! `rate_limit_exceeded` (id echoed, `retryAfterMs`), a socket that keeps going is closed
//! with 1008, and the metrics count both.
//!
//! The limits are set so that no token refills while a burst is being sent (10 per 30 s:
//! one token every 3 s), which makes the counts exact without timing assumptions.

mod common;
mod support;

use bandsync_client::protocol::client::Heartbeat;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{close, ClientEvent, RequestId};
use bandsync_client::WsClient;
use common::TestServer;
use std::time::Duration;
use support::*;

async fn strict_server() -> TestServer {
    TestServer::start_with(|c| {
        c.rate_limit_max_requests = 10;
        c.rate_limit_window_ms = 30_000;
        c.rate_limit_close_after = 5;
    })
    .await
}

fn heartbeat() -> ClientEvent {
    ClientEvent::Heartbeat(Heartbeat { t0: 1.0 })
}

/// Uses up the socket's burst: the join already counted as one event.
async fn spend_the_burst(client: &mut WsClient, burst: usize) {
    for _ in 1..burst {
        let frame = request(client, heartbeat()).await;
        assert_eq!(frame.event.type_name(), "heartbeat_response", "{frame:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_limit_are_dropped_and_answered_with_rate_limit_exceeded() {
    let server = strict_server().await;
    let (mut leader, snap) = join_leader(&server, "band").await;
    let (mut m, _) = join_follower(&server, "band").await;
    spend_the_burst(&mut m, 10).await;

    // Over the limit: the reply echoes the id and says when to retry; the event is dropped.
    for event in [message("dropped"), ClientEvent::SyncRequest] {
        let what = event.type_name();
        let frame = request(&mut m, event).await;
        match frame.event {
            ServerEvent::RateLimitExceeded(r) => {
                assert!((1..=3_000).contains(&r.retry_after_ms), "{what}: {r:?}");
            }
            other => panic!("{what}: expected rate_limit_exceeded, got {other:?}"),
        }
    }
    // Also for frames the server could not even decode, without an id to echo.
    m.send_raw_text("{oops".into()).await.unwrap();
    let frame = next_skipping(&mut m, &["room_stats"]).await;
    assert_eq!(
        (frame.event.type_name(), frame.id),
        ("rate_limit_exceeded", None)
    );

    // The dropped message never reached the session...
    let state = sync(&mut leader).await;
    assert_eq!((state.version, state.message.as_str()), (snap.version, ""));
    assert_eq!(
        metric(&server, "bandsync_rate_limit_violations_total").await,
        3.0
    );
    assert_eq!(
        metric(&server, "bandsync_rate_limit_disconnects_total").await,
        0.0
    );

    // ...and the limited socket is still open and still hears the session.
    leader.send(tempo(99.0)).await.unwrap();
    let state = next_state_update(&mut m).await;
    assert_eq!(
        (state.version, state.transport.tempo),
        (snap.version + 1, 99.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_keeps_going_is_closed_with_1008() {
    let server = strict_server().await;
    let (mut other, _) = join_leader(&server, "band").await;
    let (mut m, _) = join_follower(&server, "band").await;
    room_stats_counts(&mut other, 2, 0).await;

    // 9 more allowed, 5 limited (RATE_LIMIT_CLOSE_AFTER), then one too many.
    let mut ids = Vec::new();
    for n in 0..14u64 {
        let id = RequestId::from(1000 + n);
        m.send_with_id(heartbeat(), Some(id.clone())).await.unwrap();
        ids.push(id);
    }
    for (n, id) in ids.iter().enumerate() {
        let frame = next_skipping(&mut m, &["room_stats"]).await;
        assert_eq!(frame.id.as_ref(), Some(id), "replies come in order");
        let expected = if n < 9 {
            "heartbeat_response"
        } else {
            "rate_limit_exceeded"
        };
        assert_eq!(frame.event.type_name(), expected, "reply #{n}: {frame:?}");
    }
    m.send(heartbeat()).await.unwrap();
    let ending = closing(&mut m).await;

    let disconnects = "bandsync_rate_limit_disconnects_total";
    assert_eq!(wait_metric_at_least(&server, disconnects, 1.0).await, 1.0);
    let violations = metric(&server, "bandsync_rate_limit_violations_total").await;
    assert_eq!(violations, 6.0);
    // The session carries on without it.
    room_stats_counts(&mut other, 1, 0).await;
    other.send(play(None)).await.unwrap();
    assert!(next_state_update(&mut other).await.transport.playing);

    let (code, reason) = ending.unwrap_or_else(|e| panic!("expected close 1008: {e}"));
    assert_eq!(code, Some(close::POLICY_VIOLATION), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_admits_again_after_retry_after_ms() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_max_requests = 10;
        c.rate_limit_window_ms = 2_000; // one token every 200 ms
    })
    .await;
    let (mut m, _) = join_follower(&server, "band").await;
    spend_the_burst(&mut m, 10).await;
    // Keep asking until refused (a token may have refilled meanwhile on a slow machine).
    let retry_after = loop {
        let frame = request(&mut m, heartbeat()).await;
        if let ServerEvent::RateLimitExceeded(r) = frame.event {
            break r.retry_after_ms;
        }
    };
    assert!((1..=200).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_millis(retry_after + 20)).await;
    let frame = request(&mut m, ClientEvent::SyncRequest).await;
    assert_eq!(frame.event.type_name(), "sync_response", "{frame:?}");
}
