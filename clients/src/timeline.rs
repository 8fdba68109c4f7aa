//! A client's copy of the session transport, fed by every event that carries one.
//!
//! Between events a client extrapolates the position itself (that is what makes 16 ms
//! ticks optional for rendering): the transport says where the session was at its anchor,
//! and [`Transport::position_at`] says where it is at any later server time.
//! `scroll_tick`s re-anchor the copy at each tick's `serverTime`, so a client that misses
//! a `state_update` converges again at the next tick.
//!
//! A change the leader scheduled (`scheduled` on a state event) is kept beside the
//! transport and takes over at its instant: [`Timeline::transport_at`] is the old transport
//! before `scheduled.at` and the new one from then on, so this client switches at the same
//! server time as every other, instead of one network trip after the server applies it.

use bandsync_protocol::server::{ScheduledChange, ScrollTick, ServerEvent};
use bandsync_protocol::{ServerFrame, Transport};

/// The latest transport seen, with the session `version` it belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    transport: Option<Transport>,
    version: u64,
    message: Option<String>,
    /// The change announced for a later instant, from the latest full state.
    scheduled: Option<ScheduledChange>,
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the transport from `snapshot`, `state_update`, `sync_response` or
    /// `scroll_tick`; other events are ignored. Returns whether the timeline changed.
    ///
    /// Events of an older `version` than the one held are ignored: on one connection the
    /// server sends in order, but a caller merging two connections (or a buffered
    /// `sync_response`) could otherwise step the timeline back.
    pub fn apply(&mut self, event: &ServerEvent) -> bool {
        // Full states say which change is pending (none, when absent); ticks say nothing
        // about it and leave it as it is.
        let (transport, version, message, scheduled) = match event {
            ServerEvent::Snapshot(s) => {
                (s.transport, s.version, Some(&s.message), Some(s.scheduled))
            }
            ServerEvent::StateUpdate(s) | ServerEvent::SyncResponse(s) => {
                (s.transport, s.version, Some(&s.message), Some(s.scheduled))
            }
            ServerEvent::ScrollTick(tick) => (transport_of_tick(tick), tick.version, None, None),
            _ => return false,
        };
        if self.transport.is_some() && version < self.version {
            return false;
        }
        self.transport = Some(transport);
        self.version = version;
        if let Some(message) = message {
            self.message = Some(message.clone());
        }
        if let Some(scheduled) = scheduled {
            self.scheduled = scheduled;
        }
        true
    }

    /// [`Self::apply`] for a whole frame.
    pub fn apply_frame(&mut self, frame: &ServerFrame) -> bool {
        self.apply(&frame.event)
    }

    /// The position in beats at server time `server_time` (ms), `None` before the first
    /// transport arrived. A scheduled change counts from its instant on.
    pub fn position_at(&self, server_time: f64) -> Option<f64> {
        self.transport_at(server_time)
            .map(|t| t.position_at(server_time))
    }

    /// The transport in effect at server time `server_time`: the latest one, or the
    /// scheduled change's once its instant has come.
    pub fn transport_at(&self, server_time: f64) -> Option<Transport> {
        let transport = self.transport?;
        Some(match &self.scheduled {
            Some(change) => change.transport_at(&transport, server_time),
            None => transport,
        })
    }

    /// The latest transport (before any scheduled change takes over; see
    /// [`Self::transport_at`]).
    pub fn transport(&self) -> Option<Transport> {
        self.transport
    }

    /// The change announced for a later instant, if any.
    pub fn scheduled(&self) -> Option<&ScheduledChange> {
        self.scheduled.as_ref()
    }

    /// The session version of the latest transport (0 before any).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The session message from the latest full state (ticks carry none).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    pub fn is_playing(&self) -> bool {
        self.transport.is_some_and(|t| t.playing)
    }
}

/// A tick is a transport anchored at its own `serverTime`.
pub fn transport_of_tick(tick: &ScrollTick) -> Transport {
    Transport {
        playing: tick.playing,
        tempo: tick.tempo,
        beat: tick.beat,
        anchor_time: tick.server_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::server::SessionState;

    const T: f64 = 1_700_000_000_000.0;

    fn state(version: u64, playing: bool, tempo: f64, beat: f64, anchor: f64) -> ServerEvent {
        ServerEvent::StateUpdate(SessionState {
            session_id: "band".into(),
            transport: Transport {
                playing,
                tempo,
                beat,
                anchor_time: anchor,
            },
            message: format!("v{version}"),
            leader_id: None,
            version,
            server_time: anchor,
            replayed: false,
            scheduled: None,
        })
    }

    fn tick(version: u64, seq: u64, beat: f64, at: f64) -> ServerEvent {
        ServerEvent::ScrollTick(ScrollTick {
            session_id: "band".into(),
            seq,
            beat,
            tempo: 120.0,
            playing: true,
            version,
            server_time: at,
        })
    }

    #[test]
    fn empty_timeline_knows_no_position() {
        let t = Timeline::new();
        assert_eq!(t.position_at(T), None);
        assert!(!t.is_playing());
    }

    #[test]
    fn extrapolates_while_playing_and_holds_while_paused() {
        let mut t = Timeline::new();
        assert!(t.apply(&state(1, true, 120.0, 4.0, T)));
        assert!((t.position_at(T + 1_000.0).unwrap() - 6.0).abs() < 1e-9);
        assert!(t.apply(&state(2, false, 120.0, 6.0, T + 1_000.0)));
        assert_eq!(t.position_at(T + 5_000.0), Some(6.0));
        assert_eq!(t.message(), Some("v2"));
    }

    #[test]
    fn ticks_reanchor_without_touching_the_message() {
        let mut t = Timeline::new();
        t.apply(&state(3, true, 120.0, 0.0, T));
        assert!(t.apply(&tick(3, 10, 1.01, T + 500.0)));
        // Extrapolates from the tick, not the older anchor: 1.01 + 0.5 s * 2 beats/s.
        assert!((t.position_at(T + 1_000.0).unwrap() - 2.01).abs() < 1e-9);
        assert_eq!(t.message(), Some("v3"));
        assert_eq!(t.transport().unwrap().anchor_time, T + 500.0);
    }

    #[test]
    fn older_versions_are_ignored() {
        let mut t = Timeline::new();
        t.apply(&state(5, true, 90.0, 8.0, T));
        assert!(!t.apply(&state(4, false, 120.0, 0.0, T + 10.0)));
        assert!(!t.apply(&tick(4, 1, 0.0, T + 20.0)));
        assert_eq!(t.version(), 5);
        assert_eq!(t.transport().unwrap().tempo, 90.0);
    }

    fn scheduled_tempo(version: u64, at: f64) -> ServerEvent {
        let ServerEvent::StateUpdate(mut s) = state(version, true, 120.0, 0.0, T) else {
            unreachable!()
        };
        s.scheduled = Some(ScheduledChange {
            id: 9,
            action: bandsync_protocol::server::ScheduledAction::SetTempo,
            at,
            transport: Transport {
                playing: true,
                tempo: 60.0,
                beat: (at - T) / 500.0,
                anchor_time: at,
            },
        });
        ServerEvent::StateUpdate(s)
    }

    #[test]
    fn a_scheduled_change_takes_over_at_its_instant() {
        let mut t = Timeline::new();
        assert!(t.apply(&scheduled_tempo(2, T + 2_000.0)));
        // Before the instant, 120 bpm; at it, beat 4 (continuous); after, 60 bpm.
        assert!((t.position_at(T + 1_000.0).unwrap() - 2.0).abs() < 1e-9);
        assert!((t.position_at(T + 2_000.0).unwrap() - 4.0).abs() < 1e-9);
        assert!((t.position_at(T + 3_000.0).unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(t.transport_at(T + 3_000.0).unwrap().tempo, 60.0);
        // A tick keeps the pending change; the next full state without it clears it.
        assert!(t.apply(&tick(2, 1, 0.5, T + 250.0)));
        assert!(t.scheduled().is_some());
        assert!(t.apply(&state(3, true, 120.0, 0.5, T + 250.0)));
        assert!(t.scheduled().is_none());
        assert!((t.position_at(T + 3_250.0).unwrap() - 6.5).abs() < 1e-9);
    }

    #[test]
    fn other_events_change_nothing() {
        let mut t = Timeline::new();
        let stats = ServerEvent::RoomStats(bandsync_protocol::server::RoomStats {
            session_id: "band".into(),
            members: 1,
            followers: 1,
            listeners: 0,
            leader_id: None,
        });
        assert!(!t.apply(&stats));
        assert_eq!(t, Timeline::new());
    }
}
