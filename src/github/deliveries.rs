//! The deliveries played recently, so a redelivered webhook (GitHub retries, a user's
//! "Redeliver" button, a replayed request) plays once.
//!
//! Bounded twice: at most `capacity` ids are held (the oldest is forgotten first), and an id
//! older than `ttl` counts as new again. Memory is therefore at most `capacity` ids of at most
//! [`super::MAX_DELIVERY_ID_CHARS`] bytes, however fast deliveries arrive. A delivery evicted
//! early by a flood of others may play twice; that is the price of the bound, and the reason
//! to size `capacity` above the deliveries expected within `ttl`.

use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

/// Recently seen `X-GitHub-Delivery` ids with the time each was first seen.
///
/// A std `Mutex`, not tokio's: the critical section is one hash-map lookup and insert with no
/// `.await` inside, so it never holds a worker thread for longer than that.
#[derive(Debug)]
pub struct RecentDeliveries {
    seen: Mutex<LruCache<String, f64>>,
    ttl_ms: f64,
}

impl RecentDeliveries {
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        RecentDeliveries {
            seen: Mutex::new(LruCache::new(capacity)),
            ttl_ms: ttl.as_secs_f64() * 1000.0,
        }
    }

    /// True the first time `id` is seen within the TTL (and records it); false for a
    /// duplicate. `now_ms` is the server clock in milliseconds. A duplicate does not renew
    /// the entry: the TTL runs from the first sighting, so a delivery retried forever is
    /// played again once per TTL at most, never locked out for good.
    pub fn first_time(&self, id: &str, now_ms: f64) -> bool {
        // A panic while holding the lock cannot leave the cache half-updated in a way that
        // matters here (at worst one id is missing), so a poisoned lock is used as is.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // `peek` and not `get`: a lookup must not make an entry younger in the eviction
        // order, which is the order of first sightings.
        if let Some(&first) = seen.peek(id) {
            if now_ms - first < self.ttl_ms {
                return false;
            }
        }
        seen.put(id.to_owned(), now_ms);
        true
    }

    /// Forgets `id`: its delivery could not be played, and GitHub's redelivery should be.
    pub fn forget(&self, id: &str) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).pop(id);
    }

    /// Ids held now (expired ones included until they are replaced or evicted).
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn set(capacity: usize, ttl_ms: u64) -> RecentDeliveries {
        RecentDeliveries::new(
            NonZeroUsize::new(capacity).unwrap(),
            Duration::from_millis(ttl_ms),
        )
    }

    #[test]
    fn a_delivery_is_new_once_then_a_duplicate() {
        let recent = set(8, 60_000);
        assert!(recent.first_time("72d3162e-cc78-11e3-81ab-4c9367dc0958", 1000.0));
        assert!(!recent.first_time("72d3162e-cc78-11e3-81ab-4c9367dc0958", 1001.0));
        assert!(recent.first_time("72d3162e-cc78-11e3-81ab-4c9367dc0959", 1002.0));
        assert_eq!(recent.len(), 2);
    }

    #[test]
    fn an_id_is_new_again_after_the_ttl_counted_from_its_first_sighting() {
        let recent = set(8, 1000);
        assert!(recent.first_time("a", 0.0));
        assert!(!recent.first_time("a", 600.0));
        assert!(
            !recent.first_time("a", 999.0),
            "the duplicate did not renew it"
        );
        assert!(recent.first_time("a", 1000.0));
        assert!(!recent.first_time("a", 1500.0));
    }

    #[test]
    fn capacity_bounds_memory_and_forgets_the_oldest_first() {
        let recent = set(3, 60_000);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            assert!(recent.first_time(id, i as f64));
        }
        // Looking "a" up again must not save it from eviction.
        assert!(!recent.first_time("a", 3.0));
        assert!(recent.first_time("d", 4.0));
        assert_eq!(recent.len(), 3);
        assert!(
            recent.first_time("a", 5.0),
            "a was the oldest and was forgotten"
        );
        assert!(!recent.first_time("c", 6.0));
        assert!(!recent.first_time("d", 6.0));
    }

    #[test]
    fn concurrent_callers_see_each_id_exactly_once() {
        let recent = Arc::new(set(10_000, 60_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let recent = Arc::clone(&recent);
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|i| recent.first_time(&format!("id-{i}"), 0.0))
                        .count()
                })
            })
            .collect();
        let firsts: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(firsts, 1000);
        assert_eq!(recent.len(), 1000);
    }
}
