//! Bugs found in review, each pinned by a test over real sockets.

mod common;

use bandsync_client::protocol::client::JoinSession;
use bandsync_client::{Incoming, WsClient};
use common::TestServer;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

async fn close_code(client: &mut WsClient) -> Option<u16> {
    loop {
        match client.next_timeout(WAIT).await.expect("a close within 5 s") {
            Incoming::Closed { code, .. } => return code,
            Incoming::Frame { .. } => continue,
        }
    }
}

/// A solo leader reconnects (new socket, same resume token) before the server noticed the
/// old socket drop. Taking over the only member used to retire the session mid-join and
/// panic the engine, after which the server answered nothing.
#[tokio::test]
async fn resuming_the_only_member_while_its_socket_is_open_takes_over_cleanly() {
    let server = TestServer::start().await;
    let mut old = WsClient::connect(&server.ws_url()).await.unwrap();
    let first = old
        .join(
            "solo",
            Some(bandsync_client::protocol::Role::Leader),
            Some("ada"),
        )
        .await
        .unwrap();

    let mut new = WsClient::connect(&server.ws_url()).await.unwrap();
    let join = JoinSession {
        session_id: "solo".into(),
        resume_token: Some(first.resume_token.clone()),
        last_version: None,
        ..Default::default()
    };
    let resumed = new.join_with(join, WAIT).await.unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.client_id, first.client_id);
    assert_eq!(resumed.leader_id.as_deref(), Some(first.client_id.as_str()));
    assert_eq!(close_code(&mut old).await, Some(4002));

    // The server still works: the new connection leads, others can join, health is fine.
    let state = new.sync(WAIT).await.unwrap();
    assert_eq!(state.leader_id.as_deref(), Some(first.client_id.as_str()));
    let mut other = WsClient::connect(&server.ws_url()).await.unwrap();
    other.join("solo", None, None).await.unwrap();
    let health = reqwest::get(server.http_url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(server.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bandsync_engine_panics_total 0"),
        "{metrics}"
    );
}

/// Closes decided by the reader (rate limit, oversized frame) must reach the client as
/// close frames with their codes, not as a dropped connection.
#[tokio::test]
async fn reader_side_closes_send_their_close_codes() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_max_requests = 5;
        c.rate_limit_close_after = 3;
        c.max_frame_bytes = 64 * 1024;
    })
    .await;

    let mut flooder = WsClient::connect(&server.ws_url()).await.unwrap();
    for _ in 0..20 {
        if flooder
            .send_raw_text(r#"{"type":"sync_request"}"#.into())
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut flooder).await, Some(1008));

    let mut giant = WsClient::connect(&server.ws_url()).await.unwrap();
    let _ = giant.send_raw_text("x".repeat(100 * 1024)).await;
    assert_eq!(close_code(&mut giant).await, Some(1009));
}
