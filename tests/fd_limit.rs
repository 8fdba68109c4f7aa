//! Finding 2 of issue 7 at its root: with `MAX_CONNECTIONS` at (or above) the open-file
//! limit, a flood of SSE streams used up every descriptor; `accept` then failed in a loop,
//! and `/health` and every new client hung instead of getting an answer. The real binary
//! runs here under a small descriptor limit (`ulimit -n 256`, soft and hard, so it cannot
//! be raised) with the default `MAX_CONNECTIONS` of 20,000.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The spawned server, killed when the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_limited(nofile: u32) -> (Server, SocketAddr) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\""))
        .arg(env!("CARGO_BIN_EXE_bandsync"))
        .env("PORT", "0")
        .env(
            "ASSET_STORAGE_PATH",
            std::env::temp_dir().join("bandsync-fd-limit-assets"),
        )
        .env(
            "STREAM_STATE_PATH",
            std::env::temp_dir().join("bandsync-fd-limit-streams"),
        )
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn bandsync under sh");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
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
    (server, addr.parse().expect("a socket address"))
}

async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .unwrap();
    socket.connect(addr).await.expect("connect")
}

/// Sends `GET path` and returns the status line's code, or `None` when no answer came
/// within 5 s (the server hung).
async fn status_of(stream: &mut TcpStream, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_flood_under_a_small_file_limit_gets_503_and_health_still_answers() {
    // This process holds the client ends of the flood.
    let _ = rlimit::increase_nofile_limit(4096);
    let (_server, addr) = spawn_limited(256);
    let mut streams = Vec::new();
    let mut first_refusal = None;
    for n in 0..300u32 {
        let source = [127, 1, (n / 200) as u8, (n % 200) as u8 + 1];
        let mut stream = connect_from(source, addr).await;
        match status_of(&mut stream, &format!("/sse/flood-{}", n % 50)).await {
            Some(200) => streams.push(stream),
            Some(503) => {
                first_refusal = Some(n);
                break;
            }
            other => panic!("stream {n}: expected 200 or 503, got {other:?}"),
        }
    }
    let refused_at = first_refusal.expect("the flood must be refused with 503");
    assert!(
        (64..250).contains(&refused_at),
        "refused after {refused_at} streams: the cap must sit under the 256 descriptors"
    );
    // Room is left for plain HTTP: health answers, from any address.
    let mut probe = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(status_of(&mut probe, "/health").await, Some(200));
    drop(streams);
}
