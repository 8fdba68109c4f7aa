//! The ping sweep. A `/ws` connection needs a ping every `SOCKET_PING_INTERVAL`, and a
//! check that it answered within `SOCKET_PING_TIMEOUT`; a timer in every connection's task
//! for that would cost its memory in every idle connection, and a timer-wheel entry each.
//! The engine already knows every connection, so it says when each is due: the connections
//! are split into [`SLOTS`] groups by key, and every interval / [`SLOTS`] one group is
//! told (`Outbox::ping_due`). Each connection is told once per interval, and a sweep wakes
//! an eighth of them, not all at once. The connection's task then does the check and the
//! ping itself (`ws::connection`), as it knows when its peer was last heard from.

use super::{Engine, Peer};
use std::time::{Duration, Instant};

/// How many groups the connections are pinged in.
const SLOTS: u64 = 8;

pub(super) struct PingSweep {
    /// The interval over the number of groups.
    every: Duration,
    next: Instant,
    slot: u64,
}

impl PingSweep {
    pub(super) fn new(interval: Duration, now: Instant) -> Self {
        let every = (interval / SLOTS as u32).max(Duration::from_millis(1));
        Self {
            every,
            next: now + every,
            slot: 0,
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
    /// Tells the group that is due that it is due a ping.
    pub(super) fn ping_sweep(&mut self, now: Instant) {
        let slot = self.pings.slot;
        for (key, conn) in &self.conns {
            if key % SLOTS != slot {
                continue;
            }
            // Socket.IO pings its own way (Engine.IO's ping and pong packets).
            if let Peer::Ws(outbox) = &conn.peer {
                if !outbox.socket_io() {
                    outbox.ping_due();
                }
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
        let mut sweep = PingSweep::new(Duration::from_millis(800), start);
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
        let mut sweep = PingSweep::new(Duration::from_millis(800), start);
        sweep.advance(start + Duration::from_secs(5));
        assert_eq!(sweep.next(), start + Duration::from_secs(5) + sweep.every);
    }
}
