//! The engine's loop: it sleeps until the next event, tick deadline, scheduled change or
//! housekeeping, whichever comes first, and handles what is due, flushing the writers it
//! woke after each step (module docs of `engine` say why a dedicated thread, and
//! `waiting` when it is a task of the runtime instead). The loop is an `async fn` for the
//! task's sake; on its own thread nothing in it ever waits but the thread itself.

use super::inbound::{EngineInbox, Inbound};
use super::waiting::Waiting;
use super::ShareNotice;
use super::{Engine, Settings, HOUSEKEEPING_INTERVAL};
use crate::share::replica::ShareChange;
use crossbeam_channel::RecvTimeoutError;
use std::time::Instant;

/// Sockets the engine task writes between two yields to the runtime: 1.5 to 5 ms of
/// writes on loopback, the longest a connection's read then waits behind them.
const FLUSH_SLICE: usize = 256;

impl Engine {
    pub(super) async fn run(mut self, inbox: EngineInbox, mut waiting: Waiting) {
        let tick = self.settings.tick_interval;
        // Deadlines on the shared wall-clock grid (`tick_grid`): deadline k is at
        // k x tick ms after the epoch, on every instance.
        let tick_ms = tick.as_secs_f64() * 1000.0;
        let mut deadline =
            crate::tick_grid::deadline_at_or_before(self.clock.now_ms(), tick_ms) + 1;
        let mut next_tick = self.clock.instant_at(deadline as f64 * tick_ms);
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING_INTERVAL;
        // When the last batch started, and whether it was cut at the size cap (a backlog).
        let mut last_batch: Option<(Instant, bool)> = None;
        let mut batch: Vec<Inbound> = Vec::with_capacity(self.settings.max_batch);
        loop {
            // A scheduled change's instant is a deadline like a tick's.
            let next_change = self.timers.next().map(|ms| self.clock.instant_at(ms));
            let next_deadline = next_change.map_or(next_tick, |at| at.min(next_tick));
            let wake_at = next_deadline.min(next_housekeeping).min(self.pings.next());
            match waiting.recv_deadline(&inbox.rx, wake_at).await {
                Ok(first) => {
                    batch.push(first);
                    let started = Instant::now();
                    collect_batch(
                        &inbox,
                        &mut waiting,
                        &mut batch,
                        &self.settings,
                        last_batch,
                        next_deadline,
                    )
                    .await;
                    last_batch = Some((started, batch.len() >= self.settings.max_batch));
                    inbox.signal_room();
                    let stop = self.process_batch(&mut batch);
                    self.flush_room_stats();
                    self.flush_wakes(&waiting).await;
                    if stop {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if next_change.is_some_and(|at| now >= at) {
                // Before the tick: a tick at the same deadline sees the applied change.
                self.activate_due();
                self.flush_wakes(&waiting).await;
            }
            if now >= next_tick {
                self.metrics
                    .tick_lag
                    .observe(now.duration_since(next_tick).as_secs_f64());
                self.tick_all(deadline);
                self.flush_room_stats();
                self.flush_wakes(&waiting).await;
                // Absolute deadlines: the schedule never drifts; ticks missed while the
                // thread was busy are skipped (a gap in `seq`), not bunched.
                next_tick += tick;
                deadline += 1;
                if next_tick <= now {
                    let behind = now.duration_since(next_tick).as_nanos() / tick.as_nanos() + 1;
                    next_tick += tick * behind as u32;
                    deadline += behind as u64;
                    self.metrics.tick_deadlines_missed.inc_by(behind as u64);
                }
            }
            if now >= self.pings.next() {
                self.ping_sweep(now);
                self.flush_wakes(&waiting).await;
            }
            if now >= next_housekeeping {
                self.housekeeping(now);
                self.flush_wakes(&waiting).await;
                next_housekeeping = now + HOUSEKEEPING_INTERVAL;
            }
        }
    }

    /// Writes what was queued. As a task, in slices, letting the runtime run the
    /// connections between them: a `room_stats` burst to thousands of sockets would hold
    /// every connection's reads (a heartbeat's too) for its whole length, and the load
    /// client's joins stalled behind it cost more per frame than the writes themselves
    /// (BENCHMARKS.md, issue 12, seventh round).
    async fn flush_wakes(&mut self, waiting: &Waiting) {
        let (pool, clock, metrics) = (&mut self.writers, &self.clock, &self.metrics);
        match waiting {
            Waiting::Thread => self.wakes.flush(pool, clock, metrics),
            Waiting::Task { .. } => {
                while self.wakes.flush_some(FLUSH_SLICE, pool, clock, metrics) {
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Applies a batch. Returns true when the engine must stop.
    fn process_batch(&mut self, batch: &mut Vec<Inbound>) -> bool {
        self.metrics.batch_size.observe(batch.len() as f64);
        let mut stop = false;
        for msg in batch.drain(..) {
            stop |= matches!(msg, Inbound::Shutdown);
            self.process_contained(msg);
        }
        stop
    }
}

/// Adds to `batch` what is already queued, and, when the previous batch started less
/// than the batching window ago, what arrives before the window closes (but never past
/// the next tick or scheduled change). A backlog (the previous batch was full) is never
/// held: its events have already waited.
///
/// A free function, given the engine's settings only: a borrow of the whole engine held
/// across its waits would ask the engine to be `Sync`.
async fn collect_batch(
    inbox: &EngineInbox,
    waiting: &mut Waiting,
    batch: &mut Vec<Inbound>,
    settings: &Settings,
    last_batch: Option<(Instant, bool)>,
    next_tick: Instant,
) {
    let max = settings.max_batch;
    let window_end = last_batch
        .filter(|(_, was_full)| !was_full && !batch.first().is_some_and(never_held))
        .map(|(t, _)| t + settings.batch_interval);
    if let Some(window_end) = window_end.filter(|end| *end > Instant::now()) {
        let hold_until = window_end.min(next_tick);
        while batch.len() < max {
            match waiting.recv_deadline(&inbox.rx, hold_until).await {
                Ok(msg) => {
                    let urgent = never_held(&msg);
                    batch.push(msg);
                    if urgent {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    while batch.len() < max {
        match inbox.rx.try_recv() {
            Ok(msg) => batch.push(msg),
            Err(_) => break,
        }
    }
}

/// Events the batching window never holds (the batch they arrive in is processed at once),
/// because holding them would merge nothing and only add latency:
/// - relayed audio is forwarded, not decided (each chunk goes out on its own);
/// - the cluster's answers: a commit coming back from Redis was decided already, and holding
///   it would delay the leader's own instance by the window (measured: +4.6 ms p50);
/// - a `join_session`: its answer goes to the joiner alone (what it changes for the others,
///   `room_stats`, is coalesced on its own interval), and the joiner is waiting for it
///   (measured: BENCHMARKS.md, issue 12, fourth round).
fn never_held(event: &Inbound) -> bool {
    matches!(
        event,
        Inbound::AudioIn { .. }
            | Inbound::Share(ShareNotice::Change(ShareChange::Audio { .. }))
            | Inbound::Cluster(_)
            | Inbound::Command {
                event: bandsync_protocol::ClientEvent::JoinSession(_),
                ..
            }
    )
}
