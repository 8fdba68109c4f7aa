//! The server-wide budget for partially received WebSocket messages.
//!
//! Every connection may hold one message in assembly (its fragments so far, or the inflated
//! output and inflate state of a compressed one). Each is bounded per connection by
//! `MAX_MESSAGE_BYTES` / `MAX_FRAME_BYTES`, but thousands of connections that each begin a
//! large message and never finish it would still add up (issue: 500 sockets held 536 MB).
//! So every byte held in assembly is also taken from this one budget, and a connection that
//! cannot get what it needs is closed with 1013 (try again later) instead of growing memory.
//!
//! An atomic counter, no lock: the frame guards of all connections reserve and release from
//! their own tasks.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct PartialBudget {
    used: AtomicUsize,
    max: usize,
    /// Mirrors `used` for `/metrics`.
    gauge: Option<IntGauge>,
}

impl PartialBudget {
    pub fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
            gauge: None,
        }
    }

    /// Reports the bytes in use through `gauge` as well.
    pub fn with_gauge(mut self, gauge: IntGauge) -> Self {
        self.gauge = Some(gauge);
        self
    }

    /// Takes `bytes` from the budget, or returns false (taking nothing) when that would
    /// exceed it.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.max)
            })
            .is_ok();
        if taken {
            if let Some(gauge) = &self.gauge {
                gauge.add(bytes as i64);
            }
        }
        taken
    }

    /// Gives back `bytes` reserved earlier.
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(gauge) = &self.gauge {
            gauge.sub(bytes as i64);
        }
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_budget_and_come_back_on_release() {
        let budget = PartialBudget::new(100);
        assert!(budget.try_reserve(60));
        assert!(!budget.try_reserve(41), "60 + 41 is over 100");
        assert_eq!(budget.used(), 60, "a refused reservation takes nothing");
        assert!(budget.try_reserve(40));
        budget.release(60);
        assert_eq!(budget.used(), 40);
        assert!(!budget.try_reserve(usize::MAX), "no overflow");
    }
}
