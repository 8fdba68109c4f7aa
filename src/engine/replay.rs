//! The per-session log of recent state versions, for WebSocket resume with `lastVersion`.
//!
//! Socket.IO's connection-state recovery replays the packets a client missed while it was
//! away; this is bandsync's equivalent. Every committed version goes through
//! `Engine::apply_committed`, which records the new [`SessionState`] here; a resuming client
//! that says which version it saw last gets the later ones again, in order, before its
//! snapshot. The log is bounded (`RESUME_HISTORY` versions): when it no longer reaches back
//! to the client's version, the client gets the snapshot alone, which is the state it
//! would have converged to anyway.
//!
//! States are kept typed (not encoded) because a replayed event is marked `replayed` and
//! encoded for the one client that needs it; a session no one resumes pays one clone of
//! its state per change and no encoding.

use bandsync_protocol::server::SessionState;
use std::collections::VecDeque;

/// The last `cap` states of one session, oldest first, with consecutive versions.
#[derive(Debug, Default)]
pub struct StateLog {
    states: VecDeque<SessionState>,
    cap: usize,
}

impl StateLog {
    pub fn new(cap: usize) -> Self {
        Self {
            states: VecDeque::new(),
            cap,
        }
    }

    /// Records the state of a new version. A version that does not follow the newest held
    /// one (a bump that was not recorded) clears the log: a replay must never skip one.
    pub fn record(&mut self, state: SessionState) {
        if self.cap == 0 {
            return;
        }
        if self
            .states
            .back()
            .is_some_and(|last| last.version + 1 != state.version)
        {
            self.states.clear();
        }
        if self.states.len() == self.cap {
            self.states.pop_front();
        }
        self.states.push_back(state);
    }

    /// Forgets every held state and does not record the current version's: a resume from
    /// before it gets the snapshot. For a version whose change a bare `state_update` does
    /// not carry (a new chord sheet).
    pub fn restart(&mut self) {
        self.states.clear();
    }

    /// The states after version `last`, up to `current`, if the log holds every one of
    /// them. `None`: the client must start over from a snapshot (its version is older than
    /// the log, or newer than the session, or the log ends before `current`).
    pub fn after(&self, last: u64, current: u64) -> Option<Vec<&SessionState>> {
        if last > current {
            return None;
        }
        if last == current {
            return Some(Vec::new());
        }
        let first = self.states.front()?.version;
        let newest = self.states.back()?.version;
        if first > last + 1 || newest != current {
            return None;
        }
        Some(self.states.iter().filter(|s| s.version > last).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::Transport;

    fn state(version: u64) -> SessionState {
        SessionState {
            session_id: "band".into(),
            transport: Transport::new(0.0),
            message: format!("v{version}"),
            leader_id: None,
            version,
            server_time: version as f64,
            replayed: false,
            scheduled: None,
        }
    }

    fn log(cap: usize, versions: std::ops::RangeInclusive<u64>) -> StateLog {
        let mut log = StateLog::new(cap);
        for v in versions {
            log.record(state(v));
        }
        log
    }

    fn versions(states: Option<Vec<&SessionState>>) -> Option<Vec<u64>> {
        states.map(|s| s.iter().map(|s| s.version).collect())
    }

    #[test]
    fn gives_every_version_after_the_last_seen_in_order() {
        let log = log(8, 1..=5);
        assert_eq!(versions(log.after(2, 5)), Some(vec![3, 4, 5]));
        assert_eq!(versions(log.after(0, 5)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(versions(log.after(5, 5)), Some(vec![]));
    }

    #[test]
    fn a_version_older_than_the_log_or_from_the_future_needs_a_snapshot() {
        let log = log(3, 1..=6);
        assert_eq!(versions(log.after(3, 6)), Some(vec![4, 5, 6]));
        assert_eq!(log.after(2, 6), None, "version 3 was evicted");
        assert_eq!(log.after(7, 6), None, "not a version of this session");
    }

    #[test]
    fn an_unrecorded_bump_is_never_skipped_over() {
        let mut log = log(8, 1..=3);
        log.record(state(5)); // version 4 never reached the log
        assert_eq!(log.after(2, 5), None);
        assert_eq!(versions(log.after(4, 5)), Some(vec![5]));
        assert_eq!(
            log.after(3, 6),
            None,
            "the log ends before the current version"
        );
    }

    #[test]
    fn a_restart_sends_resumes_from_before_it_to_the_snapshot() {
        let mut log = log(8, 1..=3);
        log.restart(); // version 4 set a new sheet
        assert_eq!(log.after(3, 4), None);
        assert_eq!(versions(log.after(4, 4)), Some(vec![]));
        log.record(state(5));
        assert_eq!(log.after(3, 5), None);
        assert_eq!(versions(log.after(4, 5)), Some(vec![5]));
    }

    #[test]
    fn a_zero_cap_keeps_nothing() {
        let log = log(0, 1..=3);
        assert_eq!(log.after(2, 3), None);
        assert_eq!(versions(log.after(3, 3)), Some(vec![]));
    }
}
