//! Resume with `lastVersion`: a client that drops and resumes within the recovery window
//! gets every `state_update` it missed, in order and marked `replayed`, before its
//! snapshot, and keeps its identity and role. When the session's log no longer holds what
//! it missed (or it does not say what it saw, or the resume fails), it gets the snapshot
//! alone, as before.

mod common;
mod support;

use bandsync_client::protocol::server::{ServerEvent, SessionState, Snapshot};
use bandsync_client::protocol::{JoinSession, Role};
use bandsync_client::WsClient;
use common::TestServer;
use support::*;

/// Joins `session` with `token` and `last_version`; returns the client, its snapshot and
/// the frames that came before the snapshot (kept by the client library, in order).
async fn resume_from(
    server: &TestServer,
    session: &str,
    token: &str,
    last_version: Option<u64>,
) -> (WsClient, Snapshot, Vec<SessionState>) {
    let mut client = connect(server).await;
    let join = JoinSession {
        session_id: session.into(),
        resume_token: Some(token.into()),
        last_version,
        ..JoinSession::default()
    };
    let snapshot = client.join_with(join, WAIT).await.expect("resume");
    let mut before = Vec::new();
    for _ in 0..client.buffered_len() {
        match next_frame(&mut client).await.event {
            ServerEvent::StateUpdate(state) => before.push(state),
            other => panic!("only replayed state_updates precede the snapshot: {other:?}"),
        }
    }
    (client, snapshot, before)
}

/// The leader changes the tempo `n` times and sees each change applied.
async fn change_tempo(leader: &mut WsClient, n: usize) -> u64 {
    let mut version = 0;
    for i in 0..n {
        leader.send(tempo(100.0 + i as f64)).await.unwrap();
        version = next_state_update(leader).await.version;
    }
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_follower_gets_every_missed_version_in_order_then_its_snapshot() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (follower, snap) = join_follower(&server, "band").await;
    room_stats_counts(&mut leader, 2, 0).await;
    follower.close().await.unwrap(); // dropped, not left
    room_stats_counts(&mut leader, 1, 0).await;

    let newest = change_tempo(&mut leader, 3).await;
    assert_eq!(newest, snap.version + 3);
    let (mut again, resumed, replayed) =
        resume_from(&server, "band", &snap.resume_token, Some(snap.version)).await;

    let versions: Vec<u64> = replayed.iter().map(|s| s.version).collect();
    assert_eq!(
        versions,
        [snap.version + 1, snap.version + 2, snap.version + 3]
    );
    assert!(replayed.iter().all(|s| s.replayed), "marked as replayed");
    let tempos: Vec<f64> = replayed.iter().map(|s| s.transport.tempo).collect();
    assert_eq!(tempos, [100.0, 101.0, 102.0], "each as it was then");
    assert!(resumed.resumed);
    assert_eq!(resumed.replay_count, 3);
    assert_eq!(resumed.version, newest);
    assert_eq!(
        (resumed.client_id.as_str(), resumed.role),
        (snap.client_id.as_str(), Role::Follower),
        "identity and role kept"
    );

    // Live events follow, no longer marked.
    leader.send(tempo(150.0)).await.unwrap();
    let live = next_state_update(&mut again).await;
    assert_eq!((live.version, live.replayed), (newest + 1, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_leader_keeps_its_seat_and_an_up_to_date_client_gets_no_replay() {
    let server = TestServer::start().await;
    let (leader, snap) = join_leader(&server, "band").await;
    let (mut follower, _) = join_follower(&server, "band").await;
    room_stats_counts(&mut follower, 2, 0).await;
    leader.close().await.unwrap();
    room_stats_counts(&mut follower, 1, 0).await;

    let (mut again, resumed, replayed) =
        resume_from(&server, "band", &snap.resume_token, Some(snap.version)).await;
    assert!(replayed.is_empty(), "nothing changed meanwhile");
    assert_eq!(resumed.replay_count, 0);
    assert!(resumed.resumed);
    assert_eq!(
        (resumed.client_id.as_str(), resumed.role),
        (snap.client_id.as_str(), Role::Leader)
    );
    again.send(tempo(90.0)).await.unwrap();
    assert_eq!(
        next_state_update(&mut follower).await.version,
        snap.version + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_longer_than_the_log_gets_the_snapshot_alone() {
    let server = TestServer::start_with(|c| c.resume_history = 2).await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (follower, snap) = join_follower(&server, "band").await;
    room_stats_counts(&mut leader, 2, 0).await;
    follower.close().await.unwrap();
    room_stats_counts(&mut leader, 1, 0).await;
    let newest = change_tempo(&mut leader, 3).await;

    let (_again, resumed, replayed) =
        resume_from(&server, "band", &snap.resume_token, Some(snap.version)).await;
    assert!(
        replayed.is_empty(),
        "version {} was evicted",
        snap.version + 1
    );
    assert!(resumed.resumed);
    assert_eq!((resumed.replay_count, resumed.version), (0, newest));
    assert_eq!(
        metric(
            &server,
            r#"bandsync_resume_replays_total{outcome="snapshot"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_missed_events_than_half_the_outbox_holds_get_the_snapshot_alone() {
    let server = TestServer::start_with(|c| c.outbox_max_frames = 8).await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (follower, snap) = join_follower(&server, "band").await;
    room_stats_counts(&mut leader, 2, 0).await;
    follower.close().await.unwrap();
    room_stats_counts(&mut leader, 1, 0).await;
    let newest = change_tempo(&mut leader, 5).await;

    let (_again, resumed, replayed) =
        resume_from(&server, "band", &snap.resume_token, Some(snap.version)).await;
    assert!(replayed.is_empty(), "5 events are over the budget of 4");
    assert_eq!((resumed.replay_count, resumed.version), (0, newest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_larger_than_half_the_outbox_gets_the_snapshot_alone() {
    // Three 1000-character messages are ~3.5 KB of replay: over half of a 4 KiB outbox.
    let server = TestServer::start_with(|c| c.outbox_max_bytes = 4096).await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (follower, snap) = join_follower(&server, "band").await;
    room_stats_counts(&mut leader, 2, 0).await;
    follower.close().await.unwrap();
    room_stats_counts(&mut leader, 1, 0).await;
    let mut newest = 0;
    for c in ['a', 'b', 'c'] {
        leader
            .send(message(&c.to_string().repeat(1000)))
            .await
            .unwrap();
        newest = next_state_update(&mut leader).await.version;
    }

    let (_again, resumed, replayed) =
        resume_from(&server, "band", &snap.resume_token, Some(snap.version)).await;
    assert!(
        replayed.is_empty(),
        "a replay must not overflow the new connection"
    );
    assert!(resumed.resumed);
    assert_eq!((resumed.replay_count, resumed.version), (0, newest));
    assert_eq!(resumed.message, "c".repeat(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_last_version_or_a_valid_token_a_join_replays_nothing() {
    let server = TestServer::start().await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (follower, snap) = join_follower(&server, "band").await;
    room_stats_counts(&mut leader, 2, 0).await;
    follower.close().await.unwrap();
    room_stats_counts(&mut leader, 1, 0).await;
    change_tempo(&mut leader, 2).await;

    // A client unaware of replay: the snapshot alone, as before.
    let (_a, resumed, replayed) = resume_from(&server, "band", &snap.resume_token, None).await;
    assert!(resumed.resumed);
    assert!(replayed.is_empty());
    assert_eq!(resumed.replay_count, 0);

    // A spent token: a new member, whose lastVersion means nothing.
    let (_b, fresh, replayed) =
        resume_from(&server, "band", &snap.resume_token, Some(snap.version)).await;
    assert!(!fresh.resumed);
    assert!(replayed.is_empty());

    // A lastVersion from the future is not one of this session's.
    let (c, snap_c) = join_follower(&server, "band").await;
    c.close().await.unwrap();
    room_stats_counts(&mut leader, 3, 0).await;
    let (_c, resumed, replayed) = resume_from(
        &server,
        "band",
        &snap_c.resume_token,
        Some(snap_c.version + 5),
    )
    .await;
    assert!(resumed.resumed);
    assert!(replayed.is_empty());
    assert_eq!(
        metric(&server, "bandsync_resume_replayed_events_total").await,
        0.0
    );
}
