//! The server clock: wall-clock milliseconds with sub-millisecond precision that never
//! goes backwards.
//!
//! Every timestamp the server sends (`timestamp`, `serverTime`, `anchorTime`, `t1`, `t2`)
//! comes from here. It reads the wall clock once at start and advances with the monotonic
//! clock, so an NTP step on the host cannot make the shared timeline jump under a band.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct ServerClock {
    start: Instant,
    start_wall_ms: f64,
}

impl ServerClock {
    /// The process's clock: every server in the process reads the same one, so HTTP error
    /// bodies, events and ticks all share one timeline.
    pub fn shared() -> Self {
        static SHARED: OnceLock<ServerClock> = OnceLock::new();
        *SHARED.get_or_init(ServerClock::new)
    }

    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            start: Instant::now(),
            start_wall_ms: wall.as_secs_f64() * 1000.0,
        }
    }

    /// Server time now, ms since the Unix epoch.
    pub fn now_ms(&self) -> f64 {
        self.at(Instant::now())
    }

    /// Server time at a monotonic instant (e.g. when a frame was read).
    pub fn at(&self, instant: Instant) -> f64 {
        let since = instant.saturating_duration_since(self.start);
        self.start_wall_ms + since.as_secs_f64() * 1000.0
    }

    /// Seconds since the server started.
    /// The instant at which the clock reads `ms` (the inverse of [`Self::at`]; times
    /// before this clock started map to its start).
    pub fn instant_at(&self, ms: f64) -> Instant {
        let since = (ms - self.start_wall_ms).max(0.0);
        self.start + std::time::Duration::from_secs_f64(since / 1000.0)
    }

    pub fn uptime_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Default for ServerClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn is_monotonic_and_close_to_the_wall_clock() {
        let clock = ServerClock::new();
        let a = clock.now_ms();
        let b = clock.now_ms();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0;
        assert!((a - wall).abs() < 1000.0);
        let later = clock.at(clock.start + Duration::from_micros(1500));
        assert!((later - clock.start_wall_ms - 1.5).abs() < 1e-6);
    }
}
