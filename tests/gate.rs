//! The suite's gate can fail: a `TestServer` that goes out of scope (or is shut down)
//! fails its test when the engine counted a panic or `run` did not return `Ok`.
//!
//! The server offers no hook to make its engine panic on purpose (and should not: it would
//! be a way to crash sessions from outside), so the panic count is served here by a stand-in
//! `/metrics` endpoint that the `TestServer` is pointed at, and the real server behind it
//! is still stopped. How the gate was checked against a real engine panic is described in
//! the report of the change that added it (a temporary `panic!` in the engine's
//! `sync_request` handler made every test that sent one fail at its end).

mod common;

use common::{engine_panics, TestServer, ENGINE_PANICS};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// How long `run` may take to refuse a bad configuration.
const WAIT: Duration = Duration::from_secs(5);

/// Serves one `GET /metrics` with `body`, then stops.
fn fake_metrics(body: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    addr
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn the_panic_count_is_read_exactly() {
    let page = |n: &str| format!("# TYPE {ENGINE_PANICS} counter\n{ENGINE_PANICS} {n}\n");
    assert_eq!(engine_panics(fake_metrics(page("0"))), Ok(()));
    let one = engine_panics(fake_metrics(page("1"))).unwrap_err();
    assert!(one.contains("caught 1 panic(s)"), "{one}");
    // A page without the counter is a broken gate, not a pass.
    let missing = engine_panics(fake_metrics("bandsync_ticks_total 3\n".into())).unwrap_err();
    assert!(
        missing.contains("no bandsync_engine_panics_total"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dropped_after_an_engine_panic_fails_the_test() {
    let mut server = TestServer::start().await;
    // The real server answers: the gate passes against it.
    assert_eq!(engine_panics(server.addr), Ok(()));
    server.addr = fake_metrics(format!("{ENGINE_PANICS} 2\n"));
    let failure = catch_unwind(AssertUnwindSafe(|| drop(server))).expect_err("drop must panic");
    let message = panic_message(failure);
    assert!(message.contains("caught 2 panic(s)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shut_down_after_an_engine_panic_fails_the_test() {
    let mut server = TestServer::start().await;
    server.addr = fake_metrics(format!("{ENGINE_PANICS} 1\n"));
    let failure = catch_unwind(AssertUnwindSafe(|| server.begin_shutdown()))
        .expect_err("begin_shutdown must panic");
    assert!(panic_message(failure).contains("caught 1 panic(s)"));
    // The real server was still told to stop: it returns Ok, and is not checked twice.
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_fails_the_test() {
    // An invalid configuration makes `run` return an error at once.
    let server = TestServer::start_with(|c| c.scroll_tick_interval = 0).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !server.has_returned() {
        assert!(std::time::Instant::now() < deadline, "run kept running");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failure = catch_unwind(AssertUnwindSafe(|| drop(server))).expect_err("drop must panic");
    let message = panic_message(failure);
    assert!(
        message.contains("bandsync::run returned an error")
            && message.contains("SCROLL_TICK_INTERVAL"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_server_passes_and_reports_how_long_it_took_to_stop() {
    let server = TestServer::start().await;
    let elapsed = server.shutdown().await;
    assert!(elapsed < common::STOP_SLACK, "{elapsed:?}");
}
