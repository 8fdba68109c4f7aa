//! Writing an outbox straight into its socket: everything queued, in one `writev`, without
//! blocking, by whichever thread holds the outbox.
//!
//! Why: a broadcast used to wake one task per recipient, which then locked the outbox, had
//! tungstenite copy each frame into its own buffer and flushed it. Here the engine thread
//! writes the shared, already framed bytes itself at the end of a batch (`Wakes::flush`), so
//! a recipient whose socket has room costs one `writev` and no task wake-up at all. The task
//! is woken only when the kernel did not take everything (backpressure), for a close, or
//! when the socket failed. A frame the socket took only part of stays at the front as its
//! unwritten rest (`started`), so the next write, from whichever side, continues it.

use super::{Class, CloseReason, Frame, Outbox, PREFETCH_AHEAD};
use crate::clock::ServerClock;
use crate::metrics::Metrics;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, MutexGuard};
use uring_send::SendBatch;

/// The write side of a connection's socket, written without blocking.
pub trait Sink: Send + Sync {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// The socket, for a batch of sends made in one system call ([`write_batch`]); `None`
    /// when it has none (a test's fake), which then is written on its own.
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// A frame that knows its bytes on the wire.
pub trait WireFrame: Frame {
    /// Makes the frame's wire bytes final for a connection (`deflate`: it negotiated
    /// permessage-deflate); a frame whose bytes depend on the send instant (a heartbeat
    /// reply's `t2`) is made now.
    fn prepare(&mut self, deflate: bool, clock: &ServerClock);
    /// The frame's wire bytes for the connection, once prepared.
    fn wire(&self, deflate: bool) -> &Bytes;
    /// Whether those bytes are the compressed form (for `deflate_messages_total`).
    fn compressed(&self, deflate: bool) -> bool;
    /// Whether the frame is a message (counted in `messages_out_total`), not a control frame.
    fn is_message(&self) -> bool;
    /// The unwritten rest of a partly written frame, written as is.
    fn rest(bytes: Bytes, is_message: bool) -> Self;
}

/// What one write pass did, for the caller's metrics and its next step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Messages whose last byte was written.
    pub messages: u64,
    /// Bytes written, frame headers included.
    pub bytes: u64,
    /// Messages written in their compressed form.
    pub compressed: u64,
    /// Ticks replaced before they were sent, and audio dropped unsent, since the last pass.
    pub dropped_ticks: u64,
    pub dropped_audio: u64,
    /// Frames are still queued: the socket would block. Wait until it is writable.
    pub pending: bool,
    /// The outbox is closed, with this reason; unless `pending`, everything queued before
    /// the close has been written and the close frame is due.
    pub closed: Option<CloseReason>,
    /// The socket failed; the outbox is now closed as [`CloseReason::PeerGone`].
    pub failed: bool,
}

impl Written {
    /// Whether the connection's task has to act: wait for room, send a close, or end.
    pub fn needs_task(&self) -> bool {
        self.pending || self.closed.is_some() || self.failed
    }

    /// Adds `other` (another socket's pass) to these figures.
    pub fn add(&mut self, other: &Written) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.compressed += other.compressed;
        self.dropped_ticks += other.dropped_ticks;
        self.dropped_audio += other.dropped_audio;
    }

    /// Counts the figures in `/metrics` as `/ws` traffic: once per pass over many sockets.
    pub fn count(&self, metrics: &Metrics) {
        if self.messages > 0 {
            metrics.ws.messages_out.inc_by(self.messages);
        }
        if self.bytes > 0 {
            metrics.ws.bytes_out.inc_by(self.bytes);
        }
        if self.compressed > 0 {
            metrics.ws.deflate_out.inc_by(self.compressed);
        }
        if self.dropped_ticks > 0 {
            metrics.ticks_dropped.inc_by(self.dropped_ticks);
        }
        if self.dropped_audio > 0 {
            metrics.audio_dropped.inc_by(self.dropped_audio);
        }
    }
}

/// Frames per `writev`: a batch rarely queues more for one socket; more go in the next call.
const MAX_IOV: usize = 64;

impl<F: WireFrame> Outbox<F> {
    /// Writes everything queued into the socket, as far as it takes it without blocking.
    /// Without a sink, writes nothing and reports whether anything is queued.
    pub fn write(&self, clock: &ServerClock) -> Written {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut written = inner.start_pass();
        let Some(sink) = &self.sink else {
            written.pending = !inner.queue.is_empty();
            written.closed = inner.closed;
            return written;
        };
        let deflate = self.deflate;
        while !inner.queue.is_empty() && !written.failed {
            let count = inner.queue.len().min(MAX_IOV);
            inner.prepare_front(count, deflate, clock);
            let mut offered = 0;
            let result = if count == 1 {
                // The usual case (one broadcast or tick per batch): no array of slices to
                // fill, which costs more than the one frame's bookkeeping.
                let wire = inner
                    .queue
                    .front()
                    .expect("checked not empty")
                    .1
                    .wire(deflate);
                offered = wire.len();
                sink.try_write_vectored(&[IoSlice::new(wire)])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                for (slot, (_, frame)) in slices.iter_mut().zip(inner.queue.iter().take(count)) {
                    *slot = IoSlice::new(frame.wire(deflate));
                    offered += slot.len();
                }
                sink.try_write_vectored(&slices[..count])
            };
            match result {
                Ok(0) if offered > 0 => written.failed = true,
                Ok(n) => {
                    written.bytes += n as u64;
                    inner.consume(n, deflate, &mut written);
                    if n < offered {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => written.failed = true,
            }
        }
        inner.finish(&mut written);
        written
    }
}

/// Writes each outbox of `outboxes` that [`Outbox::writes_directly`], as
/// [`Outbox::write`] does, and hands `report` its outcome; the others are left alone.
/// Returns how many were sent in batches.
///
/// The usual outbox of a fan-out or a tick holds one frame: those are sent in batches
/// through `batch` (see `uring_send`), as many a submission as its ring takes, each outbox
/// locked from its send's submission to its completion (one submission: about a
/// millisecond for 256 sockets). An outbox the submission did not finish (its socket took
/// part or nothing, or failed), and one holding several frames, is then written on its own
/// by [`Outbox::write`], which continues where the batch stopped and handles the socket's
/// refusal (readiness for the task's wait) and its failure the usual way.
pub fn write_batch<F: WireFrame>(
    outboxes: &[Arc<Outbox<F>>],
    batch: &mut SendBatch,
    scratch: &mut BatchScratch,
    clock: &ServerClock,
    mut report: impl FnMut(&Arc<Outbox<F>>, Written),
) -> usize {
    let per_submission = batch.capacity().max(1);
    outboxes
        .chunks(per_submission)
        .map(|part| write_part(part, batch, scratch, clock, &mut report))
        .sum()
}

/// [`write_batch`] for at most one submission's outboxes.
fn write_part<F: WireFrame>(
    outboxes: &[Arc<Outbox<F>>],
    batch: &mut SendBatch,
    scratch: &mut BatchScratch,
    clock: &ServerClock,
    report: &mut impl FnMut(&Arc<Outbox<F>>, Written),
) -> usize {
    let mut held: Vec<Held<'_, F>> = Vec::with_capacity(outboxes.len());
    scratch.alone.clear();
    // Every lock first, each outbox asked for a few ahead (`Outbox::prefetch`); then the
    // rest of each locked outbox asked for at once, so that those loads overlap too.
    for (index, outbox) in outboxes.iter().enumerate() {
        if let Some(ahead) = outboxes.get(index + PREFETCH_AHEAD) {
            ahead.prefetch();
        }
        if !outbox.writes_directly() {
            continue;
        }
        // Not `lock`: an outbox can be listed twice in one batch (its task emptied it in
        // between and the engine queued again), and this thread may hold it already. Such
        // an outbox, or one another thread holds now, is written alone after the batch.
        let (Some(guard), Some(socket)) = (outbox.try_lock(), outbox.socket()) else {
            scratch.alone.push(index);
            continue;
        };
        guard.prefetch();
        held.push(Held {
            index,
            socket,
            deflate: outbox.deflate,
            guard,
        });
    }
    held.retain_mut(|held| {
        if held.guard.queue.len() != 1 {
            scratch.alone.push(held.index);
            return false;
        }
        held.guard.prepare_front(1, held.deflate, clock);
        true
    });
    let batched = held.len();
    {
        let sends: Vec<uring_send::Send<'_>> = held
            .iter()
            .map(|held| {
                let (_, frame) = held.guard.queue.front().expect("holds one frame");
                (held.socket, frame.wire(held.deflate).as_ref())
            })
            .collect();
        batch.send_all(&sends, &mut scratch.results);
    }
    // The kernel's sends pushed the outboxes out of the cache: ask for all of them at once
    // again.
    for held in &held {
        held.guard.prefetch();
    }
    for (mut held, result) in held.into_iter().zip(scratch.results.drain(..)) {
        let outbox = &outboxes[held.index];
        let inner = &mut *held.guard;
        let mut written = inner.start_pass();
        if let Ok(n) = result {
            written.bytes += n as u64;
            inner.consume(n, held.deflate, &mut written);
        }
        if inner.queue.is_empty() {
            inner.finish(&mut written);
            drop(held);
        } else {
            drop(held);
            written.then(outbox.write(clock));
        }
        report(outbox, written);
    }
    for &index in &scratch.alone {
        let outbox = &outboxes[index];
        report(outbox, outbox.write(clock));
    }
    batched
}

/// An outbox locked for a batch's send, and what the send needs of it.
struct Held<'a, F> {
    /// Its place in the batch's list.
    index: usize,
    socket: RawFd,
    deflate: bool,
    guard: MutexGuard<'a, super::Inner<F>>,
}

/// What [`write_batch`] reuses from one batch to the next.
#[derive(Default)]
pub struct BatchScratch {
    results: Vec<io::Result<usize>>,
    alone: Vec<usize>,
}

impl Written {
    /// Adds the pass that followed this one on the same socket: its figures add up, its
    /// state (pending, closed, failed) is the socket's now.
    fn then(&mut self, later: Written) {
        self.add(&later);
        self.pending = later.pending;
        self.closed = later.closed;
        self.failed = later.failed;
    }
}

impl<F: WireFrame> super::Inner<F> {
    /// Begins a write pass: the ticks and audio dropped since the last one are its to count.
    fn start_pass(&mut self) -> Written {
        Written {
            dropped_ticks: std::mem::take(&mut self.dropped_ticks),
            dropped_audio: std::mem::take(&mut self.dropped_audio),
            ..Written::default()
        }
    }

    /// Makes the first `count` frames' wire bytes final (see [`WireFrame::prepare`]),
    /// keeping the queue's byte count (audio has its own bound) in step with their size.
    fn prepare_front(&mut self, count: usize, deflate: bool, clock: &ServerClock) {
        for (class, frame) in self.queue.iter_mut().take(count) {
            let before = frame.byte_len();
            frame.prepare(deflate, clock);
            if *class != Class::Audio {
                self.bytes = self.bytes - before + frame.byte_len();
            }
        }
    }

    /// Ends a write pass: a failed socket closes the outbox, and a queue emptied of a
    /// backlog gives its memory back.
    fn finish(&mut self, written: &mut Written) {
        if written.failed {
            self.started = false;
            self.closed.get_or_insert(CloseReason::PeerGone);
            self.discard();
        }
        written.pending = !self.queue.is_empty();
        if !written.pending {
            self.queue.shrink_when_short();
        }
        written.closed = self.closed;
    }

    /// Removes the first `n` written bytes from the front of the queue: whole frames are
    /// counted and dropped, a frame written in part is replaced by its unwritten rest.
    fn consume(&mut self, mut n: usize, deflate: bool, written: &mut Written) {
        while n > 0 {
            let Some((class, frame)) = self.queue.front() else {
                return;
            };
            let (class, len) = (*class, frame.wire(deflate).len());
            if n < len {
                let rest = F::rest(frame.wire(deflate).slice(n..), frame.is_message());
                let old = frame.byte_len();
                self.forget_class(class, old);
                self.bytes += rest.byte_len();
                *self.queue.front_mut().expect("front checked above") = (Class::State, rest);
                self.started = true;
                return;
            }
            n -= len;
            let (class, frame) = self.queue.pop_front().expect("front checked above");
            self.started = false;
            if frame.is_message() {
                written.messages += 1;
                written.compressed += u64::from(frame.compressed(deflate));
            }
            self.forget_class(class, frame.byte_len());
        }
    }

    /// Takes a frame of `class` and `size` out of the queue's counters.
    fn forget_class(&mut self, class: Class, size: usize) {
        match class {
            Class::State => self.bytes -= size,
            Class::Tick => {
                self.bytes -= size;
                self.tick_queued = false;
            }
            Class::Audio => self.audio_queued -= 1,
        }
    }
}
