//! The ping sweep. A `/ws` connection needs a ping every `SOCKET_PING_INTERVAL`, and a
//! check that it answered within `SOCKET_PING_TIMEOUT`; a timer in every connection's task
//! for that would cost its memory in every idle connection, and a timer-wheel entry each.
//! The engine already knows every connection, so it says when each is due: the connections
//! are split into [`SLOTS`] groups by key, and every interval / [`SLOTS`] one group is
//! due. Each connection is due once per interval, and a sweep takes an eighth of them, not
//! all at once.
//!
//! A peer heard from within `SOCKET_PING_TIMEOUT` (less a margin) and without a message
//! left unfinished, which the connection's task tells its outbox after each read, passes
//! the task's check for certain: the sweep queues its ping itself, and the ping goes out
//! with the engine's batched writes, no task woken. That is nearly every connection: waking
//! each task to ping was, with the default 2.5 s interval, about 5 % of the server's CPU in
//! a 1,000-member fan-out (BENCHMARKS.md, issue 12, ninth round). Any other connection's
//! task is told (`Outbox::ping_due`) and does the check and the ping itself
//! (`ws::connection`): it closes a silent peer (4000) or an unfinished message (4003).

use super::fanout::after_push;
use super::{Engine, Peer};
use crate::frames::{WsFrame, PING_FRAME};
use std::time::{Duration, Instant};

/// How many groups the connections are pinged in.
const SLOTS: u64 = 8;

/// How much sooner than `SOCKET_PING_TIMEOUT` the sweep leaves a quiet peer to its task's
/// check: the task measures the silence on its own clock, a little later.
const CHECK_MARGIN: Duration = Duration::from_millis(50);

pub(super) struct PingSweep {
    /// The interval over the number of groups.
    every: Duration,
    next: Instant,
    slot: u64,
    /// Silence (ms) below which the sweep pings a peer itself.
    heard_within_ms: u64,
}

impl PingSweep {
    pub(super) fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        let every = (interval / SLOTS as u32).max(Duration::from_millis(1));
        Self {
            every,
            next: now + every,
            slot: 0,
            heard_within_ms: timeout.saturating_sub(CHECK_MARGIN).as_millis() as u64,
        }
    }

    /// When the next group is due.
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// Moves on to the next group, keeping to the schedule (a late sweep does not shift
    /// the ones after it, and a sweep missed while the thread was busy is not repeated).
    fn advance(&mut self, now: Instant) {
        self.slot = (self.slot + 1) % SLOTS;
        self.next += self.every;
        if self.next <= now {
            self.next = now + self.every;
        }
    }
}

impl Engine {
    /// Pings the group that is due, or tells its tasks to check and ping (see the module's
    /// doc). The pings queued here go out with the next flush of the engine's writes.
    pub(super) fn ping_sweep(&mut self, now: Instant) {
        let slot = self.pings.slot;
        let now_ms = self.clock.at(now) as u64;
        let within_ms = self.pings.heard_within_ms;
        for (key, conn) in &self.conns {
            if key % SLOTS != slot {
                continue;
            }
            // Socket.IO pings its own way (Engine.IO's ping and pong packets).
            let Peer::Ws(outbox) = &conn.peer else {
                continue;
            };
            if outbox.socket_io() {
                continue;
            }
            if outbox.writes_directly() && outbox.may_ping_directly(now_ms, within_ms) {
                let result = outbox.push(WsFrame::control(PING_FRAME.clone()));
                let session = conn.session.as_deref().unwrap_or("");
                after_push(result, outbox, &mut self.wakes.ws, &self.metrics, session);
            } else {
                outbox.ping_due();
            }
        }
        self.pings.advance(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_comes_round_once_per_interval() {
        let start = Instant::now();
        let mut sweep = PingSweep::new(Duration::from_millis(800), Duration::from_secs(1), start);
        let mut slots = Vec::new();
        for _ in 0..SLOTS {
            assert_eq!(sweep.next() - start, sweep.every * (slots.len() as u32 + 1));
            slots.push(sweep.slot);
            let due = sweep.next();
            sweep.advance(due);
        }
        slots.sort_unstable();
        assert_eq!(slots, (0..SLOTS).collect::<Vec<_>>());
        assert_eq!(sweep.slot, 0, "after every group, the first again");
        assert_eq!(sweep.next() - start, Duration::from_millis(900));
    }

    #[test]
    fn a_late_sweep_does_not_bunch_the_next_ones() {
        let start = Instant::now();
        let mut sweep = PingSweep::new(Duration::from_millis(800), Duration::from_secs(1), start);
        sweep.advance(start + Duration::from_secs(5));
        assert_eq!(sweep.next(), start + Duration::from_secs(5) + sweep.every);
    }
}
