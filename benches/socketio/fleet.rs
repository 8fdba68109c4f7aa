//! The load: one Socket.IO client per task, all in one session, each recording what the
//! scenarios measure (the receipt instant of each `state_update` and `scroll_tick`) into
//! its own log, which only its task and the bench's reports between phases lock.

use crate::eio::{self, Packet, Ws};
use futures_util::{stream, SinkExt as _, StreamExt as _};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The session every client joins.
pub const SESSION: &str = "siobench";

/// Connections set up at once: enough to keep both servers busy accepting, few enough that
/// a handshake never waits behind hundreds of others and times out.
const CONNECT_CONCURRENCY: usize = 32;

/// The longest the bench waits for a client's task to take a frame to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors a client keeps the text of; more are only counted.
const KEPT_ERRORS: usize = 3;

/// The fan-out's `set_tempo` values: `TEMPO_BASE + i * TEMPO_STEP` for event `i`, each a
/// change from the one before, never the default 120, and exact in binary, so a follower
/// knows from the tempo alone which event a `state_update` carries.
const TEMPO_BASE: f64 = 200.25;
const TEMPO_STEP: f64 = 0.5;
/// Events a fan-out may send: keeps every tempo within the contract's 20 to 400.
pub const MAX_EVENTS: u32 = 390;

pub fn tempo_of(event: u32) -> f64 {
    TEMPO_BASE + f64::from(event) * TEMPO_STEP
}

fn event_of(tempo: f64) -> Option<u32> {
    let i = (tempo - TEMPO_BASE) / TEMPO_STEP;
    (i >= 0.0 && i.fract() == 0.0 && i < f64::from(MAX_EVENTS)).then_some(i as u32)
}

/// What the scenarios switch on and off for every client at once, and counters the bench
/// polls without locking each log.
#[derive(Debug, Default)]
pub struct Shared {
    pub record_updates: AtomicBool,
    pub record_ticks: AtomicBool,
    /// Events of any kind received, to see when the setup's `room_stats` have settled.
    pub events: AtomicU64,
    /// `state_update`s recorded by followers (the leader hears its own changes too, which
    /// the fan-out does not count).
    pub follower_updates: AtomicU64,
}

/// One client's record.
#[derive(Debug, Default)]
pub struct Log {
    /// (fan-out event, receipt) for each `state_update` received while recording.
    pub updates: Vec<(u32, Instant)>,
    /// (fan-out event, send instant): the leader's sends.
    pub sent: Vec<(u32, Instant)>,
    /// (seq, receipt) for each `scroll_tick` received while recording.
    pub ticks: Vec<(u64, Instant)>,
    /// `error` and `rate_limit_exceeded` events: the first few, and how many.
    pub errors: Vec<String>,
    pub error_count: u64,
    /// Why the connection ended, if it did before the bench closed it.
    pub ended: Option<String>,
}

/// A frame for a client to send; `tag` records its send instant as fan-out event `tag`.
#[derive(Debug)]
pub struct Out {
    pub text: String,
    pub tag: Option<u32>,
}

/// One connected, joined client. Dropping it ends its task, which drops the socket.
pub struct Client {
    pub log: Arc<Mutex<Log>>,
    pub out: mpsc::Sender<Out>,
}

impl Client {
    /// Queues a frame for the client's task; fails if the task ended or has not taken a
    /// frame for [`SEND_TIMEOUT`] (its socket is stuck: the server stopped reading).
    pub async fn send(&self, text: String, tag: Option<u32>) -> Result<(), String> {
        match tokio::time::timeout(SEND_TIMEOUT, self.out.send(Out { text, tag })).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the client's task has ended".to_owned()),
            Err(_) => Err(format!("the client could not send for {SEND_TIMEOUT:?}")),
        }
    }
}

/// Connects, joins [`SESSION`] as `role` and waits for the `snapshot`, which must grant
/// that role; then hands the socket to its own task.
pub async fn join(
    addr: &str,
    role: &str,
    name: &str,
    shared: &Arc<Shared>,
) -> Result<Client, String> {
    let (mut ws, _open) = eio::connect(addr).await?;
    let join = serde_json::json!({ "sessionId": SESSION, "role": role, "name": name });
    ws.send(Message::text(eio::event("join_session", &join)))
        .await
        .map_err(|e| format!("sending join_session: {e}"))?;
    let deadline = Instant::now() + eio::HANDSHAKE_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            return Err("no snapshot in answer to join_session".into());
        }
        let text = eio::next_text(&mut ws, "the snapshot").await?;
        match eio::parse(&text)? {
            Packet::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| format!("answering a ping: {e}"))?,
            Packet::Event { name, arg } if name == "snapshot" => {
                #[derive(Deserialize)]
                struct Granted {
                    role: String,
                }
                let granted: Granted = serde_json::from_str(arg.get())
                    .map_err(|e| format!("snapshot without a role: {e}"))?;
                if granted.role != role {
                    return Err(format!("asked to join as {role}, got {}", granted.role));
                }
                break;
            }
            Packet::Event { name, arg } if name == "error" => {
                return Err(format!(
                    "join_session answered with an error: {}",
                    arg.get()
                ))
            }
            Packet::Disconnect | Packet::Close => {
                return Err("disconnected before the snapshot".into())
            }
            _ => {}
        }
    }
    let log = Arc::new(Mutex::new(Log::default()));
    let (out, rx) = mpsc::channel(16);
    let follower = role == "follower";
    tokio::spawn(run(ws, rx, log.clone(), shared.clone(), follower));
    Ok(Client { log, out })
}

/// Joins `count` followers, [`CONNECT_CONCURRENCY`] at a time. All or an error naming how
/// many failed and why the first did.
pub async fn join_followers(
    addr: &str,
    count: usize,
    shared: &Arc<Shared>,
) -> Result<Vec<Client>, String> {
    let results: Vec<Result<Client, String>> = stream::iter(0..count)
        .map(|i| async move { join(addr, "follower", &format!("f{i}"), shared).await })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(first)) = results.iter().find(|r| r.is_err()) {
        return Err(format!(
            "{failed} of {count} followers failed to join; the first: {first}"
        ));
    }
    Ok(results.into_iter().filter_map(Result::ok).collect())
}

/// Waits until no event has arrived for `quiet` (the setup's `room_stats` are through), at
/// most `limit`. Returns whether it settled.
pub async fn settle(shared: &Shared, quiet: Duration, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut seen = shared.events.load(Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(quiet).await;
        let now = shared.events.load(Relaxed);
        if now == seen {
            return true;
        }
        seen = now;
    }
    false
}

/// A client's life after its join: answer pings, record events, send what the bench gives
/// it, until the server ends the connection or the bench drops the [`Client`].
async fn run(
    mut ws: Ws,
    mut rx: mpsc::Receiver<Out>,
    log: Arc<Mutex<Log>>,
    shared: Arc<Shared>,
    follower: bool,
) {
    let ended = loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    match on_text(text.as_str(), Instant::now(), &log, &shared, follower) {
                        Ok(false) => {}
                        Ok(true) => {
                            if let Err(e) = ws.send(Message::text("3")).await {
                                break format!("answering a ping: {e}");
                            }
                        }
                        Err(why) => break why,
                    }
                }
                Some(Ok(Message::Close(close))) => break format!("closed by the server: {close:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("read error: {e}"),
                None => break "the connection ended".to_owned(),
            },
            out = rx.recv() => match out {
                Some(Out { text, tag }) => {
                    let at = Instant::now();
                    if let Err(e) = ws.send(Message::text(text)).await {
                        break format!("send error: {e}");
                    }
                    if let Some(tag) = tag {
                        log.lock().unwrap().sent.push((tag, at));
                    }
                }
                // The bench is done with this client.
                None => return,
            },
        }
    };
    log.lock().unwrap().ended = Some(ended);
}

/// Handles one text frame: records it, and says whether to answer a ping. An error ends
/// the client (the server broke the protocol or disconnected it).
fn on_text(
    text: &str,
    at: Instant,
    log: &Mutex<Log>,
    shared: &Shared,
    follower: bool,
) -> Result<bool, String> {
    let (name, arg) = match eio::parse(text)? {
        Packet::Ping => return Ok(true),
        Packet::Disconnect => return Err("the server disconnected the socket (41)".into()),
        Packet::Close => return Err("the server closed the Engine.IO session".into()),
        Packet::Other => return Ok(false),
        Packet::Event { name, arg } => (name, arg),
    };
    shared.events.fetch_add(1, Relaxed);
    match name.as_str() {
        "scroll_tick" if shared.record_ticks.load(Relaxed) => {
            #[derive(Deserialize)]
            struct Tick {
                seq: u64,
            }
            let tick: Tick = serde_json::from_str(arg.get())
                .map_err(|e| format!("scroll_tick without seq: {e}"))?;
            log.lock().unwrap().ticks.push((tick.seq, at));
        }
        "state_update" if shared.record_updates.load(Relaxed) => {
            #[derive(Deserialize)]
            struct Transport {
                tempo: f64,
            }
            #[derive(Deserialize)]
            struct State {
                transport: Transport,
            }
            let state: State = serde_json::from_str(arg.get())
                .map_err(|e| format!("state_update without transport.tempo: {e}"))?;
            if let Some(event) = event_of(state.transport.tempo) {
                if follower {
                    shared.follower_updates.fetch_add(1, Relaxed);
                }
                log.lock().unwrap().updates.push((event, at));
            }
        }
        "error" | "rate_limit_exceeded" => {
            let mut log = log.lock().unwrap();
            log.error_count += 1;
            if log.errors.len() < KEPT_ERRORS {
                log.errors.push(format!("{name} {}", arg.get()));
            }
        }
        _ => {}
    }
    Ok(false)
}
