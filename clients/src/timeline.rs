//! A client's copy of the session transport, fed by every event that carries one.
//!
//! Between events a client extrapolates the position itself (that is what makes 16 ms
//! ticks optional for rendering): the transport says where the session was at its anchor,
//! and [`Transport::position_at`] says where it is at any later server time.
//! `scroll_tick`s re-anchor the copy at each tick's `serverTime`, so a client that misses
//! a `state_update` converges again at the next tick.

use bandsync_protocol::server::{ScrollTick, ServerEvent};
use bandsync_protocol::{ServerFrame, Transport};

/// The latest transport seen, with the session `version` it belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    transport: Option<Transport>,
    version: u64,
    message: Option<String>,
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
        let (transport, version, message) = match event {
            ServerEvent::Snapshot(s) => (s.transport, s.version, Some(&s.message)),
            ServerEvent::StateUpdate(s) | ServerEvent::SyncResponse(s) => {
                (s.transport, s.version, Some(&s.message))
            }
            ServerEvent::ScrollTick(tick) => (transport_of_tick(tick), tick.version, None),
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
        true
    }

    /// [`Self::apply`] for a whole frame.
    pub fn apply_frame(&mut self, frame: &ServerFrame) -> bool {
        self.apply(&frame.event)
    }

    /// The position in beats at server time `server_time` (ms), `None` before the first
    /// transport arrived.
    pub fn position_at(&self, server_time: f64) -> Option<f64> {
        self.transport.map(|t| t.position_at(server_time))
    }

    /// The latest transport.
    pub fn transport(&self) -> Option<Transport> {
        self.transport
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
