//! `room_stats` coalescing (PROTOCOL.md section 9): per session at most one `room_stats` per
//! `ROOM_STATS_INTERVAL_MS`, the first after a quiet period at once, the folded ones with
//! the counts current when they are sent.
//!
//! Spacing is asserted on the server's own `timestamp` stamps, never on when the test
//! received the frames.

mod common;
mod support;

use bandsync_client::protocol::server::{RoomStats, ServerEvent};
use bandsync_client::protocol::{ClientEvent, ErrorCode, Role};
use bandsync_client::WsClient;
use common::TestServer;
use std::time::Duration;
use support::*;

const INTERVAL_MS: u64 = 400;
/// Joiners in the burst.
const JOINERS: u64 = 24;

/// The next `room_stats` and its server timestamp (other frames are skipped).
async fn next_stats(client: &mut WsClient) -> (f64, RoomStats) {
    let frame = next_skipping(client, &["state_update", "scroll_tick"]).await;
    assert_eq!(frame.id, None, "broadcasts carry no id: {frame:?}");
    match frame.event {
        ServerEvent::RoomStats(stats) => (frame.timestamp, stats),
        other => panic!("expected room_stats, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_yields_room_stats_at_most_once_per_interval_with_current_counts() {
    let server = TestServer::start_with(|c| c.room_stats_interval_ms = INTERVAL_MS).await;
    let (mut watcher, _) = join_leader(&server, "burst").await;
    let (at_join, first) = next_stats(&mut watcher).await;
    assert_eq!((first.members, first.followers, first.listeners), (1, 0, 0));

    // After a quiet period (longer than the interval), a change is reported at once: one
    // more member, then the burst.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + 100)).await;
    let (first_joiner, snapshot) = join_follower(&server, "burst").await;
    let mut joiners = vec![first_joiner];
    for _ in 1..JOINERS {
        let mut client = connect(&server).await;
        client
            .send(join_event("burst", Some(Role::Follower), None))
            .await
            .unwrap();
        joiners.push(client);
    }

    let mut seen = vec![(at_join, first)];
    // "At once": in the batch that applied the join. Half the interval is far beyond any
    // batch, and far below what waiting for the interval would take.
    let (at, stats) = next_stats(&mut watcher).await;
    assert!(stats.members >= 2, "{stats:?}");
    assert!(
        at - snapshot.server_time < INTERVAL_MS as f64 / 2.0,
        "the first room_stats after a quiet period came {:.3} ms after the join",
        at - snapshot.server_time
    );
    seen.push((at, stats));
    while seen.last().unwrap().1.members < 1 + JOINERS {
        let (at, stats) = next_stats(&mut watcher).await;
        let (previous_at, previous) = seen.last().unwrap();
        assert!(
            at - previous_at >= INTERVAL_MS as f64 - TIME_SLACK,
            "room_stats {:.3} ms apart (interval {INTERVAL_MS} ms): {previous:?} then {stats:?}",
            at - previous_at
        );
        // Only joins happen: the counts never go back, and they are exact.
        assert!(
            stats.members > previous.members,
            "{previous:?} then {stats:?}"
        );
        assert_eq!(stats.followers, stats.members - 1);
        assert_eq!(stats.listeners, 0);
        seen.push((at, stats));
    }
    assert_eq!(seen.last().unwrap().1.members, 1 + JOINERS);
    // Far fewer room_stats than joins; how many depends on how fast the joins came.
    assert!(
        seen.len() < 1 + JOINERS as usize,
        "{} room_stats for {JOINERS} joins",
        seen.len()
    );
    // The last change was reported, so nothing more comes.
    assert_no_frame_of(
        &mut watcher,
        &["room_stats"],
        Duration::from_millis(2 * INTERVAL_MS),
    )
    .await;

    // Every member got the same latest counts: the joiners' last room_stats is the final one.
    let last = seen.last().unwrap().1.clone();
    for joiner in &mut joiners {
        let final_stats = room_stats_counts(joiner, 1 + JOINERS, 0).await;
        assert_eq!(final_stats, last);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_within_the_interval_waits_for_it_then_carries_the_current_counts() {
    const INTERVAL_MS: u64 = 1_500;
    let server = TestServer::start_with(|c| c.room_stats_interval_ms = INTERVAL_MS).await;
    let (mut watcher, _) = join_leader(&server, "folded").await;
    let (sent_at, first) = next_stats(&mut watcher).await;
    assert_eq!(
        first.members, 1,
        "the first room_stats of a session comes at once"
    );
    // Two changes inside the interval: one join, one leave and another join.
    let (_stays, _) = join_follower(&server, "folded").await;
    let (mut goes, _) = join_follower(&server, "folded").await;
    goes.send(ClientEvent::LeaveSession).await.unwrap();
    // No reply to a leave; a later request is answered after it.
    assert_eq!(
        expect_error(&mut goes, ClientEvent::SyncRequest).await,
        ErrorCode::NotInSession
    );
    let (_third, _) = join_follower(&server, "folded").await;
    // Folded into one, sent once the interval has passed, with the counts of that moment.
    let (at, stats) = next_stats(&mut watcher).await;
    assert!(
        at - sent_at >= INTERVAL_MS as f64 - TIME_SLACK,
        "sent {:.3} ms after the previous one",
        at - sent_at
    );
    assert_eq!(
        (stats.members, stats.followers, stats.listeners),
        (3, 2, 0),
        "{stats:?}"
    );
    assert_eq!(stats.leader_id, first.leader_id);
    assert_no_frame_of(&mut watcher, &["room_stats"], Duration::from_millis(500)).await;
}
