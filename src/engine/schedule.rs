//! Transport commands (`set_tempo`, `play`, `pause`, `seek`), at once or scheduled, and the
//! timers that apply scheduled ones at their instant (PROTOCOL.md section 6, "Scheduled
//! changes").
//!
//! A scheduled command commits at once as the session's one pending change (announced in
//! the `state_update`'s `scheduled`); at its instant every instance holding the session
//! live proposes the activation, a commit whose only change is to fold the pending change
//! into the transport. In a cluster exactly one activation commits: it carries the id it
//! activates and Redis refuses it unless that change is still the pending one and no other
//! commit came first (`cluster::redis::scripts`). Until the activation commits, every view
//! (ticks, `sync_response`, snapshots, `/sessions/{id}`) already shows the new transport
//! ([`super::session::Session::effective`]).
//!
//! The timers are a min-heap of instants on the engine thread, which sleeps until the
//! earliest of them as it sleeps until a tick deadline: precise to well under a
//! millisecond, no busy wait, no lock.

use super::commit::AfterCommit;
use super::{ConnKey, Engine};
use crate::cluster::{LeaderCheck, ProposalKind};
use bandsync_protocol::schedule::{self, Effect, TransportCommand};
use bandsync_protocol::server::ScheduledChange;
use bandsync_protocol::{ClientEvent, RequestId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

/// Ids of scheduled changes stay below 2^53, so JavaScript reads them exactly.
const ID_MASK: u64 = (1 << 53) - 1;

/// The armed timers: one per pending change this instance knows of.
///
/// A change that was replaced or already applied stays in the heap and is skipped when its
/// instant comes (its id is no longer the session's pending one). So that a leader who
/// reschedules all the time cannot grow it (the rate limit alone would allow 100 a second
/// for a minute, per leader), the heap is compacted to the changes still pending whenever
/// it holds more than twice as many entries as there are sessions (each has at most one):
/// at most `2 × sessions + COMPACT_SLACK` entries, at an amortized constant cost.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    armed: HashSet<u64>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    /// `at` as the bits of a positive f64, which order as the numbers do.
    at_bits: u64,
    id: u64,
    session: Arc<str>,
}

/// Entries allowed beyond twice the sessions before a compaction (so a handful of sessions
/// do not compact at every reschedule).
const COMPACT_SLACK: usize = 64;

impl Timers {
    /// Whether the heap has grown past its bound for `sessions` live sessions.
    fn needs_compaction(&self, sessions: usize) -> bool {
        self.heap.len() > 2 * sessions + COMPACT_SLACK
    }

    /// Keeps only the timers `still_pending` says are (session's pending change, id).
    fn compact(&mut self, still_pending: impl Fn(&str, u64) -> bool) {
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_iter()
            .filter(|Reverse(t)| still_pending(&t.session, t.id))
            .collect();
        self.armed = self.heap.iter().map(|Reverse(t)| t.id).collect();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn arm(&mut self, session: &Arc<str>, change: &ScheduledChange) {
        if self.armed.insert(change.id) {
            self.heap.push(Reverse(Timer {
                at_bits: change.at.max(0.0).to_bits(),
                id: change.id,
                session: session.clone(),
            }));
        }
    }

    /// The earliest armed instant (server ms).
    pub(super) fn next(&self) -> Option<f64> {
        self.heap.peek().map(|t| f64::from_bits(t.0.at_bits))
    }

    /// Takes the timers due at `now_ms`.
    fn take_due(&mut self, now_ms: f64) -> Vec<(Arc<str>, u64)> {
        let mut due = Vec::new();
        while self
            .heap
            .peek()
            .is_some_and(|t| f64::from_bits(t.0.at_bits) <= now_ms)
        {
            let Reverse(timer) = self.heap.pop().expect("peeked");
            self.armed.remove(&timer.id);
            due.push((timer.session, timer.id));
        }
        due
    }
}

impl Engine {
    pub(super) fn tick_ms(&self) -> f64 {
        self.settings.tick_interval.as_secs_f64() * 1000.0
    }

    /// Called after anything that may have changed a session's transport or pending change
    /// (a change proposed here, a commit, a refusal's projection, a revival): arms a timer
    /// for its pending change, if it has one (idempotent), and lists a session that may now
    /// tick among those the tick deadlines look at (`Engine::ticking`).
    pub(super) fn arm(&mut self, session_id: &str) {
        if let Some((id, session)) = self.sessions.get_key_value(session_id) {
            if let Some(change) = &session.scheduled {
                self.timers.arm(id, change);
            }
            if session.may_tick() && !self.ticking.contains(id) {
                self.ticking.insert(id.clone());
            }
        }
        if self.timers.needs_compaction(self.sessions.len()) {
            let sessions = &self.sessions;
            self.timers.compact(|session, id| {
                sessions
                    .get(session)
                    .and_then(|s| s.scheduled)
                    .is_some_and(|c| c.id == id)
            });
        }
    }

    /// Proposes the activation of every pending change whose instant has come. Called by
    /// the engine loop, which wakes at [`Timers::next`].
    pub(super) fn activate_due(&mut self) {
        let now_ms = self.clock.now_ms();
        for (session_id, id) in self.timers.take_due(now_ms) {
            let pending = self
                .sessions
                .get(&session_id)
                .and_then(|s| s.scheduled)
                .map(|c| c.id);
            if pending != Some(id) {
                continue; // replaced, cancelled, or already folded in by another commit
            }
            self.metrics.scheduled_activations.inc();
            // `change_as` folds the due change into the projection before proposing it. A
            // panic is contained to this session's activation, as one is to one message.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let kind = ProposalKind::Activate(id);
                let then = AfterCommit::Activation;
                self.change_as(kind, &session_id, LeaderCheck::Any, None, then, |_| {});
            }));
            if outcome.is_err() {
                self.metrics.engine_panics.inc();
                tracing::error!(session = %session_id, "the engine caught a panic while applying a scheduled change; it carries on");
            }
        }
    }

    /// `set_tempo`, `play`, `pause`, `seek`, from the leader: applied at once, or
    /// announced as the session's pending change. Either way it replaces the change that
    /// was pending (an immediate command that changes nothing still cancels it).
    pub(super) fn transport(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
        event: ClientEvent,
        ack: bool,
    ) {
        let (command, when) = TransportCommand::of(&event).expect("only transport events");
        let now = self.clock.now_ms();
        let tick_ms = self.tick_ms();
        let (current, _, pending) = self.sessions[session_id].effective(now, tick_ms);
        let effect = match schedule::resolve(&when, &current, now, &self.settings.schedule) {
            Ok(effect) => effect,
            Err(error) => return self.reply_error(key, id.as_ref(), error),
        };
        match effect {
            Effect::Now => {
                let mut transport = current;
                let changed = command.apply(&mut transport, now);
                if !changed && pending.is_none() {
                    // Nothing changed (e.g. `pause` while paused): no broadcast, no new
                    // version, but the sender still gets an answer.
                    return self.reply_state(key, id, session_id);
                }
                let (check, then) = self.as_leader(key, id, ack);
                self.change(session_id, check, None, then, |s| {
                    s.transport = transport;
                    s.scheduled = None;
                });
            }
            Effect::At(at) => {
                let change = ScheduledChange {
                    id: rand::random::<u64>() & ID_MASK,
                    action: command.action(),
                    at,
                    transport: command.transport_from(&current, at),
                };
                self.metrics.scheduled_changes.inc();
                let (check, then) = self.as_leader(key, id, ack);
                self.change(session_id, check, None, then, |s| {
                    s.scheduled = Some(change);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::server::ScheduledAction;
    use bandsync_protocol::Transport;

    fn change(id: u64, at: f64) -> ScheduledChange {
        ScheduledChange {
            id,
            action: ScheduledAction::Pause,
            at,
            transport: Transport::new(at),
        }
    }

    #[test]
    fn timers_come_due_in_order_of_their_instants_and_once_each() {
        let mut timers = Timers::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        timers.arm(&a, &change(1, 3000.0));
        timers.arm(&b, &change(2, 1000.0));
        timers.arm(&b, &change(2, 1000.0)); // armed again by a later commit
        timers.arm(&a, &change(3, 2000.0));
        assert_eq!(timers.next(), Some(1000.0));
        assert!(timers.take_due(999.9).is_empty());
        let due = timers.take_due(2000.0);
        assert_eq!(due, vec![(b.clone(), 2), (a.clone(), 3)]);
        assert_eq!(timers.next(), Some(3000.0));
        assert_eq!(timers.take_due(5000.0), vec![(a, 1)]);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn a_leader_rescheduling_without_end_cannot_grow_the_heap() {
        // One session whose leader replaces its pending change again and again: only the
        // latest is pending, and the heap stays within its bound.
        let mut timers = Timers::default();
        let session: Arc<str> = "s".into();
        let mut pending = 0;
        for id in 1..=10_000u64 {
            timers.arm(&session, &change(id, 1e12 + id as f64));
            pending = id;
            if timers.needs_compaction(1) {
                timers.compact(|_, id| id == pending);
            }
            assert!(timers.len() <= 2 + COMPACT_SLACK + 1);
        }
        assert!(timers.take_due(f64::MAX).contains(&(session, pending)));
    }
}
