//! A token bucket per key (client address, or session and address), in a bounded table.
//!
//! governor's keyed limiters grow with every key and only shrink when swept; this one has a
//! fixed capacity, and a bucket that has refilled completely is the same as no bucket, so it
//! is the first thing a full table forgets.

use super::table::AddrTable;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// `burst` requests at once, refilled at `burst` per `period`, per key.
pub struct KeyedRate<K> {
    burst: f64,
    per_sec: f64,
    table: Mutex<AddrTable<K, Bucket>>,
}

impl<K: Hash + Eq + Copy> KeyedRate<K> {
    /// `burst` and `period` of 0 are taken as 1 and 1 ms.
    pub fn new(burst: u32, period: Duration, capacity: usize) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            burst,
            per_sec: burst / period.as_secs_f64().max(0.001),
            table: Mutex::new(AddrTable::new(capacity)),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        let (burst, rate) = (self.burst, self.per_sec);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let full = |b: &Bucket, now: Instant| refilled(b, now, burst, rate) >= burst;
        let bucket = table.entry(
            key,
            now,
            || Bucket {
                tokens: burst,
                at: now,
            },
            full,
        );
        bucket.tokens = refilled(bucket, now, burst, rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate).max(Duration::from_millis(1)))
        }
    }

    /// Keys currently remembered.
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn refilled(b: &Bucket, now: Instant, burst: f64, per_sec: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * per_sec).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_burst_and_refill() {
        let r: KeyedRate<u8> = KeyedRate::new(2, Duration::from_secs(1), 16);
        let t0 = Instant::now();
        assert!(r.check_at(1, t0).is_ok());
        assert!(r.check_at(1, t0).is_ok());
        let wait = r.check_at(1, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(r.check_at(2, t0).is_ok(), "another key is untouched");
        assert!(r.check_at(1, t0 + Duration::from_millis(500)).is_ok());
        assert!(r.check_at(1, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn the_table_stays_within_its_capacity() {
        let r: KeyedRate<u32> = KeyedRate::new(1, Duration::from_secs(60), 8);
        let t0 = Instant::now();
        for k in 0..1000 {
            let _ = r.check_at(k, t0);
        }
        assert_eq!(r.tracked(), 8);
    }
}
