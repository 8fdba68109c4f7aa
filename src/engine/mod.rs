//! The session engine: one thread that owns every session and decides every event.
//!
//! Connections decode and validate frames on the async runtime, then queue them here
//! (`inbound`). This thread takes them in batches, applies them to the sessions
//! (`commands`, `membership`), encodes each resulting broadcast once and queues the shared
//! bytes in every recipient's outbox (`fanout`), then wakes each touched writer once, so a
//! writer feeds all its frames and flushes once per batch. The same thread produces the
//! 16 ms ticks against absolute deadlines.
//!
//! Why a dedicated thread: session state needs no lock at all (one owner), and the thread
//! can sleep until a tick deadline with sub-millisecond precision (`recv_deadline`), which
//! the runtime's 1 ms timer wheel cannot. It never blocks on a socket: outboxes are
//! bounded and non-blocking.
//!
//! On one core (`ENGINE_PLACEMENT=auto` with one runtime worker) the same loop runs as a
//! task of that worker instead (`waiting`): a thread of its own would take turns with the
//! worker on the one core, a futex wake-up and a context switch each time one hands the
//! other work (up to two a join, measured). The task keeps the thread's precision with a
//! `timerfd`, and writes a large batch in slices, letting the connections run between
//! them.
//!
//! Batching (`BATCH_INTERVAL_MS`, `MAX_EVENT_BATCH_SIZE`): an event that arrives while the
//! engine is idle is processed at once, with whatever else is already queued. Only events
//! arriving within the window after a batch started are held until the window ends, so
//! bursts are coalesced without adding latency to a lone event. Relayed audio, the
//! cluster's answers and joins are never held (and one arriving during a hold ends it):
//! they are forwarded, already decided, or answered to the joiner alone, so holding them
//! would only add latency (`event_loop::never_held`).

mod access;
mod commands;
mod commit;
mod event_loop;
mod fanout;
pub mod inbound;
mod joining;
mod loading;
mod membership;
mod pings;
mod remote;
mod replay;
pub mod resume;
mod schedule;
mod session;
mod share;
mod views;
mod waiting;
mod writers;

pub use access::Access;
pub use share::{ShareClaim, ShareClaims, ShareNotice};

use inbound::ConnKeyHasher;
pub use inbound::{ConnKey, EngineHandle, EngineStopped, Inbound, Sending, WaitingForRoom};

use crate::clock::ServerClock;
use crate::cluster::{Broker, Ticket};
use crate::config::{Config, IoUringUse};
use crate::deflate::{codec, Deflater};
use crate::frames::WsFrame;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use bandsync_protocol::server::{Member, SessionState};
use bandsync_protocol::Role;
use bytes::Bytes;
use fanout::Wakes;
use resume::ResumeRegistry;
use serde::Serialize;
use session::Session;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use waiting::Waiting;
use writers::WritePool;

/// How often expired resume tokens and stored sessions are swept.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// `GET /sessions/{id}`: the session's state plus its audience.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    #[serde(flatten)]
    pub state: SessionState,
    pub members: Vec<Member>,
    pub member_count: usize,
    pub followers: usize,
    pub listeners: usize,
    /// False when no one is connected and the session is only retained.
    pub live: bool,
    /// The chord sheet (ChordPro), absent while none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
}

/// Which transport a connection writes to.
enum Peer {
    Ws(Arc<Outbox<WsFrame>>),
    Sse(Arc<Outbox<Bytes>>),
}

/// What the engine knows of one connection.
struct Conn {
    client_id: Arc<str>,
    name: Option<String>,
    role: Role,
    session: Option<Arc<str>>,
    peer: Peer,
    resume_token: Option<String>,
    /// The share session this connection streams audio into (after `share_start`).
    sharing: Option<Arc<str>>,
    /// The client's address (forwarded by a trusted proxy, or the TCP peer), for the
    /// per-address limits of `share_start` and shared audio. SSE listeners never need it.
    client_ip: std::net::IpAddr,
    /// Authenticated mode: the grant of the `/ws` URL's `?token=` (WebSocket only).
    url_grant: Option<Box<crate::auth::jwt::Grant>>,
    /// What the current membership was admitted with.
    access: Access,
}

/// Engine settings, copied out of [`Config`] once.
#[derive(Debug, Clone)]
struct Settings {
    tick_interval: Duration,
    batch_interval: Duration,
    max_batch: usize,
    recovery_window: Duration,
    retention: Duration,
    max_sync_sessions: usize,
    max_session_members: usize,
    snapshot_member_limit: usize,
    room_stats_interval: Duration,
    sse_history: usize,
    resume_history: usize,
    /// The most replayed events (and bytes of them) one resume may queue: half of
    /// OUTBOX_MAX_FRAMES (OUTBOX_MAX_BYTES), so a replay never makes the new connection a
    /// slow consumer (which would close it, and its next resume would replay the same).
    replay_budget_frames: usize,
    replay_budget_bytes: usize,
    /// The bounds on scheduled instants (`SCHEDULE_*`).
    schedule: bandsync_protocol::schedule::ScheduleLimits,
}

pub struct Engine {
    settings: Settings,
    clock: ServerClock,
    metrics: Arc<Metrics>,
    /// The seam to the other instances (or none): every version comes from it.
    broker: Box<dyn Broker>,
    /// Proposals and loads waiting for the cluster's answer.
    pending_commits: HashMap<Ticket, commit::PendingCommit>,
    pending_loads: HashMap<Ticket, loading::PendingLoad>,
    last_ticket: Ticket,
    /// In a cluster, the tag of this instance's SSE ids (see `Session::with_id_tag`).
    sse_id_tag: Option<u64>,
    /// Sessions whose local audience changed since the cluster was last told.
    presence_dirty: HashSet<Arc<str>>,
    next_token_refresh: Instant,
    conns: HashMap<ConnKey, Conn, ConnKeyHasher>,
    /// When each `/ws` connection is due a ping (`pings`).
    pings: pings::PingSweep,
    /// Set by the shutdown: a connection that opens after it is closed at once.
    stopping: bool,
    /// Boxed: a session is about 450 bytes, and growing a table of them inline moved them
    /// all (with every new page faulted in) in one go, a 14 ms stall of the engine at 8,192
    /// sessions in a profile of the connect scenario; boxed, growing moves 8 bytes a session.
    sessions: HashMap<Arc<str>, Box<Session>>,
    /// The sessions a tick deadline looks at: every session that plays or has a pending
    /// change is here (listed by `arm`, which runs after every change to a transport), and
    /// may stay a little after it stopped (`tick_all` takes it out).
    ticking: HashSet<Arc<str>>,
    /// When pending scheduled changes take effect (`schedule`).
    timers: schedule::Timers,
    resume: ResumeRegistry,
    /// Sessions whose audience changed since the last `room_stats` pass.
    stats_dirty: HashSet<Arc<str>>,
    /// Changed sessions whose last `room_stats` is too recent, by the instant they are due
    /// (at most one live entry a session: `Session::stats_due`).
    stats_waiting: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    wakes: Wakes,
    /// Writes a batch's `/ws` frames on every core.
    writers: WritePool,
    /// Compresses large broadcasts once for every member that negotiated permessage-deflate.
    /// Owned by this thread, so one compressor serves every session without a lock.
    deflater: Deflater,
    /// The Music Share relay: audio and metadata pushed to this engine's receivers.
    share: Arc<crate::share::ShareRegistry>,
    /// How much recent audio a receiver gets when it arrives.
    audio_burst: Duration,
    /// Failed `share_start` tokens per address, shared with the HTTP side.
    auth_failures: Arc<crate::limits::AuthFailures>,
    /// Token verification and the share token, for joins, resumes and role changes.
    auth: Arc<crate::auth::Auth>,
    /// With `REDIS_URL`: where a WebSocket sharer's start is claimed cluster-wide.
    share_claims: Option<ShareClaims>,
}

/// What the engine works with besides its settings: the cluster seam, the share relay,
/// access control.
pub struct Collaborators {
    pub broker: Box<dyn Broker>,
    pub share: Arc<crate::share::ShareRegistry>,
    /// Failed `share_start` tokens per address, shared with the HTTP side.
    pub auth_failures: Arc<crate::limits::AuthFailures>,
    pub auth: Arc<crate::auth::Auth>,
    /// With `REDIS_URL`: where a WebSocket sharer's start is claimed cluster-wide.
    pub share_claims: Option<ShareClaims>,
}

/// The running engine, as started by [`spawn`].
#[derive(Debug)]
pub enum EngineRun {
    /// On a thread of its own.
    Thread(JoinHandle<()>),
    /// As a task of the runtime (`ENGINE_PLACEMENT`, `waiting`).
    Task(tokio::task::JoinHandle<()>),
}

impl EngineRun {
    /// Resolves when the engine has stopped.
    pub async fn finished(self) {
        match self {
            EngineRun::Thread(thread) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            EngineRun::Task(task) => {
                let _ = task.await;
            }
        }
    }
}

/// Starts the engine, on its own thread or as a task of the current runtime
/// (`ENGINE_PLACEMENT`). It runs until [`Inbound::Shutdown`] or until every
/// [`EngineHandle`] is dropped.
pub fn spawn(
    config: &Config,
    clock: ServerClock,
    metrics: Arc<Metrics>,
    with: Collaborators,
) -> std::io::Result<(EngineHandle, EngineRun)> {
    let Collaborators {
        broker,
        share,
        auth_failures,
        auth,
        share_claims,
    } = with;
    let on_full = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.engine_queue_full.inc())
    };
    let arrivals = waiting::runs_as_task(config.engine_placement).then(|| Arc::new(Notify::new()));
    let (handle, inbox) = inbound::channel(config.engine_queue_capacity, on_full, arrivals.clone());
    let sse_id_tag = broker.is_shared().then(|| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        broker.instance().hash(&mut hasher);
        hasher.finish() % session::ID_TAGS
    });
    let writers = WritePool::start(clock, &metrics, config.io_uring == IoUringUse::Auto)?;
    let engine = Engine {
        settings: Settings {
            tick_interval: config.tick_interval(),
            batch_interval: config.batch_interval(),
            max_batch: config.max_event_batch_size,
            recovery_window: config.recovery_window(),
            retention: config.session_retention(),
            max_sync_sessions: config.max_sync_sessions,
            max_session_members: config.max_session_members,
            snapshot_member_limit: config.snapshot_member_limit,
            room_stats_interval: config.room_stats_interval(),
            sse_history: config.sse_history,
            resume_history: config.resume_history,
            replay_budget_frames: config.outbox_max_frames / 2,
            replay_budget_bytes: config.outbox_max_bytes / 2,
            schedule: config.schedule_limits(),
        },
        clock,
        metrics,
        broker,
        sse_id_tag,
        pending_commits: HashMap::new(),
        pending_loads: HashMap::new(),
        last_ticket: 0,
        presence_dirty: HashSet::new(),
        next_token_refresh: Instant::now(),
        conns: HashMap::default(),
        pings: pings::PingSweep::new(
            config.ping_interval(),
            config.ping_timeout(),
            Instant::now(),
        ),
        stopping: false,
        sessions: HashMap::new(),
        ticking: HashSet::new(),
        timers: schedule::Timers::default(),
        resume: ResumeRegistry::default(),
        stats_dirty: HashSet::new(),
        stats_waiting: BinaryHeap::new(),
        wakes: Wakes::default(),
        writers,
        deflater: Deflater::new(codec::LEVEL, config.compression_threshold),
        share,
        audio_burst: config.share.audio_burst(),
        auth_failures,
        auth,
        share_claims,
    };
    let alive = handle.alive_flag();
    if let Some(arrivals) = arrivals {
        let timer = waiting::DeadlineTimer::new()?;
        let task = tokio::spawn(async move {
            engine.run(inbox, Waiting::Task { arrivals, timer }).await;
            alive.store(false, std::sync::atomic::Ordering::Release);
        });
        return Ok((handle, EngineRun::Task(task)));
    }
    let thread = std::thread::Builder::new()
        .name("bandsync-engine".into())
        .spawn(move || {
            futures_executor::block_on(engine.run(inbox, Waiting::Thread));
            alive.store(false, std::sync::atomic::Ordering::Release);
        })?;
    Ok((handle, EngineRun::Thread(thread)))
}

impl Engine {
    /// Applies one message, containing a panic to that message: a bug triggered by one
    /// client must not stop the thread that serves every session. The sender of a command
    /// that panicked gets `INTERNAL_ERROR`; the panic is logged and counted.
    fn process_contained(&mut self, msg: Inbound) {
        let culprit = match &msg {
            Inbound::Command { key, id, .. } => Some((*key, id.clone())),
            _ => None,
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(msg)));
        if outcome.is_err() {
            self.metrics.engine_panics.inc();
            tracing::error!("the engine caught a panic while handling an event; it carries on");
            if let Some((key, id)) = culprit {
                let error = bandsync_protocol::ProtocolError::new(
                    bandsync_protocol::ErrorCode::InternalError,
                    "the server failed to handle this event",
                );
                self.reply_error(key, id.as_ref(), error);
            }
        }
    }

    fn process(&mut self, msg: Inbound) {
        match msg {
            Inbound::OpenWs {
                key,
                outbox,
                client_ip,
                url_grant,
            } => self.open_ws(key, outbox, client_ip, url_grant),
            Inbound::Command {
                key,
                id,
                event,
                received,
                verified,
                ack,
            } => {
                let started = Instant::now();
                self.command(key, id, event, verified, ack);
                let done = Instant::now();
                self.metrics
                    .event_processing
                    .observe(done.duration_since(started).as_secs_f64());
                self.metrics
                    .fanout_latency
                    .observe(done.duration_since(received).as_secs_f64());
            }
            Inbound::ClosedWs { key } | Inbound::ClosedSse { key } => self.closed(key),
            Inbound::OpenSse {
                key,
                session_id,
                last_event_id,
                outbox,
                access,
                reply,
            } => {
                if let Err(e) = bandsync_protocol::validate::session_id(&session_id) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let open = loading::SseOpen {
                    key,
                    session_id: session_id.clone(),
                    last_event_id,
                    outbox,
                    access,
                    reply,
                };
                self.load_then(&session_id, None, loading::PendingLoad::Sse(Box::new(open)));
            }
            Inbound::Query { session_id, reply } => {
                let next = loading::PendingLoad::Query {
                    session_id: session_id.clone(),
                    reply,
                };
                self.load_then(&session_id, None, next);
            }
            Inbound::Cluster(event) => self.cluster_event(event),
            Inbound::AudioIn { key, frame } => self.audio_in(key, frame),
            Inbound::Share(notice) => self.share_notice(notice),
            Inbound::StreamEvent { session_id, event } => {
                let event = bandsync_protocol::ServerEvent::StreamEvent(event);
                let everyone = fanout::Audience::Everyone { except: None };
                self.broadcast(&session_id, &event, everyone);
            }
            Inbound::Shutdown => self.shutdown(),
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        for entry in self.resume.take_expired(now) {
            self.lapse_dropped_member(entry);
        }
        self.broker.housekeeping();
        self.cluster_housekeeping(now);
        self.metrics.sessions.set(self.sessions.len() as i64);
    }

    /// Every connection closes: WebSockets with 1001, SSE streams after a final event.
    fn shutdown(&mut self) {
        self.stopping = true;
        let event = bandsync_protocol::ServerEvent::Shutdown(bandsync_protocol::server::Shutdown {
            reason: "server shutting down".into(),
        });
        let json = bandsync_protocol::encode_server_frame(&event, None, self.clock.now_ms());
        for session in self.sessions.values_mut() {
            if !session.listeners.is_empty() {
                let sse = crate::frames::sse_event(session.next_event_id(), &json);
                for outbox in session.listeners.values() {
                    let _ = outbox.push(sse.clone());
                }
            }
            self.broker
                .retire(&session.record(), self.settings.retention);
        }
        for (_, conn) in self.conns.drain() {
            match conn.peer {
                Peer::Ws(outbox) => outbox.close(crate::outbox::CloseReason::Shutdown),
                Peer::Sse(outbox) => outbox.close(crate::outbox::CloseReason::Shutdown),
            }
        }
    }
}
