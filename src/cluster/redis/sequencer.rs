//! Puts each session's commits in order before the engine sees them.
//!
//! A commit reaches this instance twice, from its own script's answer and from pub/sub,
//! and a pub/sub connection that was lost drops messages. Each commit names the version it
//! follows (`after`), so the sequencer delivers a commit only when the one before it was
//! delivered, drops duplicates, and holds a commit that arrives past a gap until the gap is
//! filled from the session's stream (`Gap`). A new `epoch` (the session's keys were created
//! afresh) starts the order over.

use super::envelope::Commit;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How long a commit past a gap waits for the missing ones before they are fetched.
pub const GAP_WAIT: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Order {
    delivered: u64,
    epoch: String,
    held: BTreeMap<u64, Commit>,
    held_since: Option<Instant>,
}

#[derive(Default)]
pub struct Sequencer {
    sessions: HashMap<String, Order>,
}

/// A range of versions to fetch from a session's stream: `(from, to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub session: String,
    pub after: u64,
    pub up_to: u64,
}

impl Sequencer {
    /// Starts following a session from `version` (what a load read).
    pub fn follow(&mut self, session: &str, version: u64, epoch: &str) {
        let order = self.sessions.entry(session.to_owned()).or_default();
        if order.epoch != epoch || version > order.delivered {
            order.delivered = version;
            order.epoch = epoch.to_owned();
        }
    }

    pub fn forget(&mut self, session: &str) {
        self.sessions.remove(session);
    }

    pub fn is_following(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }

    /// Takes a commit; returns those now deliverable, in order.
    pub fn offer(&mut self, session: &str, commit: Commit, now: Instant) -> Vec<Commit> {
        let order = self.sessions.entry(session.to_owned()).or_default();
        if commit.epoch != order.epoch {
            // A new life of the session's keys: its first commit sets the order.
            order.epoch.clone_from(&commit.epoch);
            order.held.clear();
            order.held_since = None;
            order.delivered = commit.after;
        }
        if commit.v <= order.delivered {
            return Vec::new();
        }
        if commit.after > order.delivered {
            order.held.insert(commit.v, commit);
            order.held_since.get_or_insert(now);
            return Vec::new();
        }
        order.delivered = commit.v;
        let mut out = vec![commit];
        out.extend(release(order));
        out
    }

    /// Gaps held longer than [`GAP_WAIT`]: to be fetched from the streams.
    pub fn overdue(&self, now: Instant) -> Vec<Gap> {
        self.sessions
            .iter()
            .filter(|(_, o)| {
                o.held_since
                    .is_some_and(|t| now.duration_since(t) >= GAP_WAIT)
            })
            .filter_map(|(session, o)| {
                let first = o.held.values().next()?;
                Some(Gap {
                    session: session.clone(),
                    after: o.delivered,
                    up_to: first.after,
                })
            })
            .collect()
    }

    /// Every followed session, with the version delivered last (to catch up after a
    /// reconnection).
    pub fn positions(&self) -> Vec<(String, u64)> {
        self.sessions
            .iter()
            .map(|(s, o)| (s.clone(), o.delivered))
            .collect()
    }

    /// The commits fetched for a gap (in version order); whatever the stream no longer
    /// holds is skipped. Returns everything now deliverable.
    pub fn fill(&mut self, session: &str, fetched: Vec<Commit>) -> Vec<Commit> {
        let Some(order) = self.sessions.get_mut(session) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for commit in fetched {
            if commit.v > order.delivered && commit.epoch == order.epoch {
                order.delivered = commit.v;
                out.push(commit);
            }
        }
        // Anything still missing is gone from the stream: move past it.
        if let Some((_, first)) = order.held.iter().next() {
            order.delivered = order.delivered.max(first.after);
        }
        out.extend(release(order));
        out
    }
}

/// Delivers the held commits that now follow on.
fn release(order: &mut Order) -> Vec<Commit> {
    let mut out = Vec::new();
    while let Some(entry) = order.held.first_entry() {
        let commit = entry.get();
        if commit.v <= order.delivered {
            entry.remove();
        } else if commit.after <= order.delivered {
            order.delivered = commit.v;
            out.push(entry.remove());
        } else {
            break;
        }
    }
    if order.held.is_empty() {
        order.held_since = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionRecord;

    fn commit(v: u64, after: u64) -> Commit {
        Commit {
            v,
            after,
            epoch: "e".into(),
            origin: "a".into(),
            ticket: 0,
            record: SessionRecord {
                session_id: "s".into(),
                transport: bandsync_protocol::Transport::new(0.0),
                message: String::new(),
                version: 0,
                leader: None,
                event_seq: 0,
                ticks: Default::default(),
                scheduled: None,
                sheet: String::new(),
            },
        }
    }

    fn versions(commits: &[Commit]) -> Vec<u64> {
        commits.iter().map(|c| c.v).collect()
    }

    #[test]
    fn delivers_in_order_once() {
        let mut seq = Sequencer::default();
        let now = Instant::now();
        seq.follow("s", 3, "e");
        assert_eq!(versions(&seq.offer("s", commit(4, 3), now)), vec![4]);
        assert!(seq.offer("s", commit(4, 3), now).is_empty(), "duplicate");
        assert!(
            seq.offer("s", commit(6, 5), now).is_empty(),
            "held past a gap"
        );
        assert_eq!(versions(&seq.offer("s", commit(5, 4), now)), vec![5, 6]);
    }

    #[test]
    fn a_gap_is_reported_then_filled_from_the_stream() {
        let mut seq = Sequencer::default();
        let now = Instant::now();
        seq.follow("s", 1, "e");
        assert!(seq.offer("s", commit(5, 4), now).is_empty());
        assert!(seq.overdue(now).is_empty());
        let gaps = seq.overdue(now + GAP_WAIT);
        assert_eq!(
            gaps,
            vec![Gap {
                session: "s".into(),
                after: 1,
                up_to: 4
            }]
        );
        // The stream still has 3 and 4; 2 was trimmed.
        let out = seq.fill("s", vec![commit(3, 2), commit(4, 3)]);
        assert_eq!(versions(&out), vec![3, 4, 5]);
        assert!(seq.overdue(now + GAP_WAIT * 2).is_empty());
    }

    #[test]
    fn a_reconciled_jump_follows_on_when_after_matches() {
        let mut seq = Sequencer::default();
        seq.follow("s", 7, "e");
        // Reconciliation: version 20 follows 7 in Redis (the other instance's local
        // commits never reached it).
        assert_eq!(
            versions(&seq.offer("s", commit(20, 7), Instant::now())),
            vec![20]
        );
    }

    #[test]
    fn a_new_epoch_starts_over() {
        let mut seq = Sequencer::default();
        seq.follow("s", 9, "e");
        let mut fresh = commit(1, 0);
        fresh.epoch = "f".into();
        assert_eq!(versions(&seq.offer("s", fresh, Instant::now())), vec![1]);
    }
}
