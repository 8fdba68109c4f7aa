//! The engine's two ways of writing a fan-out into its sockets: batched through io_uring
//! (`IO_URING=auto`, where the kernel allows it) and one `send` each (`IO_URING=off`, or no
//! io_uring). Both deliver every frame, in order, to every member.

mod common;
mod support;

use bandsync::config::IoUringUse;
use common::TestServer;
use support::*;

/// Three followers see ten tempo changes in order; returns the server's count of batched
/// socket writes afterwards.
async fn fan_out_ten_changes(server: &TestServer) -> f64 {
    let (mut leader, _) = join_leader(server, "band").await;
    let mut followers = Vec::new();
    for _ in 0..3 {
        followers.push(join_follower(server, "band").await.0);
    }
    for follower in &mut followers {
        room_stats_counts(follower, 4, 0).await;
    }
    for step in 0..10 {
        let bpm = 100.0 + f64::from(step);
        leader.send(tempo(bpm)).await.unwrap();
        for follower in &mut followers {
            assert_eq!(next_state_update(follower).await.transport.tempo, bpm);
        }
        assert_eq!(next_state_update(&mut leader).await.transport.tempo, bpm);
    }
    metric(server, "bandsync_ws_sends_batched_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_goes_through_io_uring_where_the_kernel_allows_it() {
    let server = TestServer::start().await;
    let batched = fan_out_ten_changes(&server).await;
    if uring_send::SendBatch::new(4).is_ok() {
        // Ten broadcasts to four sockets each, every one a batch.
        assert!(batched >= 40.0, "{batched} batched sends");
    } else {
        eprintln!("io_uring unavailable here: the server falls back to one send each");
        assert_eq!(batched, 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_io_uring_off_every_write_is_a_plain_send() {
    let server = TestServer::start_with(|c| c.io_uring = IoUringUse::Off).await;
    assert_eq!(fan_out_ten_changes(&server).await, 0.0);
}
