//! What one churning client saw of the session's versions, and the run's delivery shares.
//!
//! Pure bookkeeping, kept apart from the sockets so it can be tested: a client records each
//! `version` it received as an event (`state_update` live or replayed, `sync_response`) and
//! the versions of its snapshots; at the end each version the leader produced in the
//! window is counted for each client as delivered as an event, covered by a later
//! snapshot (state converged, event lost), or missing.

use serde::Serialize;
use std::collections::HashSet;

/// One client's record.
#[derive(Debug, Default, Clone)]
pub struct VersionTally {
    /// Versions received live, in arrival order.
    pub live: Vec<u64>,
    /// Versions received as replayed `state_update`s (resume with `lastVersion`).
    pub replayed: Vec<u64>,
    /// The newest version any snapshot brought.
    pub snapshot_max: u64,
    /// An event whose version was below one already received as an event.
    pub out_of_order: u64,
    newest_event: u64,
}

impl VersionTally {
    pub fn event(&mut self, version: u64, replayed: bool) {
        if version < self.newest_event {
            self.out_of_order += 1;
        }
        self.newest_event = self.newest_event.max(version);
        if replayed {
            self.replayed.push(version);
        } else {
            self.live.push(version);
        }
    }

    pub fn snapshot(&mut self, version: u64) {
        self.snapshot_max = self.snapshot_max.max(version);
    }

    /// The newest version this client knows of, by any path.
    pub fn newest(&self) -> u64 {
        self.newest_event.max(self.snapshot_max)
    }
}

/// Delivery of the versions `first..=last` to every client.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Delivery {
    /// State versions the leader produced in the window.
    pub versions: u64,
    /// (client, version) pairs: clients x versions.
    pub pairs: u64,
    /// Pairs delivered as an event (live or replayed).
    pub as_event: u64,
    /// ... of which as replayed events.
    pub replayed: u64,
    /// Pairs not seen as an event but covered by a later snapshot (state converged).
    pub via_snapshot: u64,
    /// Pairs neither seen nor covered.
    pub missing: u64,
    /// Events received more than once by one client (e.g. live and replayed).
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Share of pairs delivered by any path; the target is 1.
    pub delivered_share: f64,
    /// Share of pairs delivered as events.
    pub event_share: f64,
    /// Clients whose newest known version is `last`.
    pub clients_converged: u64,
}

/// Counts each client's versions in `first..=last`.
pub fn delivery<'a>(
    tallies: impl IntoIterator<Item = &'a VersionTally>,
    first: u64,
    last: u64,
) -> Delivery {
    let mut d = Delivery::default();
    let versions = if last >= first { last - first + 1 } else { 0 };
    d.versions = versions;
    let window = first..=last;
    for t in tallies {
        d.pairs += versions;
        d.out_of_order += t.out_of_order;
        let mut seen = HashSet::new();
        let mut replayed = HashSet::new();
        for &v in t.live.iter().chain(&t.replayed) {
            if !seen.insert(v) {
                d.duplicates += 1;
            }
        }
        replayed.extend(t.replayed.iter().copied().filter(|v| window.contains(v)));
        for v in window.clone() {
            if seen.contains(&v) {
                d.as_event += 1;
                if replayed.contains(&v) && !t.live.contains(&v) {
                    d.replayed += 1;
                }
            } else if v <= t.snapshot_max {
                d.via_snapshot += 1;
            } else {
                d.missing += 1;
            }
        }
        if t.newest() >= last {
            d.clients_converged += 1;
        }
    }
    if d.pairs > 0 {
        d.delivered_share = round6((d.as_event + d.via_snapshot) as f64 / d.pairs as f64);
        d.event_share = round6(d.as_event as f64 / d.pairs as f64);
    }
    d
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_is_an_event_a_snapshot_cover_or_missing() {
        let mut full = VersionTally::default();
        for v in 10..=14 {
            full.event(v, false);
        }
        // Away for 11 and 12: the snapshot at 12 covers them, then live again.
        let mut gap = VersionTally::default();
        gap.event(10, false);
        gap.snapshot(12);
        gap.event(13, false);
        gap.event(14, false);
        // Away for 11 and 12, which came back replayed.
        let mut replay = VersionTally::default();
        replay.event(10, false);
        replay.event(11, true);
        replay.event(12, true);
        replay.snapshot(12);
        replay.event(13, false);
        // Left before 14 and never saw it.
        let d = delivery([&full, &gap, &replay], 10, 14);
        assert_eq!((d.versions, d.pairs), (5, 15));
        assert_eq!((d.as_event, d.replayed), (5 + 3 + 4, 2));
        assert_eq!((d.via_snapshot, d.missing), (2, 1));
        assert_eq!(d.clients_converged, 2);
        assert_eq!(d.delivered_share, round6(14.0 / 15.0));
        assert_eq!(d.event_share, round6(12.0 / 15.0));
        assert_eq!((d.duplicates, d.out_of_order), (0, 0));
    }

    #[test]
    fn duplicates_and_reordering_are_counted_not_hidden() {
        let mut t = VersionTally::default();
        t.event(5, false);
        t.event(4, true);
        t.event(5, true);
        let d = delivery([&t], 4, 5);
        assert_eq!(d.as_event, 2);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.out_of_order, 1);
    }

    #[test]
    fn versions_outside_the_window_do_not_count() {
        let mut t = VersionTally::default();
        t.event(3, false);
        t.snapshot(3);
        let d = delivery([&t], 4, 6);
        assert_eq!(
            (d.pairs, d.as_event, d.via_snapshot, d.missing),
            (3, 0, 0, 3)
        );
        assert_eq!(delivery([&t], 4, 3).pairs, 0, "no versions, no pairs");
    }
}
