//! A map keyed by client address with a fixed capacity. Addresses are chosen by the
//! attacker (one IPv6 host has billions), so every per-address table must forget: when it is
//! full, entries that hold nothing worth keeping go first, then the least recently seen.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

pub struct AddrTable<K, V> {
    map: HashMap<K, (V, Instant)>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V> AddrTable<K, V> {
    /// `capacity` is at least 1.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    /// The entry for `key`, marked as seen `now`; created with `make` when absent. A full
    /// table first drops the entries `forgettable` says hold nothing (an expired window, a
    /// full bucket), and if none does, its least recently seen entry: O(capacity), but only
    /// when a new address arrives at a full table.
    pub fn entry(
        &mut self,
        key: K,
        now: Instant,
        make: impl FnOnce() -> V,
        forgettable: impl Fn(&V, Instant) -> bool,
    ) -> &mut V {
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            self.map.retain(|_, (v, _)| !forgettable(v, now));
            if self.map.len() >= self.capacity {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    self.map.remove(&oldest);
                }
            }
        }
        let slot = self.map.entry(key).or_insert_with(|| (make(), now));
        slot.1 = now;
        &mut slot.0
    }

    /// Drops every entry `forgettable` says holds nothing.
    pub fn sweep(&mut self, now: Instant, forgettable: impl Fn(&V, Instant) -> bool) {
        self.map.retain(|_, (v, _)| !forgettable(v, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_table_forgets_idle_entries_first_then_the_oldest() {
        let t0 = Instant::now();
        let mut t: AddrTable<u32, u32> = AddrTable::new(3);
        *t.entry(1, t0, || 0, |_, _| false) = 5;
        t.entry(2, t0 + Duration::from_secs(1), || 0, |_, _| false);
        t.entry(3, t0 + Duration::from_secs(2), || 7, |_, _| false);
        // Entry 2 holds 0: forgettable, so it goes and 1 (the oldest) stays.
        t.entry(4, t0 + Duration::from_secs(3), || 0, |v, _| *v == 0);
        assert_eq!(t.len(), 3);
        assert!(t.get(&2).is_none() && t.get(&1).is_some());
        // Nothing forgettable: the least recently seen (1) goes.
        t.entry(5, t0 + Duration::from_secs(4), || 0, |_, _| false);
        assert_eq!(t.len(), 3);
        assert!(t.get(&1).is_none() && t.get(&3).is_some());
    }

    #[test]
    fn touching_an_entry_keeps_it() {
        let t0 = Instant::now();
        let mut t: AddrTable<u32, ()> = AddrTable::new(2);
        t.entry(1, t0, || (), |_, _| false);
        t.entry(2, t0 + Duration::from_secs(1), || (), |_, _| false);
        t.entry(1, t0 + Duration::from_secs(2), || (), |_, _| false);
        t.entry(3, t0 + Duration::from_secs(3), || (), |_, _| false);
        assert!(t.get(&1).is_some() && t.get(&2).is_none());
    }
}
