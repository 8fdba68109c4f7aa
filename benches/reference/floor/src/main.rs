//! The floor: the least a Rust server does to serve `bandsync-bench`'s `connect`, `fanout`
//! and `ticks` scenarios, so bandsync's and uWebSockets.js's figures can be read against
//! what the kernel and the load client leave.
//!
//! - **Joins** (`connect`): it accepts, answers the upgrade, reads `join_session`, answers
//!   with a snapshot and sends `room_stats` to the session at most every 250 ms (the first
//!   at once), as both servers do.
//! - **Fan-out and ticks**: a broadcast (`state_update` after `set_tempo`, `play` or
//!   `pause`; `scroll_tick` on the 16 ms grid) is framed once and written to each member
//!   with one bare `send(2)`, as `cargo bench --bench write_floor` writes, from the task
//!   that produced it. So the scenario's server CPU per delivery, measured by the same
//!   load client in the same conditions (its followers asleep in `epoll_wait` between
//!   broadcasts), is the cost of that write and of nothing else a server adds.
//!   `--io-uring` submits each broadcast's sends through io_uring instead, as bandsync's
//!   engine does: the floor of that design.
//!
//! One thread (tokio's current-thread runtime), one task per connection, no limits, no
//! queues, no pings, no checks beyond what the scenarios need. It is a measuring stick,
//! not a server: never expose it.
//!
//! ```sh
//! cargo build --release -p floor -p bandsync-bench
//! bandsync-bench --spawn --spawn-server floor --server-cpus 1 --threads 1 fanout -n 1000 --rate 20
//! bandsync-bench --spawn --spawn-server floor-uring ...   # the same with --io-uring
//! # or by hand (it prints {"port":N} once listening):
//! taskset -c 1 target/release/floor --port 20180 &
//! taskset -c 0 target/release/bandsync-bench --url ws://127.0.0.1:20180/ws \
//!     --server-pid $! --threads 1 connect -n 10000 --sessions 500 -d 1
//! ```

mod session;
mod wire;

use serde::Deserialize;
use session::{Command, Sessions};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind::WouldBlock;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use wire::Request;

/// Read buffer per connection: a handshake and any client frame the scenarios send fit.
const READ_BYTES: usize = 4096;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    id: Option<serde_json::Value>,
    #[serde(default)]
    data: Data,
}

/// The fields of `data` the served events use.
#[derive(Deserialize, Default)]
struct Data {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
    role: Option<String>,
    tempo: Option<f64>,
    beat: Option<f64>,
    t0: Option<f64>,
}

/// Reads what the socket has into `buf[*have..]`; `None` at the end or on a failure.
async fn read_more(stream: &TcpStream, buf: &mut [u8], have: &mut usize) -> Option<()> {
    loop {
        stream.readable().await.ok()?;
        match stream.try_read(&mut buf[*have..]) {
            Ok(0) => return None,
            Ok(n) => {
                *have += n;
                return Some(());
            }
            Err(e) if e.kind() == WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

/// One connection: its request, then (for `/ws`) its frames until it closes.
async fn serve(stream: TcpStream, sessions: Sessions, id: u64) -> Option<()> {
    // Every write of this task goes straight to the descriptor (no tokio readiness).
    let socket = socket2::SockRef::from(&stream);
    let mut buf = vec![0u8; READ_BYTES];
    let mut have = 0;
    let (accept, head) = loop {
        read_more(&stream, &mut buf, &mut have).await?;
        match wire::parse_request(&buf[..have]).ok()? {
            None => continue,
            Some(Request::Health) => {
                session::send_frame(&socket, wire::HEALTH_RESPONSE);
                return None;
            }
            Some(Request::Upgrade { accept, head }) => break (accept, head),
        }
    };
    buf.copy_within(head..have, 0);
    have -= head;
    session::send_frame(&socket, wire::upgrade_response(&accept).as_bytes());
    let mut joined: Option<String> = None;
    let result = async {
        loop {
            while let Some(frame) = wire::next_frame(&mut buf[..have], READ_BYTES).ok()? {
                match frame.opcode {
                    0x8 => return None,
                    0x1 => {
                        let t1 = session::now_ms();
                        let answer =
                            on_text(&buf[frame.payload], &sessions, &socket, id, &mut joined, t1);
                        if let Some(json) = answer {
                            session::send_frame(&socket, &wire::text_frame(&json));
                        }
                    }
                    _ => {}
                }
                buf.copy_within(frame.len..have, 0);
                have -= frame.len;
            }
            read_more(&stream, &mut buf, &mut have).await?;
        }
    }
    .await;
    if let Some(session_id) = joined {
        session::leave(&sessions, &session_id, id);
    }
    result
}

/// One text frame from member `id`, received at `t1`: what to answer it alone, if anything.
fn on_text(
    payload: &[u8],
    sessions: &Sessions,
    socket: &socket2::Socket,
    id: u64,
    joined: &mut Option<String>,
    t1: f64,
) -> Option<String> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
        return Some(session::error(
            None,
            "INVALID_MESSAGE",
            "not a JSON envelope",
        ));
    };
    let request = envelope.id.as_ref().map(serde_json::Value::to_string);
    let request = request.as_deref();
    let missing = |field: &str| {
        let message = format!("`{}` needs `data.{field}`", envelope.kind);
        Some(session::error(request, "INVALID_MESSAGE", &message))
    };
    let data = envelope.data;
    let command = match envelope.kind {
        "heartbeat" => {
            let Some(t0) = data.t0 else {
                return missing("t0");
            };
            return Some(session::heartbeat_response(request, t0, t1));
        }
        "join_session" => {
            let Some(session_id) = data.session_id else {
                return missing("sessionId");
            };
            if let Some(old) = joined.take() {
                session::leave(sessions, &old, id);
            }
            let wants_leader = data.role.as_deref() == Some("leader");
            session::join(sessions, &session_id, wants_leader, id, request, socket);
            *joined = Some(session_id);
            return None;
        }
        "leave_session" => {
            let Some(old) = joined.take() else {
                return Some(session::error(
                    request,
                    "NOT_IN_SESSION",
                    "not in a session",
                ));
            };
            session::leave(sessions, &old, id);
            return None;
        }
        "set_tempo" => match data.tempo {
            Some(tempo) => Command::SetTempo(tempo),
            None => return missing("tempo"),
        },
        "play" => Command::Play(data.beat),
        "pause" => Command::Pause,
        "sync_request" => Command::Sync,
        other => {
            let message = format!("the floor does not serve `{other}`");
            return Some(session::error(request, "UNKNOWN_TYPE", &message));
        }
    };
    let Some(session_id) = joined.as_deref() else {
        return Some(session::error(request, "NOT_IN_SESSION", "join first"));
    };
    session::command(sessions, session_id, id, command, request)
}

/// Ticks every playing session at each deadline of the 16 ms wall-clock grid; deadlines
/// missed while busy are skipped, leaving a seq gap, as bandsync does.
async fn tick_loop(sessions: Sessions) {
    let mut next = session::deadline_at_or_before(session::now_ms()) + 1;
    loop {
        let wait_ms = next as f64 * session::TICK_MS - session::now_ms();
        if wait_ms > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait_ms / 1000.0)).await;
        }
        let k = session::deadline_at_or_before(session::now_ms());
        if k >= next {
            session::tick_all(&sessions, k);
            next = k + 1;
        }
    }
}

fn main() {
    let port: u16 = std::env::args()
        .skip_while(|a| a != "--port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if std::env::args().any(|a| a == "--io-uring") {
        match uring_send::SendBatch::new(session::RING_ENTRIES) {
            Ok(ring) => session::RING.set(Some(ring)),
            Err(e) => {
                eprintln!("floor: --io-uring, but no io_uring here: {e}");
                std::process::exit(1);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the port");
        let port = listener.local_addr().expect("an address").port();
        println!("{{\"port\":{port}}}");
        let sessions: Sessions = Rc::new(RefCell::new(HashMap::new()));
        tokio::task::spawn_local(tick_loop(sessions.clone()));
        let mut next_id = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            next_id += 1;
            tokio::task::spawn_local(serve(stream, sessions.clone(), next_id));
        }
    });
}
