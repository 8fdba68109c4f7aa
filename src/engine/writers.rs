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
use crate::outbox::{Outbox, Written};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;

/// Fewer sockets than this per share are not worth a hand-off to another thread (waking
/// it costs about as much as a few writes).
const MIN_SHARE: usize = 64;
/// Shares a helper may have waiting.
const QUEUED_SHARES: usize = 4;
/// Most helper threads, whatever the core count.
const MAX_HELPERS: usize = 15;

type Share = Vec<Arc<Outbox<WsFrame>>>;

pub(super) struct WritePool {
    helpers: Vec<Sender<Share>>,
}

impl WritePool {
    /// One helper per available core beyond the engine's own (none on one core).
    pub(super) fn start(clock: ServerClock, metrics: &Arc<Metrics>) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut helpers = Vec::new();
        for index in 0..(cores - 1).min(MAX_HELPERS) {
            let (tx, rx) = crossbeam_channel::bounded::<Share>(QUEUED_SHARES);
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("bandsync-writer-{index}"))
                .spawn(move || {
                    // Ends when the engine (the only sender) is gone.
                    for share in rx {
                        write_share(&share, &clock, &metrics);
                    }
                })?;
            helpers.push(tx);
        }
        Ok(Self { helpers })
    }

    /// Writes every outbox in `outboxes` (and empties it): shares to the helpers when it
    /// is large, the rest here.
    pub(super) fn write_all(
        &self,
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
                    write_share(&share, clock, metrics);
                }
            }
        }
        write_share(outboxes, clock, metrics);
        outboxes.clear();
    }
}

/// Writes each outbox directly, wakes a connection's task where the socket did not take
/// everything (or a close is due), and counts the writes once for the share.
fn write_share(outboxes: &[Arc<Outbox<WsFrame>>], clock: &ServerClock, metrics: &Metrics) {
    let mut total = Written::default();
    for outbox in outboxes {
        if !outbox.writes_directly() {
            outbox.wake();
            continue;
        }
        let written = outbox.write(clock);
        if written.needs_task() {
            outbox.wake();
        }
        total.add(&written);
    }
    total.count(metrics);
}
