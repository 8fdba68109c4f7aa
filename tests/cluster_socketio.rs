//! Socket.IO clients on many instances: two real `bandsync` processes on one real
//! `redis-server` (this test's own), and the real `socket.io-client` running
//! `tests/socketio/scenarios/cluster.mjs` against both. Clients on different instances share
//! a session and its leader rule, and a socket dropped from instance 1 recovers on
//! instance 2 with its id, its seat and the state events it missed, exactly like a `/ws`
//! client resuming elsewhere.
//!
//! Skips without redis-server (fails instead with `BANDSYNC_REQUIRE_REDIS`), and without
//! node as `tests/socketio_support` says.

mod cluster_support;
mod socketio_support;

use cluster_support::cluster;
use socketio_support::{node_ready, run_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_clients_share_sessions_and_recover_across_instances() {
    if !node_ready().await {
        return;
    }
    let Some((_redis, [one, two])) = cluster(&[]) else {
        return;
    };
    run_scenario("cluster", &[one.http_url(), two.http_url()], &[]).await;
}

/// A follower's `update_message` across instances, and messages missed while away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_write_the_message_across_instances() {
    if !node_ready().await {
        return;
    }
    let Some((_redis, [one, two])) = cluster(&[]) else {
        return;
    };
    run_scenario("cluster_message", &[one.http_url(), two.http_url()], &[]).await;
}

/// The first event after a recovery on another instance is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_after_a_recovery_elsewhere_is_applied() {
    if !node_ready().await {
        return;
    }
    let Some((_redis, [one, two])) = cluster(&[]) else {
        return;
    };
    run_scenario("cluster_immediate", &[one.http_url(), two.http_url()], &[]).await;
}
