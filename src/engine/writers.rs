//! Writing a batch's frames into its `/ws` sockets on every core.
//!
//! The engine thread writes what a batch queued for each socket itself (one `writev` each,
//! see `outbox::write`). On a machine with more cores, one thread would be the ceiling of
//! the whole server's output, so a large batch is split: helper threads, one per core
//! besides the engine's, each take an equal share of the sockets while the engine writes
//! its own. Order per socket holds whichever thread writes it: every write takes the
//! outbox's lock and sends what is queued, in order.
//!
//! The hand-off queues are bounded; when a helper is still busy with its previous share,
//! the engine writes that share itself rather than wait or queue without bound.

use crate::clock::ServerClock;
use crate::frames::WsFrame;
use crate::metrics::Metrics;
use crate::outbox::{write_batch, BatchScratch, Outbox, Written};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use uring_send::SendBatch;

/// Fewer sockets than this per share are not worth a hand-off to another thread (waking
/// it costs about as much as a few writes).
const MIN_SHARE: usize = 64;
/// Shares a helper may have waiting.
const QUEUED_SHARES: usize = 4;
/// Most helper threads, whatever the core count.
const MAX_HELPERS: usize = 15;
/// Sends per io_uring submission: the engine's slice (`FLUSH_SLICE`) in one. A larger share
/// goes in several; the ring's memory is about 100 bytes an entry.
const RING_ENTRIES: u32 = 256;

type Share = Vec<Arc<Outbox<WsFrame>>>;

pub(super) struct WritePool {
    helpers: Vec<Sender<Share>>,
    /// The engine's own writer.
    own: Writer,
}

impl WritePool {
    /// One helper per available core beyond the engine's own (none on one core). With
    /// `io_uring`, each writer batches its sends through a ring of its own where the kernel
    /// allows one.
    pub(super) fn start(
        clock: ServerClock,
        metrics: &Arc<Metrics>,
        io_uring: bool,
    ) -> std::io::Result<Self> {
        let own = Writer::new(io_uring.then(open_ring).flatten());
        let io_uring = own.batch.is_some();
        tracing::info!(
            io_uring,
            "engine writes: batched through io_uring, or one send each"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut helpers = Vec::new();
        for index in 0..(cores - 1).min(MAX_HELPERS) {
            let (tx, rx) = crossbeam_channel::bounded::<Share>(QUEUED_SHARES);
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("bandsync-writer-{index}"))
                .spawn(move || {
                    let mut writer = Writer::new(io_uring.then(open_ring).flatten());
                    // Ends when the engine (the only sender) is gone.
                    for share in rx {
                        writer.write_share(&share, &clock, &metrics);
                    }
                })?;
            helpers.push(tx);
        }
        Ok(Self { helpers, own })
    }

    /// Writes every outbox in `outboxes` (and empties it): shares to the helpers when it
    /// is large, the rest here.
    pub(super) fn write_all(
        &mut self,
        outboxes: &mut Vec<Arc<Outbox<WsFrame>>>,
        clock: &ServerClock,
        metrics: &Metrics,
    ) {
        let shares = (outboxes.len() / MIN_SHARE).min(self.helpers.len() + 1);
        if shares > 1 {
            let size = outboxes.len().div_ceil(shares);
            for helper in &self.helpers[..shares - 1] {
                let share = outboxes.split_off(outboxes.len() - size);
                if let Err(TrySendError::Full(share) | TrySendError::Disconnected(share)) =
                    helper.try_send(share)
                {
                    self.own.write_share(&share, clock, metrics);
                }
            }
        }
        self.own.write_share(outboxes, clock, metrics);
        outboxes.clear();
    }
}

/// One thread's way of writing: its io_uring, if it has one.
struct Writer {
    batch: Option<SendBatch>,
    scratch: BatchScratch,
}

/// A writer's ring, or why there is none (an old kernel, `io_uring_disabled`, a seccomp
/// profile that refuses it, the locked-memory limit): then every write is one `send`, as
/// with `IO_URING=off`.
fn open_ring() -> Option<SendBatch> {
    SendBatch::new(RING_ENTRIES)
        .map_err(|e| tracing::info!(error = %e, "io_uring unavailable: one send per socket write"))
        .ok()
}

impl Writer {
    fn new(batch: Option<SendBatch>) -> Self {
        Self {
            batch,
            scratch: BatchScratch::default(),
        }
    }

    /// Writes each outbox directly, wakes a connection's task where the socket did not take
    /// everything (or a close is due), and counts the writes once for the share.
    fn write_share(
        &mut self,
        outboxes: &[Arc<Outbox<WsFrame>>],
        clock: &ServerClock,
        metrics: &Metrics,
    ) {
        let mut total = Written::default();
        let mut report = |outbox: &Arc<Outbox<WsFrame>>, written: Written| {
            if written.needs_task() {
                outbox.wake();
            }
            total.add(&written);
        };
        for outbox in outboxes {
            if !outbox.writes_directly() {
                outbox.wake();
            }
        }
        match &mut self.batch {
            // One socket gains nothing from a batch.
            Some(batch) if outboxes.len() > 1 => {
                let batched = write_batch(outboxes, batch, &mut self.scratch, clock, &mut report);
                metrics.ws.sends_batched.inc_by(batched as u64);
            }
            _ => {
                for outbox in outboxes.iter().filter(|o| o.writes_directly()) {
                    report(outbox, outbox.write(clock));
                }
            }
        }
        total.count(metrics);
    }
}
