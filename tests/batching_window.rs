//! The engine's batching window (`BATCH_INTERVAL_MS`) holds commands that arrive soon after a
//! batch began, to coalesce bursts, but never a `join_session`: the joiner waits for its
//! snapshot and holding the join would merge nothing. A join arriving while commands are
//! held releases them with it.

mod common;
mod support;

use bandsync_client::protocol::Role;
use common::TestServer;
use std::time::{Duration, Instant};
use support::*;

/// Far longer than anything else here takes, so a hold shows.
const WINDOW_MS: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_answered_at_once_and_releases_what_the_window_held() {
    let server = TestServer::start_with(|c| {
        c.batch_interval_ms = WINDOW_MS;
        // No tick deadline cuts the window short (a playing session would have one).
        c.scroll_tick_interval = 60_000;
    })
    .await;
    let mut joiner = connect(&server).await;
    // Let the batch of the two connections' registrations fall out of its window.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 200)).await;
    let (mut leader, _) = join_leader(&server, "window").await;

    // Within the window of the leader's join: held.
    let tempo_id = leader.send(tempo(140.0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let sent = Instant::now();
    let snapshot = joiner
        .join("window", Some(Role::Follower), None)
        .await
        .expect("a snapshot");
    let waited = sent.elapsed();
    assert_eq!(snapshot.members.len(), 2);
    assert!(
        waited < Duration::from_millis(WINDOW_MS / 2),
        "the join waited {waited:?}, as if held by the {WINDOW_MS} ms window"
    );
    // The held command went out with the join's batch, not at the window's end.
    loop {
        let frame = next_frame(&mut leader).await;
        if frame.id.as_ref() == Some(&tempo_id) || frame.event.type_name() == "state_update" {
            break;
        }
    }
    assert!(
        sent.elapsed() < Duration::from_millis(WINDOW_MS / 2),
        "the held set_tempo was answered {:?} after the join",
        sent.elapsed()
    );
    server.shutdown().await;
}
