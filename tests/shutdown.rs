//! Graceful shutdown: every WebSocket gets close 1001, every SSE stream a final
//! `shutdown` event and then its end, and `run()` returns.

mod common;
mod support;

use bandsync_client::protocol::close;
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::{SseClient, WsClient};
use common::TestServer;
use futures_util::future::join_all;
use std::time::Duration;
use support::*;

/// Reads a stream to its end; returns the last event, which must be `shutdown`.
async fn read_to_shutdown(mut stream: SseClient) {
    let mut last = None;
    loop {
        match stream.next_event(WAIT).await {
            Ok(Some(event)) => last = Some(event),
            Ok(None) => break,
            Err(e) => panic!("sse stream failed instead of ending: {e}"),
        }
    }
    let last = last.expect("at least the snapshot");
    match &last.frame.event {
        ServerEvent::Shutdown(s) => assert_eq!(s.reason, "server shutting down"),
        other => panic!("the last event must be `shutdown`, got {other:?}"),
    }
    assert!(last.id.is_some(), "the shutdown event has an id");
}

async fn read_to_close(mut client: WsClient) {
    let (code, reason) = expect_closed(&mut client).await;
    assert_eq!(code, Some(close::GOING_AWAY), "{reason}");
    assert_eq!(reason, "server shutting down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_1001_and_ends_sse_streams() {
    let mut server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (follower, _) = join_follower(&server, "band").await;
    let (other, _) = join_leader(&server, "elsewhere").await;
    let idle = connect(&server).await; // never joined a session
    let mut listeners = Vec::new();
    for session in ["band", "band", "elsewhere", "only-listeners"] {
        let mut stream = sse(&server, session, None).await;
        sse_next(&mut stream).await;
        listeners.push(stream);
    }
    // A playing session: ticks are flowing when the server goes down.
    leader.send(play(None)).await.unwrap();
    next_state_update(&mut leader).await;
    next_tick(&mut leader).await;

    server.begin_shutdown();
    let sockets = join_all([leader, follower, other, idle].map(read_to_close));
    let streams = join_all(listeners.into_iter().map(read_to_shutdown));
    tokio::join!(sockets, streams);
    server.wait().await;

    // Nothing listens any more.
    assert!(WsClient::connect(&server.ws_url()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_stops_at_once() {
    let server = TestServer::start().await;
    let (status, _) = get_json(&server, "/health").await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_even_if_a_client_never_answers() {
    const DEADLINE: Duration = Duration::from_millis(1_000);
    /// What `run` may take beyond the deadline: joining the engine thread, on a busy
    /// machine. A server that ignored the deadline would wait for the deaf client forever.
    const SLACK: Duration = Duration::from_millis(1_000);
    let mut server =
        TestServer::start_with(|c| c.shutdown_timeout_ms = DEADLINE.as_millis() as u64).await;
    // Joined, then never read again: it will not complete the close handshake.
    let (_deaf, _) = join_follower(&server, "band").await;
    let mut stream = sse(&server, "band", None).await;
    sse_next(&mut stream).await;
    server.begin_shutdown();
    let elapsed = server.wait().await;
    assert!(
        elapsed <= DEADLINE + SLACK,
        "run returned {elapsed:?} after the stop signal; SHUTDOWN_TIMEOUT_MS is {DEADLINE:?}"
    );
}
