//! Failed authentications per client address, and the ban that follows too many.
//!
//! A token guesser gets `AUTH_FAILURE_LIMIT` tries per `AUTH_FAILURE_WINDOW_MS`; the try that
//! reaches the limit bans its address for `AUTH_BAN_MS`, during which every attempt from it
//! is refused before its credentials are looked at (so a ban also costs the server nothing).
//! Any way in that checks credentials (the share API's bearer token over REST and WebSocket,
//! a JWT) records its failures here, so they share one budget per address.

use super::client_ip::AddrKey;
use super::table::AddrTable;
use crate::metrics::Metrics;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a refused client should wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, at least 1: the `Retry-After` header's unit.
    pub fn secs(self) -> u64 {
        self.0.as_millis().div_ceil(1000).max(1) as u64
    }
    pub fn millis(self) -> u64 {
        (self.0.as_millis() as u64).max(1)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    pub max_failures: u32,
    pub window: Duration,
    pub ban: Duration,
    pub capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
}

pub struct AuthFailures {
    limits: AuthLimits,
    table: Mutex<AddrTable<AddrKey, Record>>,
    metrics: Arc<Metrics>,
}

impl AuthFailures {
    pub fn new(limits: AuthLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            table: Mutex::new(AddrTable::new(limits.capacity)),
            limits,
            metrics,
        }
    }

    /// `Err` while `ip` is banned: refuse the attempt without checking its credentials.
    pub fn check(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.check_at(ip, Instant::now())
    }

    /// Counts one failed authentication from `ip` over `transport` (`http`, `ws`). Returns the
    /// ban when this failure caused one.
    pub fn record_failure(&self, ip: IpAddr, transport: &'static str) -> Option<RetryAfter> {
        self.metrics
            .auth_failures
            .with_label_values(&[transport, "wrong_token"])
            .inc();
        let banned = self.record_failure_at(ip, Instant::now());
        if banned.is_some() {
            self.metrics.auth_bans.inc();
            tracing::warn!(client = %AddrKey::of(ip), "too many failed authentications; address banned");
        }
        banned
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.get(&AddrKey::of(ip)).and_then(|r| r.banned_until) {
            Some(until) if until > now => {
                drop(table);
                self.metrics.auth_refused.inc();
                Err(RetryAfter(until - now))
            }
            _ => Ok(()),
        }
    }

    fn record_failure_at(&self, ip: IpAddr, now: Instant) -> Option<RetryAfter> {
        let AuthLimits {
            max_failures,
            window,
            ban,
            ..
        } = self.limits;
        let forgettable = |r: &Record, now: Instant| {
            r.banned_until.is_none_or(|until| until <= now)
                && now.saturating_duration_since(r.window_start) > window
        };
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = || Record {
            failures: 0,
            window_start: now,
            banned_until: None,
        };
        let record = table.entry(AddrKey::of(ip), now, fresh, forgettable);
        if forgettable(record, now) {
            *record = fresh();
        }
        record.failures += 1;
        if record.failures >= max_failures && record.banned_until.is_none_or(|u| u <= now) {
            record.banned_until = Some(now + ban);
            record.failures = 0;
            record.window_start = now + ban;
            return Some(RetryAfter(ban));
        }
        None
    }

    /// Addresses currently remembered (failing or banned).
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(capacity: usize) -> AuthFailures {
        let limits = AuthLimits {
            max_failures: 3,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(60),
            capacity,
        };
        AuthFailures::new(limits, Arc::new(Metrics::new()))
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn the_limit_th_failure_in_a_window_bans_for_the_ban_time() {
        let a = limiter(16);
        let t0 = Instant::now();
        assert_eq!(a.record_failure_at(ip(1), t0), None);
        assert_eq!(a.record_failure_at(ip(1), t0), None);
        assert_eq!(a.check_at(ip(1), t0), Ok(()));
        assert_eq!(
            a.record_failure_at(ip(1), t0),
            Some(RetryAfter(Duration::from_secs(60)))
        );
        let later = t0 + Duration::from_secs(59);
        assert_eq!(
            a.check_at(ip(1), later),
            Err(RetryAfter(Duration::from_secs(1)))
        );
        assert_eq!(
            a.check_at(ip(2), later),
            Ok(()),
            "other addresses are not affected"
        );
        assert_eq!(a.check_at(ip(1), t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_ban() {
        let a = limiter(16);
        let t0 = Instant::now();
        for i in 0..10 {
            let at = t0 + Duration::from_secs(6 * i);
            assert_eq!(a.record_failure_at(ip(1), at), None, "failure {i}");
            assert_eq!(a.check_at(ip(1), at), Ok(()));
        }
    }

    #[test]
    fn many_addresses_cannot_grow_the_table_past_its_capacity() {
        let a = limiter(32);
        let t0 = Instant::now();
        for n in 0..=255u8 {
            a.record_failure_at(IpAddr::from([198, 51, 100, n]), t0);
        }
        assert_eq!(a.tracked(), 32);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1001)).secs(), 2);
        assert_eq!(RetryAfter(Duration::ZERO).millis(), 1);
    }
}
