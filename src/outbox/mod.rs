//! The bounded outbound queue of one connection, and its slow-consumer policy.
//!
//! The engine pushes pre-encoded frames; the connection's writer task drains everything
//! queued at once, writes it, and flushes once. Two classes of frames:
//!
//! - **state** frames (`snapshot`, `state_update`, `room_stats`, replies, errors) must all
//!   arrive, in order. When a client lets more than `max_frames` or `max_bytes` pile up,
//!   it is not keeping up; the queue is closed as [`CloseReason::SlowConsumer`] and the
//!   writer ends the connection with close code 4001 (reconnect and resume: the new
//!   snapshot brings the client back in step). Nothing is silently lost.
//! - **audio** frames (shared music) are drop-oldest: at most `max_audio_frames` wait; a
//!   new chunk pushes out the oldest unsent one (counted in `dropped_audio`), so a receiver
//!   that cannot keep up loses old audio but never stalls the sharer or anyone else, and is
//!   never disconnected for it.
//! - **tick** frames are latest-value-wins: at most one is queued; a newer tick replaces
//!   an unsent older one (counted in `dropped_ticks`), and moves to the back so that a tick
//!   never overtakes the state event that preceded it.
//!
//! A std `Mutex` guards the queue: it is held only for a push, a drain, or one
//! non-blocking write into the socket (`write`), never across an `.await`, and the engine
//! thread that pushes is not async.
//!
//! An outbox given a [`Sink`] (a `/ws` connection's socket) is written *directly*: whoever
//! holds it after queueing (the engine at the end of a batch, the connection's task after a
//! read) writes everything queued in one `writev` without blocking, and only what the
//! kernel did not take stays queued for the task to finish once the socket is writable
//! (see [`write`]).

mod queue;
mod signal;
mod write;

pub use write::{write_batch, BatchScratch, Sink, WireFrame, Written};

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Something that can sit in an outbox and knows its size on the wire.
pub trait Frame {
    fn byte_len(&self) -> usize;
}

impl Frame for bytes::Bytes {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

/// Why an outbox stopped taking frames. The writer turns it into a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client fell `max_frames`/`max_bytes` behind on state frames.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// Another connection resumed this identity.
    Replaced,
    /// The connection broke its rate limit repeatedly.
    RateLimited,
    /// The connection stopped answering pings.
    PingTimeout,
    /// A frame was over the hard size cap.
    FrameTooBig,
    /// A compressed message inflated beyond the hard size cap (a deflate bomb).
    InflatedTooBig,
    /// A compressed message was not valid DEFLATE data.
    CorruptCompression,
    /// The peer broke the framing rules (an unmasked frame, a reserved opcode, an oversized
    /// or fragmented control frame, RSV1 where no extension allows it).
    ProtocolViolation,
    /// A message was begun and not finished within `MESSAGE_TIMEOUT_MS`.
    MessageTimeout,
    /// The server-wide budget for partially received messages is exhausted.
    ServerBusy,
    /// A text frame was not UTF-8.
    InvalidPayload,
    /// The peer closed or the socket failed: nothing more can be written.
    PeerGone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The outbox was already closed; the frame was discarded.
    Closed,
    /// This push overflowed the bounds: the outbox is now closed as slow.
    SlowConsumer,
}

/// Bounds of one outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
    /// Audio frames that may wait; older ones are dropped beyond this.
    pub max_audio_frames: usize,
}

/// What a drain found besides frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub closed: Option<CloseReason>,
    /// Ticks replaced before they were sent, since the last drain.
    pub dropped_ticks: u64,
    /// Audio frames pushed out unsent by newer ones, since the last drain.
    pub dropped_audio: u64,
}

/// Why a connection's task was woken ([`Outbox::poll_wakes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakes {
    pub work: bool,
    pub ping: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    State,
    Tick,
    Audio,
}

struct Inner<F> {
    queue: queue::Queue<(Class, F)>,
    bytes: usize,
    tick_queued: bool,
    audio_queued: usize,
    closed: Option<CloseReason>,
    dropped_ticks: u64,
    dropped_audio: u64,
    /// The front entry is the unwritten rest of a frame the socket took only part of: it
    /// must go out before anything else, and is never dropped (the peer would read garbage).
    started: bool,
}

impl<F: Frame> Inner<F> {
    /// Queues one entry (the first of an empty queue inline, see `queue`).
    fn append(&mut self, class: Class, frame: F) {
        self.queue.push_back((class, frame));
    }

    /// Asks the CPU for the lines of everything a push or a write reads here (see
    /// [`Outbox::prefetch`], which cannot reach inside the lock).
    fn prefetch(&self) {
        self.queue.prefetch();
        prefetch(&self.bytes);
        prefetch(&self.closed);
        prefetch(&self.dropped_audio);
    }

    /// Empties the queue and the counters that describe it (after a drain, the queue is
    /// already empty and only the counters change), but keeps the rest of a frame already
    /// partly written.
    fn discard(&mut self) {
        let started = match self.started {
            true => self.queue.pop_front(),
            false => None,
        };
        self.queue.clear();
        self.bytes = 0;
        self.tick_queued = false;
        self.audio_queued = 0;
        if let Some(entry) = started {
            self.bytes = entry.1.byte_len();
            self.queue.push_back(entry);
        }
    }
}

pub struct Outbox<F> {
    inner: Mutex<Inner<F>>,
    signal: signal::Signal,
    limits: OutboxLimits,
    /// The writer sends the compressed form of shared frames (the WebSocket negotiated
    /// permessage-deflate). The engine compresses a broadcast only if a recipient does.
    deflate: bool,
    /// The writer speaks Socket.IO (`/socket.io/`): the engine queues broadcasts in their
    /// Socket.IO form, converted once per broadcast, for such outboxes.
    socket_io: bool,
    /// The socket this outbox writes into directly, if it does.
    sink: Option<Arc<dyn Sink>>,
    /// The sink's socket descriptor, for a batch of sends. Kept here, beside the lock, and
    /// not asked of the sink at each send: reaching it through the sink was two or three
    /// cache misses a recipient in a fan-out's profile. The sink owns the socket for as
    /// long as this outbox holds the sink, so the number stays this socket's.
    socket: Option<RawFd>,
    /// What the connection's task last said of its peer, for the engine's ping sweep (see
    /// [`Outbox::may_ping_directly`]): when it last read a whole message (server-clock ms),
    /// and whether a message is begun and not finished.
    heard_ms: AtomicU64,
    unfinished: AtomicBool,
}

impl<F: Frame> Outbox<F> {
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                // No heap memory unless frames pile up (see `queue`).
                queue: queue::Queue::new(),
                bytes: 0,
                tick_queued: false,
                audio_queued: 0,
                closed: None,
                dropped_ticks: 0,
                dropped_audio: 0,
                started: false,
            }),
            signal: signal::Signal::default(),
            limits,
            deflate: false,
            socket_io: false,
            sink: None,
            socket: None,
            heard_ms: AtomicU64::new(0),
            unfinished: AtomicBool::new(false),
        }
    }

    /// Gives the outbox its socket: frames are then written directly (see [`write`]).
    pub fn with_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.socket = sink.socket().map(|fd| fd.as_raw_fd());
        self.sink = Some(sink);
        self
    }

    /// Whether frames are written directly into the socket rather than by a task.
    pub fn writes_directly(&self) -> bool {
        self.sink.is_some()
    }

    /// Asks the CPU to start loading the parts of this outbox a push and a write touch (its
    /// reference count, lock and queue state, its sink's flags). A broadcast reaches its
    /// recipients' outboxes cold, one after another; asking a few recipients ahead lets
    /// those loads overlap instead of each waiting on memory in turn. Only a hint: it
    /// changes no state and never faults.
    pub fn prefetch(&self) {
        prefetch(&self.socket);
        prefetch(&self.inner);
        prefetch(&self.limits);
        prefetch(&self.deflate);
    }

    /// The socket this outbox writes into directly, for a batch of sends.
    fn socket(&self) -> Option<RawFd> {
        self.socket
    }

    /// Marks the outbox of a connection that negotiated permessage-deflate.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// Marks the outbox of a Socket.IO connection.
    pub fn for_socket_io(mut self) -> Self {
        self.socket_io = true;
        self
    }

    pub fn socket_io(&self) -> bool {
        self.socket_io
    }

    /// The lock, if nobody holds it: the caller may hold it already (an outbox listed twice
    /// in one batch), and locking it again would deadlock.
    fn try_lock(&self) -> Option<MutexGuard<'_, Inner<F>>> {
        match self.inner.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<F>> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a single push/pop/swap), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a state frame. Returns whether the queue was empty before (the caller then
    /// owes the writer a [`Outbox::wake`]).
    pub fn push(&self, frame: F) -> Result<bool, PushError> {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return Err(PushError::Closed);
        }
        let state_frames = inner.queue.len() - usize::from(inner.tick_queued) - inner.audio_queued;
        if state_frames >= self.limits.max_frames
            || inner.bytes + frame.byte_len() > self.limits.max_bytes
        {
            inner.closed = Some(CloseReason::SlowConsumer);
            inner.discard();
            drop(inner);
            self.signal.raise(signal::WORK);
            return Err(PushError::SlowConsumer);
        }
        let was_empty = inner.queue.is_empty();
        inner.bytes += frame.byte_len();
        inner.append(Class::State, frame);
        Ok(was_empty)
    }

    /// Queues a tick, replacing an unsent older tick. Returns whether the queue was empty.
    pub fn push_tick(&self, frame: F) -> Result<bool, PushError> {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return Err(PushError::Closed);
        }
        if inner.tick_queued {
            // The unsent tick is almost always the last entry; search from the back.
            if let Some(pos) = inner.queue.rposition(|(c, _)| *c == Class::Tick) {
                if let Some((_, old)) = inner.queue.remove(pos) {
                    inner.bytes -= old.byte_len();
                }
                inner.dropped_ticks += 1;
            }
        }
        let was_empty = inner.queue.is_empty();
        inner.bytes += frame.byte_len();
        inner.append(Class::Tick, frame);
        inner.tick_queued = true;
        Ok(was_empty)
    }

    /// Queues an audio frame, dropping the oldest unsent one when `max_audio_frames` wait.
    /// Audio never closes the connection and does not count against the state bounds.
    /// Returns whether the queue was empty before.
    pub fn push_audio(&self, frame: F) -> Result<bool, PushError> {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return Err(PushError::Closed);
        }
        if inner.audio_queued >= self.limits.max_audio_frames.max(1) {
            if let Some(pos) = inner.queue.position(|(c, _)| *c == Class::Audio) {
                inner.queue.remove(pos);
                inner.audio_queued -= 1;
                inner.dropped_audio += 1;
            }
        }
        let was_empty = inner.queue.is_empty();
        inner.append(Class::Audio, frame);
        inner.audio_queued += 1;
        Ok(was_empty)
    }

    /// Closes the outbox and wakes the writer to end the connection with `reason`; the
    /// first reason wins. Frames already queued are still delivered before the close (so an
    /// error event can say why), except when the client is too slow to take them or gone.
    pub fn close(&self, reason: CloseReason) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(reason);
            if matches!(reason, CloseReason::SlowConsumer | CloseReason::PeerGone) {
                inner.discard();
            }
        }
        drop(inner);
        self.signal.raise(signal::WORK);
    }

    /// Whether a drain would find anything: frames, or a close to send.
    pub fn has_work(&self) -> bool {
        let inner = self.lock();
        !inner.queue.is_empty() || inner.closed.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Wakes the writer. Cheap; a wake with nothing queued is harmless.
    pub fn wake(&self) {
        self.signal.raise(signal::WORK);
    }

    /// Waits until there is something to drain (or the outbox closed). A wake that came
    /// while the writer was busy is remembered, so none is lost.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.signal.poll_take(cx, signal::WORK).map(drop)).await;
    }

    /// The connection's task read a whole message from its peer at `at_ms` (server clock).
    pub fn heard(&self, at_ms: u64) {
        self.heard_ms.store(at_ms, Ordering::Relaxed);
    }

    /// The connection's task has a message begun and not finished (or no longer has).
    pub fn set_unfinished(&self, unfinished: bool) {
        self.unfinished.store(unfinished, Ordering::Relaxed);
    }

    /// Whether the engine's ping sweep may queue this connection's ping itself: its peer
    /// was heard from less than `within_ms` before `now_ms` and has no message unfinished,
    /// so the task's own check (`ws::connection`) would only ping. Otherwise the sweep wakes
    /// the task, which checks and may close the connection (4000, 4003).
    pub fn may_ping_directly(&self, now_ms: u64, within_ms: u64) -> bool {
        !self.unfinished.load(Ordering::Relaxed)
            && now_ms.saturating_sub(self.heard_ms.load(Ordering::Relaxed)) < within_ms
    }

    /// Tells the connection's task it is due a ping (the engine's ping sweep).
    pub fn ping_due(&self) {
        self.signal.raise(signal::PING);
    }

    /// What the task was woken for since it last asked: something to drain (or a close),
    /// a ping due, or both. With neither, the next wake of either kind wakes `cx`.
    pub fn poll_wakes(&self, cx: &mut Context<'_>) -> Poll<Wakes> {
        self.signal
            .poll_take(cx, signal::WORK | signal::PING)
            .map(|bits| Wakes {
                work: bits & signal::WORK != 0,
                ping: bits & signal::PING != 0,
            })
    }

    /// Moves every queued frame into `out` (in order) and reports closure and drops.
    pub fn drain_into(&self, out: &mut Vec<F>) -> Drained {
        let mut inner = self.lock();
        out.extend(inner.queue.drain().map(|(_, f)| f));
        inner.started = false;
        inner.discard();
        Drained {
            closed: inner.closed,
            dropped_ticks: std::mem::take(&mut inner.dropped_ticks),
            dropped_audio: std::mem::take(&mut inner.dropped_audio),
        }
    }
}

/// How many outboxes ahead a walk over many of them (a broadcast's pushes, a batch's
/// writes) asks for the one it will touch (see [`Outbox::prefetch`]): far enough for the
/// load to arrive in time, near enough that it is still cached when the walk gets there.
pub const PREFETCH_AHEAD: usize = 8;

/// Starts loading the cache line that holds `value` (see [`Outbox::prefetch`]).
#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    let _ = value;
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod batch_tests;
