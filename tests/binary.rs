//! The real `bandsync` binary: configuration from the environment, SIGTERM closing every
//! WebSocket with 1001 before the process exits 0, and, on one runtime worker, the engine
//! running as that worker's task.

mod common;
mod support;

use bandsync_client::protocol::server::ScrollTick;
use bandsync_client::protocol::Role;
use bandsync_client::{Incoming, WsClient};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The spawned server, killed if the test ends (or fails) before it exits by itself.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the binary on an ephemeral port and returns it with the address it logged.
fn spawn_server() -> (Server, String) {
    spawn_server_with(&[])
}

/// [`spawn_server`] with more environment. `ENGINE_PLACEMENT` is left at its default
/// (`auto`) whatever the test run's environment says.
fn spawn_server_with(env: &[(&str, &str)]) -> (Server, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = std::env::temp_dir().join(format!("bandsync-binary-{}-{n}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bandsync"))
        .env_remove("ENGINE_PLACEMENT")
        .envs(env.iter().copied())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("ASSET_STORAGE_PATH", data.join("assets"))
        .env("STREAM_STATE_PATH", data.join("streams"))
        .env("LOG_LEVEL", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn bandsync");
    let stderr = child.stderr.take().unwrap();
    let child = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server logs its listening address");
    (child, addr)
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let (mut server, addr) = spawn_server();
    let mut clients = Vec::new();
    for name in ["a", "b"] {
        let mut client = WsClient::connect(&format!("ws://{addr}/ws")).await.unwrap();
        client.join("signal-band", None, Some(name)).await.unwrap();
        clients.push(client);
    }
    // The gate every in-process test has: the engine contained no panic.
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    if let Err(why) = common::engine_panics(addr) {
        panic!("{why}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for client in &mut clients {
        let code = loop {
            match client.next_timeout(Duration::from_secs(10)).await.unwrap() {
                Incoming::Closed { code, .. } => break code,
                Incoming::Frame { .. } => continue,
            }
        };
        assert_eq!(code, Some(1001));
    }
    // Bounded by SHUTDOWN_TIMEOUT_MS (5 s by default) plus slack; on failure `Server`'s
    // Drop kills it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn bad_configuration_is_refused_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_bandsync"))
        .env("PORT", "0")
        .env("SCROLL_TICK_INTERVAL", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SCROLL_TICK_INTERVAL"), "{stderr}");
}

/// The names of the process's threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's /proc entry")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// [`thread_names`] once every thread but the main one has named itself: a new thread
/// carries its parent's name (`bandsync`) until it sets its own, a moment after it starts.
fn named_threads(pid: u32) -> Vec<String> {
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let names = thread_names(pid);
        let unnamed = names.iter().filter(|n| *n == "bandsync").count();
        if unnamed <= 1 || std::time::Instant::now() >= deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// With one runtime worker (one core; here `TOKIO_WORKER_THREADS=1`) the engine is a task
/// of that worker, not a thread: and it still keeps the 16 ms ticks, on its own timer, while
/// the same worker serves the connections.
#[tokio::test]
async fn on_one_worker_the_engine_is_its_task_and_keeps_the_ticks() {
    // Two workers first: there the engine has its thread (and the check below can fail).
    let (two, _) = spawn_server_with(&[("TOKIO_WORKER_THREADS", "2")]);
    let threads = named_threads(two.0.id());
    assert!(
        threads.iter().any(|n| n == "bandsync-engine"),
        "no engine thread beside two workers: {threads:?}"
    );
    drop(two);
    let (server, addr) = spawn_server_with(&[("TOKIO_WORKER_THREADS", "1")]);
    let threads = named_threads(server.0.id());
    assert!(
        !threads.iter().any(|n| n == "bandsync-engine"),
        "an engine thread beside the one worker: {threads:?}"
    );

    let url = format!("ws://{addr}/ws");
    let mut leader = WsClient::connect(&url).await.unwrap();
    let snapshot = leader
        .join("one-core-band", Some(Role::Leader), Some("lead"))
        .await
        .unwrap();
    assert_eq!(snapshot.role, Role::Leader);
    let mut follower = WsClient::connect(&url).await.unwrap();
    follower
        .join("one-core-band", None, Some("follow"))
        .await
        .unwrap();
    leader.send(support::play(None)).await.unwrap();
    support::next_state_update(&mut follower).await;
    let mut ticks: Vec<ScrollTick> = Vec::new();
    while ticks.len() < 60 {
        ticks.push(support::next_tick(&mut follower).await);
    }
    for pair in ticks.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "seq must increase: {pair:?}");
    }
    // Spacing by the server's own stamps, per seq step (a tick a slow reader missed leaves
    // a gap in seq, not in the spacing).
    let (first, last) = (&ticks[0], &ticks[ticks.len() - 1]);
    let spacing = (last.server_time - first.server_time) / (last.seq - first.seq) as f64;
    assert!(
        (spacing - 16.0).abs() < 1.0,
        "ticks every {spacing} ms, not 16"
    );
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    if let Err(why) = common::engine_panics(addr) {
        panic!("{why}");
    }
}
