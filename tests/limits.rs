//! The server's explicit limits: `MAX_SYNC_SESSIONS` (`SESSION_LIMIT`), `MAX_SESSION_MEMBERS`
//! (`SESSION_FULL`), `MAX_CONNECTIONS` (HTTP 503 `SERVER_FULL` for WebSocket and SSE), and
//! `SNAPSHOT_MEMBER_LIMIT` (`membersTruncated`).

mod common;
mod support;

use bandsync_client::protocol::ErrorCode;
use common::TestServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_refuses_a_new_session_but_not_an_existing_one() {
    let server = TestServer::start_with(|c| c.max_sync_sessions = 2).await;
    let (_a, _) = join_follower(&server, "one").await;
    let (_b, _) = join_follower(&server, "two").await;
    let mut c = connect(&server).await;
    assert_eq!(
        expect_error(&mut c, join_event("three", None, None)).await,
        ErrorCode::SessionLimit
    );
    let snap = c
        .join("two", None, None)
        .await
        .expect("existing sessions still take members");
    assert_eq!(snap.members.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_session_members_counts_members_and_listeners() {
    let server = TestServer::start_with(|c| c.max_session_members = 2).await;
    let (mut a, _) = join_follower(&server, "band").await;
    let mut listener = sse(&server, "band", None).await;
    sse_next(&mut listener).await;
    let mut c = connect(&server).await;
    assert_eq!(
        expect_error(&mut c, join_event("band", None, None)).await,
        ErrorCode::SessionFull
    );
    let response = get(&server, "/sse/band").await;
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "SESSION_FULL", "{body}");
    // Nothing changed for those inside.
    let stats = room_stats_counts(&mut a, 1, 1).await;
    assert_eq!(stats.followers, 1);
}

async fn upgrade_status(server: &TestServer) -> (u16, serde_json::Value) {
    let response = http()
        .get(server.http_url("/ws"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_turns_further_websockets_and_streams_away_with_503() {
    let server = TestServer::start_with(|c| c.max_connections = 2).await;
    let ws = connect(&server).await;
    let mut stream = sse(&server, "band", None).await;
    sse_next(&mut stream).await;

    let (status, body) = upgrade_status(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (body["success"].as_bool(), body["code"].as_str()),
        (Some(false), Some("SERVER_FULL"))
    );
    let response = get(&server, "/sse/other").await;
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "SERVER_FULL");
    assert_eq!(
        metric(&server, "bandsync_connections_rejected_total").await,
        2.0
    );
    // Plain HTTP is not a realtime connection and still works.
    assert_eq!(get(&server, "/health").await.status().as_u16(), 200);

    // A slot frees up when a connection ends.
    ws.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while bandsync_client::WsClient::connect(&server.ws_url())
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed socket's slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_rooms_cap_the_snapshot_member_list_but_not_the_counts() {
    let server = TestServer::start_with(|c| c.snapshot_member_limit = 3).await;
    let mut members = Vec::new();
    for _ in 0..4 {
        members.push(join_follower(&server, "big").await.0);
    }
    let (mut last, snap) = join_follower(&server, "big").await;
    assert_eq!(snap.members.len(), 3);
    assert!(snap.members_truncated);
    let stats = room_stats_counts(&mut last, 5, 0).await;
    assert_eq!(stats.followers, 5);
    let (_, info) = get_json(&server, "/sessions/big").await;
    assert_eq!(info["memberCount"], 5);
}
