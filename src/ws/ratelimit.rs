//! Per-socket rate limiting with governor, and the policy for sockets that keep at it.
//!
//! The quota is `RATE_LIMIT_MAX_REQUESTS` events per `RATE_LIMIT_WINDOW_MS` as a GCRA
//! bucket: a full window's worth may arrive in a burst, then events are admitted at the
//! steady rate. An event over the limit is dropped and answered with
//! `rate_limit_exceeded`. A socket that racks up `RATE_LIMIT_CLOSE_AFTER` such violations
//! without one quiet window in between is closed with 1008.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Drop this event; the next one would be accepted after this long.
    Limited {
        retry_after_ms: u64,
    },
    /// Too many violations: close the socket with 1008.
    Close,
}

/// One clock for every socket's limiter. Making governor's default clock (quanta) runs
/// `cpuid` and calibration, which a virtual machine traps: it was 14% of the server's CPU
/// per join when each socket made two.
pub fn shared_clock() -> DefaultClock {
    static CLOCK: std::sync::OnceLock<DefaultClock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(DefaultClock::default).clone()
}

pub struct SocketRateLimit {
    limiter: DefaultDirectRateLimiter,
    window: Duration,
    close_after: u32,
    strikes: u32,
    last_violation: Option<Instant>,
}

impl SocketRateLimit {
    pub fn new(max_requests: u32, window: Duration, close_after: u32) -> Self {
        let max = NonZeroU32::new(max_requests.max(1)).expect("max(1) is non-zero");
        let period = (window / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("period is non-zero")
            .allow_burst(max);
        Self {
            // The limiter keeps the clock; a copy of our own would be 40 more bytes in
            // every connection.
            limiter: RateLimiter::direct_with_clock(quota, shared_clock()),
            window,
            close_after,
            strikes: 0,
            last_violation: None,
        }
    }

    /// Counts one incoming event against the limit.
    pub fn check(&mut self) -> Verdict {
        match self.limiter.check() {
            Ok(()) => Verdict::Allowed,
            Err(not_until) => {
                let now = Instant::now();
                if self
                    .last_violation
                    .is_some_and(|t| now.duration_since(t) > self.window)
                {
                    self.strikes = 0;
                }
                self.last_violation = Some(now);
                self.strikes += 1;
                if self.strikes > self.close_after {
                    return Verdict::Close;
                }
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Verdict::Limited {
                    retry_after_ms: wait.as_millis().max(1) as u64,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_events_passes_then_the_excess_is_limited() {
        let mut limit = SocketRateLimit::new(10, Duration::from_secs(1), 100);
        for _ in 0..10 {
            assert_eq!(limit.check(), Verdict::Allowed);
        }
        match limit.check() {
            Verdict::Limited { retry_after_ms } => assert!((1..=100).contains(&retry_after_ms)),
            other => panic!("expected Limited, got {other:?}"),
        }
    }

    #[test]
    fn persistent_violators_are_closed() {
        let mut limit = SocketRateLimit::new(5, Duration::from_secs(10), 3);
        for _ in 0..5 {
            limit.check();
        }
        for _ in 0..3 {
            assert!(matches!(limit.check(), Verdict::Limited { .. }));
        }
        assert_eq!(limit.check(), Verdict::Close);
    }
}
