//! The join floor: the least a Rust server does to serve `bandsync-bench connect`, so the
//! joins-per-second figures of bandsync and uWebSockets.js can be read against what the
//! kernel and the load client leave. One thread (tokio's current-thread runtime), one task
//! per connection, no limits, no checks beyond the handshake's: it accepts, answers the
//! upgrade, reads `join_session`, answers with a `snapshot` listing the members, and sends
//! `room_stats` to the session at most every 250 ms (the first at once), as both servers do.
//! It is a measuring stick, not a server: never expose it.
//!
//! ```sh
//! cargo build --release --manifest-path benches/reference/join-floor/Cargo.toml
//! taskset -c 1 benches/reference/join-floor/target/release/join-floor --port 20180 &
//! taskset -c 0 target/release/bandsync-bench --url ws://127.0.0.1:20180/ws \
//!     --server-pid $! --threads 1 connect -n 10000 --sessions 500 -d 1
//! ```

use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind::WouldBlock;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};

/// `room_stats` coalescing, as in bandsync (`ROOM_STATS_INTERVAL_MS`) and the uWS reference.
const ROOM_STATS_INTERVAL: Duration = Duration::from_millis(250);
/// Read buffer per connection: a handshake and a join fit.
const READ_BYTES: usize = 4096;

struct Member {
    id: u64,
    stream: Rc<TcpStream>,
}

struct Session {
    id_json: String,
    members: Vec<Member>,
    stats_sent_at: Option<Instant>,
    stats_pending: bool,
}

type Sessions = Rc<RefCell<HashMap<String, Session>>>;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    id: Option<u64>,
    data: Option<JoinData>,
}

#[derive(Deserialize)]
struct JoinData {
    #[serde(rename = "sessionId")]
    session_id: String,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// An unmasked text frame around `json`.
fn text_frame(json: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(json.len() + 4);
    frame.push(0x81);
    match json.len() {
        n if n < 126 => frame.push(n as u8),
        n if n < 65536 => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(json.as_bytes());
    frame
}

/// Writes all of `data`, waiting for room when the socket has none.
async fn write_all(stream: &TcpStream, mut data: &[u8]) -> Option<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == WouldBlock => stream.writable().await.ok()?,
            Err(_) => return None,
        }
    }
    Some(())
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

/// Sends the session's `room_stats` to every member now.
fn send_stats(sessions: &Sessions, session_id: &str) {
    let mut sessions = sessions.borrow_mut();
    let Some(session) = sessions.get_mut(session_id) else {
        return;
    };
    session.stats_sent_at = Some(Instant::now());
    session.stats_pending = false;
    let n = session.members.len();
    let json = format!(
        r#"{{"type":"room_stats","data":{{"sessionId":{},"members":{n},"followers":{n},"listeners":0,"leaderId":null}},"timestamp":{}}}"#,
        session.id_json,
        now_ms()
    );
    let frame = text_frame(&json);
    for member in &session.members {
        let _ = member.stream.try_write(&frame);
    }
}

/// The session's members changed: `room_stats` now, or once the interval since the last
/// one has passed.
fn stats_changed(sessions: &Sessions, session_id: &str) {
    let wait = {
        let mut map = sessions.borrow_mut();
        let Some(session) = map.get_mut(session_id) else {
            return;
        };
        if session.stats_pending {
            return;
        }
        let since = session.stats_sent_at.map(|t| t.elapsed());
        match since {
            Some(since) if since < ROOM_STATS_INTERVAL => {
                session.stats_pending = true;
                ROOM_STATS_INTERVAL - since
            }
            _ => Duration::ZERO,
        }
    };
    if wait.is_zero() {
        return send_stats(sessions, session_id);
    }
    let sessions = sessions.clone();
    let session_id = session_id.to_owned();
    tokio::task::spawn_local(async move {
        tokio::time::sleep(wait).await;
        send_stats(&sessions, &session_id);
    });
}

/// Adds member `id` to `session_id` and returns its snapshot's JSON.
fn join(
    sessions: &Sessions,
    session_id: &str,
    id: u64,
    request: u64,
    stream: &Rc<TcpStream>,
) -> String {
    let mut map = sessions.borrow_mut();
    let session = map.entry(session_id.to_owned()).or_insert_with(|| Session {
        id_json: serde_json::to_string(session_id).unwrap_or_default(),
        members: Vec::new(),
        stats_sent_at: None,
        stats_pending: false,
    });
    session.members.push(Member {
        id,
        stream: stream.clone(),
    });
    let members: Vec<String> = session
        .members
        .iter()
        .map(|m| {
            format!(
                r#"{{"clientId":"c{}","name":null,"role":"follower"}}"#,
                m.id
            )
        })
        .collect();
    let token: u128 = rand::random();
    let now = now_ms();
    format!(
        r#"{{"type":"snapshot","id":{request},"data":{{"sessionId":{},"clientId":"c{id}","role":"follower","resumeToken":"{token:032x}","leaderId":null,"members":[{}],"transport":{{"tempo":120,"playing":false,"position":0}},"message":null,"version":0,"serverTime":{now},"resumed":false}},"timestamp":{now}}}"#,
        session.id_json,
        members.join(",")
    )
}

/// Removes member `id` from `session_id`, and the session once empty.
fn leave(sessions: &Sessions, session_id: &str, id: u64) {
    let mut map = sessions.borrow_mut();
    if let Some(session) = map.get_mut(session_id) {
        session.members.retain(|m| m.id != id);
        if session.members.is_empty() {
            map.remove(session_id);
        }
    }
}

/// The upgrade's `Sec-WebSocket-Accept` and the length of the head, once `buf` holds a
/// whole `GET /ws` upgrade; `Err` for anything else.
fn handshake(buf: &[u8]) -> Result<Option<(String, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = request.parse(buf).map_err(|_| ())? else {
        return Ok(None);
    };
    if request.method != Some("GET") || request.path.is_none_or(|p| !p.starts_with("/ws")) {
        return Err(());
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    if !upgrade || header("sec-websocket-version") != Some(b"13") {
        return Err(());
    }
    let key = header("sec-websocket-key").ok_or(())?;
    Ok(Some((tungstenite::handshake::derive_accept_key(key), len)))
}

async fn serve(stream: TcpStream, sessions: Sessions, id: u64) -> Option<()> {
    let stream = Rc::new(stream);
    let mut buf = vec![0u8; READ_BYTES];
    let mut have = 0;
    let (accept, head) = loop {
        read_more(&stream, &mut buf, &mut have).await?;
        if let Some(done) = handshake(&buf[..have]).ok()? {
            break done;
        }
    };
    buf.copy_within(head..have, 0);
    have -= head;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    write_all(&stream, response.as_bytes()).await?;
    let mut joined: Option<String> = None;
    let result = async {
        loop {
            // Masked client frames; 16-bit lengths at most.
            while have >= 6 {
                let (len, offset) = match buf[1] & 0x7f {
                    126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                    127 => return None,
                    n => (usize::from(n), 2),
                };
                let start = offset + 4;
                if start + len > buf.len() {
                    return None;
                }
                if have < start + len {
                    break;
                }
                let mask = [
                    buf[offset],
                    buf[offset + 1],
                    buf[offset + 2],
                    buf[offset + 3],
                ];
                for (i, byte) in buf[start..start + len].iter_mut().enumerate() {
                    *byte ^= mask[i & 3];
                }
                match buf[0] & 0x0f {
                    0x8 => return None,
                    0x1 if joined.is_none() => {
                        let frame: Frame = serde_json::from_slice(&buf[start..start + len]).ok()?;
                        if let ("join_session", Some(data)) = (frame.kind, frame.data) {
                            let snapshot = join(
                                &sessions,
                                &data.session_id,
                                id,
                                frame.id.unwrap_or(0),
                                &stream,
                            );
                            joined = Some(data.session_id);
                            write_all(&stream, &text_frame(&snapshot)).await?;
                            stats_changed(&sessions, joined.as_deref()?);
                        }
                    }
                    _ => {}
                }
                buf.copy_within(start + len..have, 0);
                have -= start + len;
            }
            read_more(&stream, &mut buf, &mut have).await?;
        }
    }
    .await;
    if let Some(session_id) = joined {
        leave(&sessions, &session_id, id);
        stats_changed(&sessions, &session_id);
    }
    result
}

fn main() {
    let port: u16 = std::env::args()
        .skip_while(|a| a != "--port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the port");
        println!("{}", listener.local_addr().expect("an address").port());
        let sessions: Sessions = Rc::new(RefCell::new(HashMap::new()));
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
