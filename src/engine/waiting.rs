//! How the engine waits for its next event or deadline: on a thread of its own, or as a
//! task of the runtime's one worker.
//!
//! On its own thread the engine blocks in the queue with a deadline (`recv_deadline`, a
//! futex wait with sub-millisecond precision). On one core that thread and the runtime's
//! worker take turns on the core, with a futex wake-up and a context switch each time the
//! one hands work to the other. There the engine runs as a task of the worker instead
//! (`ENGINE_PLACEMENT=auto`): the queue's senders signal a [`Notify`], and the deadlines
//! are kept by a `timerfd` registered with the runtime's reactor, as precise as the futex
//! wait, where tokio's own timer rounds up to the next millisecond. Measured on one core: a
//! tenth less CPU a join, ticks and fan-out unchanged (BENCHMARKS.md, issue 12, seventh
//! round).

use super::inbound::Inbound;
use crate::config::EnginePlacement;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustix::fd::OwnedFd;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// Whether the engine runs as a task of the current runtime (none: a thread).
pub(super) fn runs_as_task(placement: EnginePlacement) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    match placement {
        EnginePlacement::Thread => false,
        EnginePlacement::Worker => true,
        EnginePlacement::Auto => {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                && runtime.metrics().num_workers() == 1
        }
    }
}

/// The engine's way of waiting, chosen at start (see `engine::spawn`).
pub(super) enum Waiting {
    /// Blocks its own thread.
    Thread,
    /// Awaits, as a task of the runtime.
    Task {
        /// Signalled by every message put in the queue (`EngineHandle`).
        arrivals: Arc<Notify>,
        timer: DeadlineTimer,
    },
}

impl Waiting {
    /// The next message, or `Timeout` once `deadline` has passed with none.
    pub(super) async fn recv_deadline(
        &mut self,
        rx: &Receiver<Inbound>,
        deadline: Instant,
    ) -> Result<Inbound, RecvTimeoutError> {
        let (arrivals, timer) = match self {
            Waiting::Thread => return rx.recv_deadline(deadline),
            Waiting::Task { arrivals, timer } => (arrivals, timer),
        };
        loop {
            match rx.try_recv() {
                Ok(msg) => return Ok(msg),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            // A message queued after the `try_recv` above left a permit in `arrivals`
            // (`notify_one`), so this wait cannot miss it. A permit left by a message
            // already taken only costs one more look at the queue.
            tokio::select! {
                biased;
                () = arrivals.notified() => {}
                () = timer.sleep_until(deadline) => {}
            }
        }
    }
}

/// A `timerfd` on the monotonic clock (the clock of [`Instant`]), read through the runtime's
/// reactor: the engine task's deadlines to within the kernel's timer slack, not tokio's
/// 1 ms grain.
pub(super) struct DeadlineTimer {
    fd: AsyncFd<OwnedFd>,
    /// The deadline the timer is armed for: a wait for the same deadline (the usual case:
    /// several events before one tick) does not set it again.
    armed_for: Option<Instant>,
}

impl DeadlineTimer {
    /// Needs the runtime's reactor (called on a runtime).
    pub(super) fn new() -> std::io::Result<Self> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated because a `T: AsRawFd` may not own the descriptor it
        // names (tokio#8587), and its replacement `register` is `unsafe`, which this crate
        // forbids. Here `T` is an `OwnedFd`: the `AsyncFd` owns the descriptor and
        // deregisters it before closing it, the I/O safety `register` asks for.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Self {
            fd,
            armed_for: None,
        })
    }

    /// Resolves at `deadline` (at once if it has passed). Cancel-safe: dropped before the
    /// deadline, the timer stays armed for it, and a later wait for the same deadline
    /// finds it expired or waits for it.
    async fn sleep_until(&mut self, deadline: Instant) {
        if self.armed_for != Some(deadline) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            if let Err(error) = self.arm(left) {
                // Never seen in practice; the runtime's timer is late by up to 1 ms.
                tracing::warn!(%error, "the engine's timerfd could not be set");
                tokio::time::sleep_until(deadline.into()).await;
                return;
            }
            self.armed_for = Some(deadline);
        }
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                tokio::time::sleep_until(deadline.into()).await;
                return;
            };
            // The expiry count (8 bytes) must be read, or the descriptor stays readable.
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(_) => {
                    self.armed_for = None;
                    return;
                }
                // Readiness left over from an earlier expiry, already read: wait on.
                Err(_would_block) => continue,
            }
        }
    }

    /// Arms the timer `left` from now (relative: an `Instant` has no absolute reading).
    fn arm(&self, left: Duration) -> std::io::Result<()> {
        let value = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            },
        };
        rustix::time::timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed_on(runtime: &tokio::runtime::Runtime, placement: EnginePlacement) -> bool {
        runtime.block_on(async { runs_as_task(placement) })
    }

    #[test]
    fn auto_places_the_engine_on_the_worker_only_when_there_is_one() {
        let one = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let two = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(placed_on(&one, EnginePlacement::Auto));
        assert!(!placed_on(&two, EnginePlacement::Auto));
        // A current-thread runtime also has one "worker": the caller's own thread, which
        // may block (tests, embedders); only `worker` asks for it.
        assert!(!placed_on(&current, EnginePlacement::Auto));
        assert!(placed_on(&two, EnginePlacement::Worker));
        assert!(!placed_on(&one, EnginePlacement::Thread));
        // Off any runtime there is no worker to run on.
        assert!(!runs_as_task(EnginePlacement::Worker));
    }

    #[tokio::test]
    async fn the_timer_wakes_at_its_deadline_not_a_millisecond_later() {
        let mut timer = DeadlineTimer::new().unwrap();
        let mut lateness = Vec::new();
        for _ in 0..21 {
            let deadline = Instant::now() + Duration::from_micros(2_300);
            timer.sleep_until(deadline).await;
            let woke = Instant::now();
            assert!(woke >= deadline, "woke before its deadline");
            lateness.push(woke - deadline);
        }
        lateness.sort();
        // tokio's timer rounds each of these up to its next millisecond: about half a
        // millisecond late on the median. A loaded machine delays a wake-up now and then,
        // not the median.
        let median = lateness[lateness.len() / 2];
        assert!(
            median < Duration::from_micros(300),
            "median lateness {median:?}"
        );
    }

    #[tokio::test]
    async fn a_message_ends_the_wait_and_a_deadline_ends_an_empty_one() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let arrivals = Arc::new(Notify::new());
        let mut waiting = Waiting::Task {
            arrivals: arrivals.clone(),
            timer: DeadlineTimer::new().unwrap(),
        };
        let far = Instant::now() + Duration::from_secs(30);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(Inbound::ClosedWs { key: 7 }).unwrap();
            arrivals.notify_one();
            tx
        });
        let got = waiting.recv_deadline(&rx, far).await;
        assert!(matches!(got, Ok(Inbound::ClosedWs { key: 7 })));
        let _tx = sender.await.unwrap();
        let soon = Instant::now() + Duration::from_millis(5);
        let got = waiting.recv_deadline(&rx, soon).await;
        assert!(matches!(got, Err(RecvTimeoutError::Timeout)));
        assert!(Instant::now() >= soon);
    }
}
