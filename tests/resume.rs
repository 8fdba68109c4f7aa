//! Connection state recovery: a dropped member's `resumeToken` restores its `clientId` and
//! role within `RECOVERY_WINDOW_MS` (a leader's seat is held meanwhile), is void after it
//! (and the seat is released), only works for its own session, and takes over a live
//! connection (closing the old one with 4002).

mod common;
mod support;

use bandsync_client::protocol::server::Snapshot;
use bandsync_client::protocol::{close, ErrorCode, JoinSession, Role};
use bandsync_client::{WsClient, DEFAULT_REQUEST_TIMEOUT};
use common::TestServer;
use support::*;

async fn resume(
    server: &TestServer,
    session: &str,
    token: &str,
    role: Option<Role>,
) -> (WsClient, Snapshot) {
    let mut client = connect(server).await;
    let join = JoinSession {
        session_id: session.into(),
        name: None,
        role,
        resume_token: Some(token.into()),
        ..Default::default()
    };
    let snapshot = client
        .join_with(join, DEFAULT_REQUEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("join with token: {e}"));
    (client, snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_within_the_window_restores_identity_and_leadership() {
    let server = TestServer::start().await; // 30 s window
    let mut a = connect(&server).await;
    let snap_a = a
        .join("band", Some(Role::Leader), Some("ada"))
        .await
        .unwrap();
    assert_eq!(snap_a.role, Role::Leader);
    let (mut b, _) = join_follower(&server, "band").await;
    room_stats_counts(&mut b, 2, 0).await;

    a.close().await.unwrap(); // dropped, not left
    let stats = room_stats_counts(&mut b, 1, 0).await;
    assert_eq!(
        stats.leader_id.as_deref(),
        Some(snap_a.client_id.as_str()),
        "seat held"
    );
    assert_eq!(stats.followers, 1, "only connected members count");

    // Nobody can take the held seat meanwhile.
    assert_eq!(
        expect_error(&mut b, set_role(Role::Leader)).await,
        ErrorCode::LeaderTaken
    );
    assert_eq!(expect_error(&mut b, play(None)).await, ErrorCode::NotLeader);
    let (_c, snap_c) = join(&server, "band", Some(Role::Leader)).await;
    assert_eq!(snap_c.role, Role::Follower);
    let (_, info) = get_json(&server, "/sessions/band").await;
    assert_eq!(info["leaderId"].as_str(), Some(snap_a.client_id.as_str()));

    let (mut a2, snap) = resume(&server, "band", &snap_a.resume_token, None).await;
    assert!(snap.resumed);
    assert_eq!(snap.client_id, snap_a.client_id);
    assert_eq!(snap.role, Role::Leader);
    assert_eq!(snap.leader_id.as_deref(), Some(snap_a.client_id.as_str()));
    assert_eq!(
        snap.version, snap_a.version,
        "getting the held seat back changes nothing"
    );
    assert_ne!(
        snap.resume_token, snap_a.resume_token,
        "a fresh token on every snapshot"
    );
    let me = snap
        .members
        .iter()
        .find(|m| m.client_id == snap.client_id)
        .expect("listed");
    assert_eq!((me.name.as_deref(), me.role), (Some("ada"), Role::Leader));
    room_stats_counts(&mut b, 3, 0).await;

    // In charge again: the next state_update B sees is A's command.
    a2.send(play(None)).await.unwrap();
    let state = next_state_update(&mut b).await;
    assert_eq!(state.version, snap_a.version + 1);
    assert!(state.transport.playing);

    // The used token is spent.
    let (_d, snap_d) = resume(&server, "band", &snap_a.resume_token, None).await;
    assert!(!snap_d.resumed);
    assert_ne!(snap_d.client_id, snap_a.client_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_live_identity_replaces_the_old_connection_with_4002() {
    let server = TestServer::start().await;
    let (mut l, snap_l) = join_leader(&server, "band").await;
    let mut f = connect(&server).await;
    let snap_f = f.join("band", None, Some("fred")).await.unwrap();
    room_stats_counts(&mut l, 2, 0).await;

    let (mut f2, snap) = resume(&server, "band", &snap_f.resume_token, None).await;
    assert!(snap.resumed);
    assert_eq!(
        (snap.client_id.as_str(), snap.role),
        (snap_f.client_id.as_str(), Role::Follower)
    );
    assert_eq!(expect_closed(&mut f).await.0, Some(close::REPLACED));

    // A live leader too: the seat moves with the identity, without a version change.
    let (mut l2, snap) = resume(&server, "band", &snap_l.resume_token, None).await;
    assert!(snap.resumed);
    assert_eq!(
        (snap.client_id.as_str(), snap.role),
        (snap_l.client_id.as_str(), Role::Leader)
    );
    assert_eq!(snap.version, snap_l.version);
    assert_eq!(expect_closed(&mut l).await.0, Some(close::REPLACED));

    let stats = room_stats_counts(&mut f2, 2, 0).await;
    assert_eq!(stats.leader_id.as_deref(), Some(snap_l.client_id.as_str()));
    l2.send(tempo(140.0)).await.unwrap();
    assert_eq!(next_state_update(&mut f2).await.version, snap_l.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_window_the_seat_is_released_and_the_token_is_void() {
    let server = TestServer::start_with(|c| c.recovery_window_ms = 300).await;
    let (a, snap_a) = join_leader(&server, "band").await;
    let (mut b, snap_b) = join_follower(&server, "band").await;
    room_stats_counts(&mut b, 2, 0).await;

    a.close().await.unwrap();
    // At the window's end the seat goes: version +1, state_update and room_stats.
    let state = next_state_update(&mut b).await;
    assert_eq!((state.version, state.leader_id), (snap_a.version + 1, None));
    let stats = room_stats_where(&mut b, |s| s.leader_id.is_none()).await;
    assert_eq!((stats.members, stats.followers), (1, 1));

    b.send(set_role(Role::Leader)).await.unwrap();
    let state = next_state_update(&mut b).await;
    assert_eq!(state.leader_id.as_deref(), Some(snap_b.client_id.as_str()));

    // The old token now gives a brand-new member, and no seat.
    let (_a2, snap) = resume(&server, "band", &snap_a.resume_token, Some(Role::Leader)).await;
    assert!(!snap.resumed);
    assert_ne!(snap.client_id, snap_a.client_id);
    assert_eq!(snap.role, Role::Follower);
    assert_eq!(snap.leader_id.as_deref(), Some(snap_b.client_id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_only_resumes_its_own_session() {
    let server = TestServer::start().await;
    let (_keep, _) = join_follower(&server, "first").await;
    let mut a = connect(&server).await;
    let snap_a = a.join("first", None, Some("ada")).await.unwrap();
    a.close().await.unwrap();

    let (mut a2, snap) = resume(&server, "second", &snap_a.resume_token, None).await;
    assert!(
        !snap.resumed,
        "a token for `first` does not resume in `second`"
    );
    assert_ne!(snap.client_id, snap_a.client_id);
    assert_eq!(snap.session_id, "second");

    let (_x, snap) = resume(&server, "first", "00000000000000000000000000000000", None).await;
    assert!(!snap.resumed, "an unknown token is just ignored");

    // The token is still good where it belongs.
    let join = JoinSession {
        session_id: "first".into(),
        name: None,
        role: None,
        resume_token: Some(snap_a.resume_token.clone()),
        ..Default::default()
    };
    let snap = a2.join_with(join, DEFAULT_REQUEST_TIMEOUT).await.unwrap();
    assert!(snap.resumed);
    assert_eq!(snap.client_id, snap_a.client_id);
    assert_eq!(
        snap.members
            .iter()
            .find(|m| m.client_id == snap.client_id)
            .unwrap()
            .name
            .as_deref(),
        Some("ada")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_held_at_the_drop_is_restored_not_the_one_joined_with() {
    let server = TestServer::start().await;
    let (mut a, snap_a) = join_follower(&server, "band").await;
    let (mut b, _) = join_follower(&server, "band").await;
    a.send(set_role(Role::Leader)).await.unwrap();
    let state = next_state_update(&mut b).await;
    assert_eq!(state.leader_id.as_deref(), Some(snap_a.client_id.as_str()));
    a.close().await.unwrap();
    room_stats_counts(&mut b, 1, 0).await;

    let (mut a2, snap) = resume(&server, "band", &snap_a.resume_token, None).await;
    assert!(snap.resumed);
    assert_eq!(
        snap.role,
        Role::Leader,
        "leadership taken after joining comes back"
    );
    assert_eq!(snap.version, state.version);
    a2.send(play(None)).await.unwrap();
    assert!(next_state_update(&mut b).await.transport.playing);
}
