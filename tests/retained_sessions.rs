//! The store of retained sessions is bounded (issue "Safe to expose", finding 6): one socket
//! cycling join, long message, leave used to leave a record behind per session, without
//! limit and uncounted. Now at most `MAX_RETAINED_SESSIONS` are kept, the one saved longest
//! ago is forgotten first, and `/health` and `/metrics` count them.

mod common;
mod support;

use bandsync_client::protocol::ClientEvent;
use common::TestServer;
use serde_json::Value;
use support::{connect, message, metrics_text, next_state_update, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_message_leave_cycles_keep_at_most_the_cap_and_forget_the_oldest() {
    let server = TestServer::start_with(|c| {
        c.max_retained_sessions = 50;
        c.rate_limit_max_requests = 10_000;
    })
    .await;
    let mut client = connect(&server).await;
    let long = "x".repeat(990);
    for i in 0..200 {
        let session = format!("cycle-{i}");
        client.join(&session, None, None).await.unwrap();
        client.send(message(&format!("{i} {long}"))).await.unwrap();
        next_state_update(&mut client).await;
        client.send(ClientEvent::LeaveSession).await.unwrap();
    }
    // The last leave is processed before the next join's snapshot comes back.
    client.join("probe", None, None).await.unwrap();

    let health: Value = reqwest::get(server.http_url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let retained = health["retainedSessions"]
        .as_i64()
        .expect("retainedSessions");
    assert!(retained <= 50, "{retained} retained: {health}");
    assert!(retained >= 40, "the cap is used, not emptied: {health}");
    let metrics = metrics_text(&server).await;
    let evicted: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("bandsync_retained_sessions_evicted_total ")?
                .parse()
                .ok()
        })
        .expect("the eviction counter");
    assert!(evicted >= 150.0, "{evicted} evicted");

    // The newest kept their state; the oldest were forgotten and start fresh.
    let mut fresh = connect(&server).await;
    let newest = tokio::time::timeout(WAIT, fresh.join("cycle-199", None, None))
        .await
        .unwrap()
        .unwrap();
    assert!(newest.message.starts_with("199 "), "{:?}", newest.message);
    let oldest = fresh.join("cycle-0", None, None).await.unwrap();
    assert_eq!(oldest.message, "", "cycle-0 was forgotten");
    assert_eq!(oldest.version, 0);
}
