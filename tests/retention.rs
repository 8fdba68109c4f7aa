//! Session retention (PROTOCOL.md, *Sessions, members, roles*): once nobody is left, a
//! session's state is kept for `SESSION_RETENTION_MS`; a join in that time revives it with
//! its state, and after it the session is forgotten, so a later join starts at version 0.

mod common;
mod support;

use bandsync_client::protocol::{ClientEvent, ErrorCode};
use bandsync_client::WsClient;
use common::TestServer;
use std::time::Duration;
use support::*;
use tokio::time::Instant;

/// Long enough that a rejoin right after a leave comes well within it on a busy machine
/// (a stall of seconds has been seen), short enough to wait out in a test.
const RETENTION: Duration = Duration::from_millis(3_000);

/// Leaves `client`'s session (no reply to a leave; a later request is answered after it).
async fn leave(client: &mut WsClient) {
    client.send(ClientEvent::LeaveSession).await.unwrap();
    assert_eq!(
        expect_error(client, ClientEvent::SyncRequest).await,
        ErrorCode::NotInSession
    );
}

/// The `live` flag of `GET /sessions/{id}`, or `None` when the session is unknown (404).
async fn live(server: &TestServer, session: &str) -> Option<bool> {
    let (status, body) = get_json(server, &format!("/sessions/{session}")).await;
    match status {
        200 => Some(body["live"].as_bool().expect("live")),
        404 => {
            assert_eq!(body["code"], "SESSION_NOT_FOUND", "{body}");
            None
        }
        other => panic!("GET /sessions/{session}: {other} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rejoined_within_the_retention_keeps_its_state_and_is_forgotten_after_it() {
    let server = TestServer::start_with(|c| {
        c.session_retention_ms = RETENTION.as_millis() as u64;
    })
    .await;
    let (mut leader, _) = join_leader(&server, "kept").await;
    leader.send(tempo(97.0)).await.unwrap();
    next_state_update(&mut leader).await;
    leader.send(message("second verse")).await.unwrap();
    let state = next_state_update(&mut leader).await;
    assert_eq!(state.version, 3, "leader seat, tempo, message: {state:?}");
    leave(&mut leader).await;
    assert_eq!(
        live(&server, "kept").await,
        Some(false),
        "retained, nobody in it"
    );

    // Within the retention: the same session, with its state (the seat was given up).
    let (mut back, snapshot) = join(&server, "kept", None).await;
    assert_eq!(
        snapshot.version, 4,
        "the leave vacated the seat: {snapshot:?}"
    );
    assert_eq!(snapshot.transport.tempo, 97.0);
    assert_eq!(snapshot.message, "second verse");
    assert_eq!(snapshot.leader_id, None);
    assert_eq!(live(&server, "kept").await, Some(true));

    // Empty again, then past the retention: forgotten, no earlier.
    let left_at = Instant::now();
    leave(&mut back).await;
    let deadline = Instant::now() + RETENTION + WAIT;
    while live(&server, "kept").await.is_some() {
        assert!(
            Instant::now() < deadline,
            "still retained after {RETENTION:?} + {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        left_at.elapsed() >= RETENTION,
        "forgotten {:?} after the leave, before the {RETENTION:?} retention",
        left_at.elapsed()
    );

    // A join now starts a new session.
    let (_fresh, snapshot) = join(&server, "kept", None).await;
    assert_eq!(snapshot.version, 0, "{snapshot:?}");
    assert_eq!(snapshot.transport.tempo, 120.0);
    assert!(!snapshot.transport.playing);
    assert_eq!(snapshot.transport.beat, 0.0);
    assert_eq!(snapshot.message, "");
}
