//! Sessions and what the floor sends them, framed as bandsync and the uWS reference frame
//! them (`protocol/PROTOCOL.md`): snapshots, `state_update`, `scroll_tick` on the 16 ms
//! wall-clock grid, coalesced `room_stats`, `sync_response`, `heartbeat_response`.
//!
//! Every write is one `send(2)` of a whole frame on the non-blocking socket, straight from
//! the code that produced it: a broadcast frames its JSON once and sends the same bytes to
//! each member, the bare loopback write of `cargo bench --bench write_floor`. With
//! `--io-uring` a broadcast's sends go instead through io_uring, 256 a submission, as
//! bandsync's engine submits them (`uring-send`): the floor of that design. A frame the
//! kernel does not take whole cuts that member off (the bench counts its deliveries as
//! lost): the floor keeps no queues.

use crate::wire::text_frame;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `room_stats` coalescing, as in bandsync (`ROOM_STATS_INTERVAL_MS`) and the uWS reference.
const ROOM_STATS_INTERVAL: Duration = Duration::from_millis(250);
/// Members listed in a snapshot, as bandsync and the uWS reference list them.
const SNAPSHOT_MEMBER_LIMIT: usize = 100;
/// The tick grid's period (bandsync's default `SCROLL_TICK_INTERVAL`).
pub const TICK_MS: f64 = 16.0;

/// Sends per io_uring submission, as bandsync's engine (`engine/writers.rs`) batches them.
pub const RING_ENTRIES: u32 = 256;

pub type Sessions = Rc<RefCell<HashMap<String, Session>>>;

thread_local! {
    /// The ring broadcasts are submitted through, with `--io-uring`; `None`: one `send`
    /// each. The floor runs on one thread.
    pub static RING: RefCell<Option<uring_send::SendBatch>> = const { RefCell::new(None) };
}

struct Member {
    id: u64,
    /// A duplicate of the connection's descriptor, held here so a broadcast reads each
    /// member's descriptor from this vector instead of reaching it through the task's
    /// `TcpStream` (a cache miss or two per member, 4 % of the floor's samples).
    socket: socket2::Socket,
}

pub struct Session {
    id_json: String,
    members: Vec<Member>,
    leader: Option<u64>,
    tempo: f64,
    beat: f64,
    anchor_time: f64,
    playing: bool,
    version: u64,
    /// Ticks played before the current run (seq continues across pause and play).
    tick_base: u64,
    /// The first grid deadline of the current run while playing.
    tick_from: Option<u64>,
    stats_sent_at: Option<Instant>,
    stats_pending: bool,
}

/// Server time: wall-clock milliseconds since the epoch.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A number as serde_json prints an `f64` (`120.0`, not `120`), as bandsync sends it.
fn num(x: f64) -> String {
    serde_json::to_string(&x).unwrap_or_else(|_| "null".into())
}

/// The envelope every server event shares.
pub fn envelope(kind: &str, id_json: Option<&str>, data: &str, t: f64) -> String {
    let id = id_json.map_or(String::new(), |id| format!("\"id\":{id},"));
    format!(
        "{{\"type\":\"{kind}\",{id}\"timestamp\":{},\"data\":{data}}}",
        num(t)
    )
}

/// Sends one whole frame with one `send(2)`; a member whose socket does not take it all is
/// cut off (see the module's note).
pub fn send_frame(socket: &socket2::Socket, frame: &[u8]) {
    if socket.send(frame).ok() != Some(frame.len()) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

fn client_id(id: u64) -> String {
    format!("\"c{id}\"")
}

impl Session {
    fn new(id: &str) -> Self {
        Self {
            id_json: serde_json::to_string(id).unwrap_or_default(),
            members: Vec::new(),
            leader: None,
            tempo: 120.0,
            beat: 0.0,
            anchor_time: now_ms(),
            playing: false,
            version: 0,
            tick_base: 0,
            tick_from: None,
            stats_sent_at: None,
            stats_pending: false,
        }
    }

    fn position(&self, t: f64) -> f64 {
        if self.playing {
            self.beat + (t - self.anchor_time) * self.tempo / 60_000.0
        } else {
            self.beat
        }
    }

    fn leader_json(&self) -> String {
        self.leader.map_or("null".into(), client_id)
    }

    fn transport(&self) -> String {
        format!(
            "{{\"playing\":{},\"tempo\":{},\"beat\":{},\"anchorTime\":{}}}",
            self.playing,
            num(self.tempo),
            num(self.beat),
            num(self.anchor_time)
        )
    }

    /// `state_update`'s and `sync_response`'s data.
    fn state(&self, t: f64) -> String {
        format!(
            "{{\"sessionId\":{},\"transport\":{},\"message\":\"\",\"leaderId\":{},\"version\":{},\"serverTime\":{}}}",
            self.id_json,
            self.transport(),
            self.leader_json(),
            self.version,
            num(t)
        )
    }

    /// Frames `json` once and sends the same bytes to every member: through the ring when
    /// there is one, else one `send` each.
    fn broadcast(&self, json: &str) {
        let frame = text_frame(json);
        let submitted = RING.with_borrow_mut(|ring| {
            let ring = ring.as_mut()?;
            let sends: Vec<uring_send::Send<'_>> = self
                .members
                .iter()
                .map(|member| (member.socket.as_raw_fd(), &frame[..]))
                .collect();
            let mut results = Vec::with_capacity(sends.len());
            ring.send_all(&sends, &mut results);
            for (member, result) in self.members.iter().zip(&results) {
                if result.as_ref().ok() != Some(&frame.len()) {
                    let _ = member.socket.shutdown(Shutdown::Both);
                }
            }
            Some(())
        });
        if submitted.is_none() {
            for member in &self.members {
                send_frame(&member.socket, &frame);
            }
        }
    }

    fn broadcast_state(&self, t: f64) {
        self.broadcast(&envelope("state_update", None, &self.state(t), t));
    }

    /// This session's tick for grid deadline `k`, if it is playing from before it.
    fn tick(&self, k: u64, t: f64) {
        let Some(from) = self.tick_from.filter(|&from| k >= from) else {
            return;
        };
        let seq = self.tick_base + (k - from) + 1;
        let data = format!(
            "{{\"sessionId\":{},\"seq\":{seq},\"beat\":{},\"tempo\":{},\"playing\":true,\"version\":{},\"serverTime\":{}}}",
            self.id_json,
            num(self.position(t)),
            num(self.tempo),
            self.version,
            num(t)
        );
        self.broadcast(&envelope("scroll_tick", None, &data, t));
    }

    fn send_stats(&mut self) {
        self.stats_sent_at = Some(Instant::now());
        self.stats_pending = false;
        let members = self.members.len();
        let followers = members - usize::from(self.leader.is_some());
        let data = format!(
            "{{\"sessionId\":{},\"members\":{members},\"followers\":{followers},\"listeners\":0,\"leaderId\":{}}}",
            self.id_json,
            self.leader_json()
        );
        self.broadcast(&envelope("room_stats", None, &data, now_ms()));
    }
}

/// The grid deadline at or before `t` (deadline k is k × 16 ms after the epoch).
pub fn deadline_at_or_before(t: f64) -> u64 {
    (t.max(0.0) / TICK_MS).floor() as u64
}

/// Sends every playing session its tick for deadline `k`.
pub fn tick_all(sessions: &Sessions, k: u64) {
    let t = now_ms();
    for session in sessions.borrow().values().filter(|s| s.playing) {
        session.tick(k, t);
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
        match session.stats_sent_at.map(|t| t.elapsed()) {
            Some(since) if since < ROOM_STATS_INTERVAL => {
                session.stats_pending = true;
                ROOM_STATS_INTERVAL - since
            }
            _ => return session.send_stats(),
        }
    };
    let sessions = sessions.clone();
    let session_id = session_id.to_owned();
    tokio::task::spawn_local(async move {
        tokio::time::sleep(wait).await;
        if let Some(session) = sessions.borrow_mut().get_mut(&session_id) {
            session.send_stats();
        }
    });
}

/// Adds member `id` to `session_id` (its leader if it asks and the seat is free), sends it
/// the snapshot answering request `request`, and the session its `room_stats`.
pub fn join(
    sessions: &Sessions,
    session_id: &str,
    wants_leader: bool,
    id: u64,
    request: Option<&str>,
    socket: &socket2::Socket,
) {
    add_member(sessions, session_id, wants_leader, id, request, socket);
    stats_changed(sessions, session_id);
}

/// [`join`] but the `room_stats`, which need the sessions' lock this holds.
fn add_member(
    sessions: &Sessions,
    session_id: &str,
    wants_leader: bool,
    id: u64,
    request: Option<&str>,
    socket: &socket2::Socket,
) {
    let Ok(duplicate) = socket.try_clone() else {
        let _ = socket.shutdown(Shutdown::Both);
        return;
    };
    let mut map = sessions.borrow_mut();
    let session = map
        .entry(session_id.to_owned())
        .or_insert_with(|| Session::new(session_id));
    let t = now_ms();
    let role = if wants_leader && session.leader.is_none() {
        session.leader = Some(id);
        session.version += 1;
        session.broadcast_state(t);
        "leader"
    } else {
        "follower"
    };
    session.members.push(Member {
        id,
        socket: duplicate,
    });
    let members: Vec<String> = session
        .members
        .iter()
        .take(SNAPSHOT_MEMBER_LIMIT)
        .map(|m| {
            let role = if Some(m.id) == session.leader {
                "leader"
            } else {
                "follower"
            };
            format!(
                "{{\"clientId\":{},\"name\":null,\"role\":\"{role}\"}}",
                client_id(m.id)
            )
        })
        .collect();
    let token: u128 = rand::random();
    let data = format!(
        "{{\"sessionId\":{},\"clientId\":{},\"role\":\"{role}\",\"resumeToken\":\"{token:032x}\",\"leaderId\":{},\"members\":[{}],\"transport\":{},\"message\":\"\",\"version\":{},\"serverTime\":{},\"resumed\":false,\"membersTruncated\":{},\"replayCount\":0}}",
        session.id_json,
        client_id(id),
        session.leader_json(),
        members.join(","),
        session.transport(),
        session.version,
        num(t),
        session.members.len() > SNAPSHOT_MEMBER_LIMIT
    );
    send_frame(
        socket,
        &text_frame(&envelope("snapshot", request, &data, t)),
    );
}

/// Removes member `id` from `session_id` (and the session once empty), and sends the rest
/// their `room_stats`; a leaving leader frees the seat.
pub fn leave(sessions: &Sessions, session_id: &str, id: u64) {
    remove_member(sessions, session_id, id);
    stats_changed(sessions, session_id);
}

/// [`leave`] but the `room_stats`.
fn remove_member(sessions: &Sessions, session_id: &str, id: u64) {
    let mut map = sessions.borrow_mut();
    let Some(session) = map.get_mut(session_id) else {
        return;
    };
    session.members.retain(|m| m.id != id);
    if session.members.is_empty() {
        map.remove(session_id);
    } else if session.leader == Some(id) {
        session.leader = None;
        session.version += 1;
        session.broadcast_state(now_ms());
    }
}

/// The transport commands bandsync-bench sends.
pub enum Command {
    SetTempo(f64),
    Play(Option<f64>),
    Pause,
    Sync,
}

/// Runs `command` from member `id`; the answer to the sender alone (an error, or a
/// `sync_response` when nothing changed) as JSON, `None` after a broadcast.
pub fn command(
    sessions: &Sessions,
    session_id: &str,
    id: u64,
    command: Command,
    request: Option<&str>,
) -> Option<String> {
    let mut map = sessions.borrow_mut();
    let session = map.get_mut(session_id)?;
    let t = now_ms();
    let sync = |session: &Session| Some(envelope("sync_response", request, &session.state(t), t));
    if let Command::Sync = command {
        return sync(session);
    }
    if session.leader != Some(id) {
        return Some(error(request, "NOT_LEADER", "only the leader may do that"));
    }
    match command {
        Command::SetTempo(tempo) if !(20.0..=400.0).contains(&tempo) => {
            return Some(error(request, "INVALID_TEMPO", "tempo must be 20 to 400"));
        }
        Command::SetTempo(tempo) if tempo == session.tempo => return sync(session),
        Command::SetTempo(tempo) => {
            session.beat = session.position(t);
            session.tempo = tempo;
        }
        Command::Play(None) if session.playing => return sync(session),
        Command::Play(beat) => {
            session.beat = beat.unwrap_or_else(|| session.position(t));
            session.playing = true;
            if session.tick_from.is_none() {
                session.tick_from = Some(deadline_at_or_before(t) + 1);
            }
        }
        Command::Pause if !session.playing => return sync(session),
        Command::Pause => {
            session.beat = session.position(t);
            session.playing = false;
            if let Some(from) = session.tick_from.take() {
                session.tick_base += (deadline_at_or_before(t) + 1).saturating_sub(from);
            }
        }
        Command::Sync => unreachable!("answered above"),
    }
    session.anchor_time = t;
    session.version += 1;
    session.broadcast_state(t);
    None
}

pub fn error(request: Option<&str>, code: &str, message: &str) -> String {
    let data = format!(
        "{{\"code\":\"{code}\",\"message\":{}}}",
        serde_json::to_string(message).unwrap_or_default()
    );
    envelope("error", request, &data, now_ms())
}

pub fn heartbeat_response(request: Option<&str>, t0: f64, t1: f64) -> String {
    let t2 = now_ms();
    let data = format!(
        "{{\"t0\":{},\"t1\":{},\"t2\":{}}}",
        num(t0),
        num(t1),
        num(t2)
    );
    envelope("heartbeat_response", request, &data, t2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_envelopes_are_framed_as_bandsync_frames_them() {
        assert_eq!(num(120.0), "120.0");
        assert_eq!(
            envelope("error", Some("7"), "{}", 1.5),
            r#"{"type":"error","id":7,"timestamp":1.5,"data":{}}"#
        );
        let value: serde_json::Value =
            serde_json::from_str(&heartbeat_response(None, 1.0, 2.0)).unwrap();
        assert_eq!(value["data"]["t0"], 1.0);
    }

    #[test]
    fn the_grid_counts_deadlines_from_the_epoch() {
        assert_eq!(deadline_at_or_before(31.9), 1);
        assert_eq!(deadline_at_or_before(32.0), 2);
        assert_eq!(deadline_at_or_before(-5.0), 0);
    }
}
