//! A full engine queue: a `/ws` message that finds no room waits for it, and the connection
//! reads nothing more meanwhile (backpressure reaches the socket, not a queue of ours).
//! Nothing is lost or reordered, and the rest of the session carries on.

mod common;
mod support;

use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::RequestId;
use common::TestServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_engine_queue_delays_messages_but_loses_none() {
    let server = TestServer::start_with(|c| {
        // Room for one message: a burst finds the queue full after its first.
        c.engine_queue_capacity = 1;
        c.rate_limit_max_requests = 100_000;
    })
    .await;
    let (mut leader, _) = join_leader(&server, "band").await;
    let (mut follower, _) = join_follower(&server, "band").await;

    // One burst of requests the engine answers, sent before reading any reply.
    const BURST: usize = 300;
    for i in 0..BURST {
        let text = format!(r#"{{"type":"sync_request","id":"s{i}"}}"#);
        leader.send_raw_text(text).await.unwrap();
    }
    for i in 0..BURST {
        let frame = next_skipping(&mut leader, &["room_stats", "state_update"]).await;
        assert!(
            matches!(frame.event, ServerEvent::SyncResponse(_)),
            "reply {i}: {frame:?}"
        );
        let id = format!("s{i}");
        assert_eq!(frame.id, Some(RequestId::from(id.as_str())), "in order");
    }
    let full = metric(&server, "bandsync_engine_queue_full_total").await;
    assert!(full >= 1.0, "the burst never found the queue full ({full})");

    // The session still works for everyone.
    leader.send(tempo(133.0)).await.unwrap();
    assert_eq!(
        next_state_update(&mut follower).await.transport.tempo,
        133.0
    );
    assert_eq!(next_state_update(&mut leader).await.transport.tempo, 133.0);
}
