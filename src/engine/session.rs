//! One live session: its state, its audience, and its SSE history.

use super::inbound::{ConnKey, ConnKeyHasher};
use super::replay::StateLog;
use crate::cluster::Presence;
use crate::frames::WsFrame;
use crate::outbox::Outbox;
use crate::store::SessionRecord;
use crate::tick_grid::TickCount;
use bandsync_protocol::server::ScheduledChange;
use bandsync_protocol::Transport;
use bytes::Bytes;
use indexmap::IndexMap;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// How many instance tags SSE ids can carry in a cluster.
pub const ID_TAGS: u64 = 2048;

/// A session's `/ws` members by connection, each with its outbox.
pub type Members = IndexMap<ConnKey, Arc<Outbox<WsFrame>>, ConnKeyHasher>;

/// A live session. Members and listeners are kept with their outboxes in insertion-ordered
/// maps: fan-out walks a contiguous vector, and removal is O(1) (`swap_remove`).
pub struct Session {
    pub id: Arc<str>,
    /// The transport until `scheduled.at` (read it through [`Self::effective`]).
    pub transport: Transport,
    /// The one pending change (PROTOCOL.md section 6, "Scheduled changes").
    pub scheduled: Option<ScheduledChange>,
    pub message: String,
    /// The chord sheet (empty: none).
    pub sheet: String,
    /// The sheet as of `version`, to tell which commits changed it (they are broadcast as
    /// a `sheet` event too and cannot be replayed as a bare `state_update`).
    pub committed_sheet: String,
    pub version: u64,
    /// The leader's `clientId`. During a leader's recovery window it stays set while
    /// `leader_key` is `None`, so the seat is held for them.
    pub leader: Option<Arc<str>>,
    pub leader_key: Option<ConnKey>,
    /// The leader as of `version` (the `leader` field may be ahead: a proposed claim).
    pub committed_leader: Option<Arc<str>>,
    pub members: Members,
    pub listeners: IndexMap<ConnKey, Arc<Outbox<Bytes>>, ConnKeyHasher>,
    /// Dropped members whose resume window is still open.
    pub ghosts: usize,
    /// How ticks are numbered (changes only when playback starts or stops).
    pub ticks: TickCount,
    /// A leader that dropped here and may resume within its recovery window.
    pub dropped_leader: Option<Arc<str>>,
    /// Own proposals not yet committed (the projection is ahead of `version`).
    pub pending: u32,
    /// Changed while the cluster was out of reach: to be reconciled when it is back.
    pub diverged: bool,
    /// The audience on other instances, by instance.
    pub remote: HashMap<Arc<str>, Presence>,
    /// Last SSE event counter used (every broadcast and tick takes the next one).
    pub event_seq: u64,
    /// In a cluster: this instance's tag, the low part of every SSE id it hands out
    /// (`id = counter x ID_TAGS + tag`), so an id from another instance is never mistaken
    /// for one of ours (it gets a fresh snapshot). `None`: ids are the counter itself.
    id_tag: Option<u64>,
    /// Recent state events as SSE bytes, for `Last-Event-ID` resume. Ticks are not kept:
    /// they are latest-value-wins and stale on arrival.
    history: VecDeque<(u64, Bytes)>,
    history_cap: usize,
    /// Highest event id no longer in `history` (the id base while nothing is evicted).
    history_floor: u64,
    /// Recent versions for WebSocket resume with `lastVersion` (empty until
    /// [`Self::with_state_log`] gives it a capacity).
    pub states: StateLog,
    pub stats_sent_at: Option<Instant>,
    /// When its next `room_stats` is due, while it waits in the engine's `stats_waiting`.
    pub stats_due: Option<Instant>,
}

impl Session {
    pub fn new(id: Arc<str>, now_ms: f64, history_cap: usize) -> Self {
        // SSE ids of a new session life start at (creation ms x 1000): above any id an
        // earlier life of the same session could have reached (62.5 ticks a second never
        // come near 1000 ids a millisecond), so a stale `Last-Event-ID` from before a
        // restart or a retention expiry is recognised and answered with a snapshot.
        // Below 2^53 until the year 2255, so JavaScript reads the ids exactly.
        let id_base = (now_ms.max(0.0) as u64).saturating_mul(1000);
        Self {
            id,
            transport: Transport::new(now_ms),
            scheduled: None,
            message: String::new(),
            sheet: String::new(),
            committed_sheet: String::new(),
            version: 0,
            leader: None,
            leader_key: None,
            committed_leader: None,
            members: IndexMap::default(),
            listeners: IndexMap::default(),
            ghosts: 0,
            ticks: TickCount::default(),
            dropped_leader: None,
            pending: 0,
            diverged: false,
            remote: HashMap::new(),
            event_seq: id_base,
            id_tag: None,
            history: VecDeque::new(),
            history_cap,
            history_floor: id_base,
            states: StateLog::default(),
            stats_sent_at: None,
            stats_due: None,
        }
    }

    /// Tags this session's SSE ids with `tag` (below [`ID_TAGS`]), for a cluster. The
    /// counter restarts at the current millisecond, so tagged ids stay below 2^53 until
    /// the year 2109 and a later life's ids still start above an earlier one's.
    pub fn with_id_tag(mut self, tag: u64, now_ms: f64) -> Self {
        self.id_tag = Some(tag % ID_TAGS);
        self.event_seq = now_ms.max(0.0) as u64;
        self.history_floor = self.public_id(self.event_seq);
        self
    }

    fn public_id(&self, counter: u64) -> u64 {
        match self.id_tag {
            Some(tag) => counter * ID_TAGS + tag,
            None => counter,
        }
    }

    /// The SSE id of the last event (what a direct event, like the opening snapshot, is
    /// sent with: resuming after it replays what came next).
    pub fn current_event_id(&self) -> u64 {
        self.public_id(self.event_seq)
    }

    /// Keeps the last `cap` versions for resume replay (`RESUME_HISTORY`).
    pub fn with_state_log(mut self, cap: usize) -> Self {
        self.states = StateLog::new(cap);
        self
    }

    /// Revives a session from its stored record. The SSE history starts empty, so a
    /// `Last-Event-ID` from before gets a fresh snapshot.
    pub fn from_record(record: SessionRecord, history_cap: usize) -> Self {
        let mut session = Self::new(
            record.session_id.as_str().into(),
            record.transport.anchor_time,
            history_cap,
        );
        session.project(&record);
        session.committed_leader.clone_from(&session.leader);
        session.committed_sheet.clone_from(&session.sheet);
        session.version = record.version;
        session.event_seq = record.event_seq;
        session.history_floor = record.event_seq;
        session
    }

    /// Takes the shared fields of a committed (or authoritative) state.
    pub fn project(&mut self, record: &SessionRecord) {
        self.transport = record.transport;
        self.scheduled = record.scheduled;
        self.message.clone_from(&record.message);
        self.sheet.clone_from(&record.sheet);
        self.leader = record.leader.as_deref().map(Arc::from);
        self.ticks = record.ticks;
    }

    pub fn record(&self) -> SessionRecord {
        SessionRecord {
            session_id: String::from(&*self.id),
            transport: self.transport,
            message: self.message.clone(),
            version: self.version,
            leader: self.leader.as_deref().map(str::to_owned),
            event_seq: self.event_seq,
            ticks: self.ticks,
            scheduled: self.scheduled,
            sheet: self.sheet.clone(),
        }
    }

    /// The transport, tick count and pending change in effect at `now_ms`: a pending
    /// change whose instant has come counts as applied, even before its activation commits
    /// (the commit may still be on its way from another instance). `tick_ms`: the tick
    /// interval, for the numbering of a scheduled start or stop.
    pub fn effective(
        &self,
        now_ms: f64,
        tick_ms: f64,
    ) -> (Transport, TickCount, Option<ScheduledChange>) {
        match self.scheduled {
            Some(change) if now_ms >= change.at => {
                let mut ticks = self.ticks;
                let playing = change.transport.playing;
                ticks.follow(self.transport.playing, playing, change.at, tick_ms);
                (change.transport, ticks, None)
            }
            pending => (self.transport, self.ticks, pending),
        }
    }

    /// Folds a pending change whose instant has come into the projection (the tick
    /// numbering follows it at its instant, not now). Returns whether there was one.
    pub fn settle(&mut self, now_ms: f64, tick_ms: f64) -> bool {
        let (transport, ticks, scheduled) = self.effective(now_ms, tick_ms);
        let due = self.scheduled.is_some() && scheduled.is_none();
        (self.transport, self.ticks, self.scheduled) = (transport, ticks, scheduled);
        due
    }

    /// No one connected and no one entitled to come back: the session can be retired.
    /// A session with proposals in flight is kept: their outcome still has to be applied.
    pub fn is_abandoned(&self) -> bool {
        self.members.is_empty()
            && self.listeners.is_empty()
            && self.ghosts == 0
            && self.pending == 0
    }

    /// Whether a tick deadline can find this session playing: it plays, or a pending change
    /// (which may start it) is waiting for its instant.
    pub fn may_tick(&self) -> bool {
        self.transport.playing || self.scheduled.is_some()
    }

    pub fn audience(&self) -> usize {
        self.members.len() + self.listeners.len()
    }

    /// Members and listeners on every instance (the session capacity counts them all).
    pub fn cluster_audience(&self) -> usize {
        let remote: u64 = self.remote.values().map(|p| p.members + p.listeners).sum();
        self.audience() + remote as usize
    }

    /// Members, followers and listeners on every instance (`room_stats`).
    pub fn totals(&self) -> (u64, u64, u64) {
        let (mut members, mut followers, mut listeners) = (
            self.members.len() as u64,
            self.followers() as u64,
            self.listeners.len() as u64,
        );
        for p in self.remote.values() {
            members += p.members;
            followers += p.followers;
            listeners += p.listeners;
        }
        (members, followers, listeners)
    }

    /// Connected followers: members other than a connected leader.
    pub fn followers(&self) -> usize {
        self.members.len() - usize::from(self.leader_key.is_some())
    }

    /// Takes the next SSE event id.
    pub fn next_event_id(&mut self) -> u64 {
        self.event_seq += 1;
        self.public_id(self.event_seq)
    }

    /// Keeps a state event for SSE resume, evicting the oldest beyond the cap.
    pub fn remember(&mut self, id: u64, sse: Bytes) {
        if self.history_cap == 0 {
            self.history_floor = id;
            return;
        }
        if self.history.len() == self.history_cap {
            if let Some((evicted, _)) = self.history.pop_front() {
                self.history_floor = evicted;
            }
        }
        self.history.push_back((id, sse));
    }

    /// The state events after `last_id`, if every one of them is still held; `None` means
    /// the listener must start over with a snapshot.
    pub fn replay_after(&self, last_id: u64) -> Option<Vec<Bytes>> {
        if self.id_tag.is_some_and(|tag| last_id % ID_TAGS != tag) {
            return None; // another instance's id
        }
        if last_id < self.history_floor || last_id > self.current_event_id() {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|(id, _)| *id > last_id)
                .map(|(_, sse)| sse.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(cap: usize) -> Session {
        Session::new("s".into(), 0.0, cap)
    }

    #[test]
    fn a_new_life_starts_above_the_ids_of_an_earlier_one() {
        let mut first = Session::new("s".into(), 1_700_000_000_000.0, 8);
        push(&mut first, 50);
        let last_seen = first.event_seq;
        let second = Session::new("s".into(), 1_700_000_000_001.0, 8);
        assert!(second.event_seq > last_seen);
        assert!(
            second.replay_after(last_seen).is_none(),
            "a stale id must get a snapshot"
        );
        assert!(
            second.event_seq < (1u64 << 53),
            "ids stay exact in JavaScript"
        );
    }

    fn push(s: &mut Session, n: usize) {
        for _ in 0..n {
            let id = s.next_event_id();
            s.remember(id, Bytes::from(id.to_string()));
        }
    }

    #[test]
    fn replays_what_followed_a_held_id() {
        let mut s = session(8);
        push(&mut s, 5);
        let replay = s.replay_after(3).unwrap();
        assert_eq!(replay, vec![Bytes::from("4"), Bytes::from("5")]);
        assert_eq!(s.replay_after(5).unwrap(), Vec::<Bytes>::new());
        assert_eq!(s.replay_after(0).unwrap().len(), 5);
    }

    #[test]
    fn ids_skipped_by_ticks_still_resume() {
        let mut s = session(8);
        push(&mut s, 2);
        s.next_event_id(); // a tick: id 3, not kept
        push(&mut s, 1);
        assert_eq!(s.replay_after(3).unwrap(), vec![Bytes::from("4")]);
    }

    #[test]
    fn an_evicted_or_unknown_id_needs_a_snapshot() {
        let mut s = session(3);
        push(&mut s, 6);
        assert!(s.replay_after(2).is_none(), "event 3 was evicted");
        assert_eq!(s.replay_after(3).unwrap().len(), 3);
        assert!(
            s.replay_after(99).is_none(),
            "an id from the future is not ours"
        );
    }

    #[test]
    fn a_due_change_shows_as_applied_with_its_tick_numbering_from_its_instant() {
        use bandsync_protocol::server::ScheduledAction;
        let mut s = session(8);
        let at = 1000.5; // deadline 62 is at 992, 63 at 1008
        let change = ScheduledChange {
            id: 7,
            action: ScheduledAction::Play,
            at,
            transport: Transport {
                playing: true,
                ..Transport::new(at)
            },
        };
        s.scheduled = Some(change);
        let (before, ticks, pending) = s.effective(at - 0.1, 16.0);
        assert_eq!(
            (before, ticks, pending),
            (s.transport, s.ticks, Some(change))
        );
        let (after, ticks, pending) = s.effective(2000.0, 16.0);
        assert_eq!((after, pending), (change.transport, None));
        assert_eq!(
            ticks.seq_at(63),
            Some(1),
            "counted from the instant, not from now"
        );
        assert!(s.settle(2000.0, 16.0));
        assert_eq!((s.transport, s.ticks, s.scheduled), (after, ticks, None));
        assert!(!s.settle(3000.0, 16.0), "nothing left to apply");
    }

    #[test]
    fn a_revived_session_keeps_its_counters_but_not_its_history() {
        let mut s = session(8);
        push(&mut s, 4);
        s.version = 9;
        let revived = Session::from_record(s.record(), 8);
        assert_eq!(revived.version, 9);
        assert_eq!(revived.event_seq, 4);
        assert!(revived.replay_after(2).is_none());
        assert_eq!(revived.replay_after(4).unwrap().len(), 0);
    }
}
