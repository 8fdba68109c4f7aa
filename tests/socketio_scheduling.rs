//! Scheduled transport changes and the chord sheet through `/socket.io/`: the real
//! `socket.io-client` runs `tests/socketio/scenarios/schedule.mjs` (acknowledgements of
//! scheduled commands and of `set_sheet`, the announcement, the activation at its instant,
//! `INVALID_SCHEDULE`, the `sheet` event). Needs node; see `tests/socketio_support`.

mod common;
mod socketio_support;

use common::TestServer;
use socketio_support::{node_ready, run_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_apps_schedule_changes_with_acks_and_get_the_sheet() {
    if !node_ready().await {
        return;
    }
    let server = TestServer::start().await;
    run_scenario("schedule", &[server.base_url()], &[]).await;
    server.shutdown().await;
}
