//! The real `bandsync` binary: configuration from the environment, and SIGTERM closing
//! every WebSocket with 1001 before the process exits 0.

mod common;

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
    let data = std::env::temp_dir().join(format!("bandsync-binary-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bandsync"))
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
