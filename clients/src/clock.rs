//! Estimating the server clock from `heartbeat` round trips.
//!
//! A client converts its own wall clock to server time by adding an offset. One round trip
//! gives an offset whose error is at most half the round trip (the request and the reply
//! could have taken any split of it). On a jittery link (Wi-Fi in a rehearsal room) single
//! samples are off by milliseconds, so the estimator is a clock filter in the spirit of
//! NTP's, Ableton Link's and IRCAM's sync: it holds a window of the last [`DEFAULT_WINDOW`]
//! samples, keeps the quarter with the shortest round trips (see [`filter::best_count`])
//! and takes the median of their offsets. A join burst (a heartbeat every
//! [`BURST_INTERVAL`] for the first [`BURST_LENGTH`]) fills the window quickly, so the
//! estimate is good within two seconds of joining; then one heartbeat a
//! [`STEADY_INTERVAL`] keeps it current.
//!
//! Holding only a window lets the estimate follow a changed route or a drifting clock
//! instead of clinging to one lucky sample from long ago; [`ClockEstimator::with_drift`]
//! also fits the drift itself (off by default: see its doc).
//!
//! The exact rules are in `protocol/PROTOCOL.md`, section 7, for client authors.

pub mod filter;

use bandsync_protocol::server::HeartbeatResponse;
use bandsync_protocol::timeline::ClockSample;
use filter::Timed;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many samples [`ClockEstimator::default`] holds (`W`). 32: the join burst's ~40
/// samples fill it within two seconds, so the filter has 8 good ones to take the median
/// of; afterwards, at one heartbeat a second, it spans the last half minute: short enough
/// to follow a route change, long enough that congestion lasting under ~24 s (three
/// quarters of the window) cannot push out every good sample.
pub const DEFAULT_WINDOW: usize = 32;

/// Kept for source compatibility: the window of [`ClockEstimator::default`].
pub const DEFAULT_CLOCK_SAMPLES: usize = DEFAULT_WINDOW;

/// How long after joining the client heartbeats fast: the target is an offset within 1 ms
/// of the truth two seconds after joining, under 5 ms of jitter each way.
pub const BURST_LENGTH: Duration = Duration::from_secs(2);

/// The heartbeat interval during the join burst: 40 samples in [`BURST_LENGTH`], 20 a
/// second, a fifth of the server's default per-socket rate limit (100 frames/s).
pub const BURST_INTERVAL: Duration = Duration::from_millis(50);

/// The heartbeat interval after the burst: a clock drifts by microseconds a second, and
/// one heartbeat a second is also the liveness check a browser needs.
pub const STEADY_INTERVAL: Duration = Duration::from_secs(1);

/// The least span of local time the kept samples must cover before a drift is fitted:
/// over a shorter span, a few samples' jitter passes for drift (1 ms of noise over 20 s
/// is 50 ppm, more than a quartz clock drifts).
pub const DRIFT_MIN_SPAN_MS: f64 = 20_000.0;

/// This machine's wall clock in ms since the Unix epoch, the unit of every protocol
/// timestamp. A clock set before 1970 reads as 0.
pub fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Server time now, given the offset from a [`ClockEstimator`]: local wall clock + offset.
pub fn server_now(offset: f64) -> f64 {
    wall_clock_ms() + offset
}

/// The current offset estimate, with its error bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockEstimate {
    /// Add to the local wall clock (ms) to get server time (ms).
    pub offset: f64,
    /// The true offset lies within `offset ± error_bound` ms: the largest half round trip
    /// among the samples the median was taken of.
    pub error_bound: f64,
    /// The shortest round trip among the samples the estimate comes from, in ms.
    pub round_trip: f64,
}

/// The clock filter over a window of heartbeat samples, and the heartbeat cadence.
#[derive(Debug, Clone)]
pub struct ClockEstimator {
    held: VecDeque<Timed>,
    capacity: usize,
    drift: bool,
    /// When the join burst started (local ms): the first heartbeat sent or sample added,
    /// or [`Self::restart_burst`].
    burst_from: Option<f64>,
    /// When the last heartbeat was sent (local ms).
    last_sent: Option<f64>,
}

impl Default for ClockEstimator {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl ClockEstimator {
    /// An estimator holding the last `capacity` samples (at least one), drift off.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            held: VecDeque::with_capacity(capacity),
            capacity,
            drift: false,
            burst_from: None,
            last_sent: None,
        }
    }

    /// Fits a drift (the least-squares slope of the kept offsets against local time, once
    /// they span [`DRIFT_MIN_SPAN_MS`]) and applies it in [`Self::offset_at`]. Off by
    /// default: two quartz clocks drift apart by 10-50 ppm, 0.5-2.5 µs over a 50 ms
    /// window of the shared timeline, and the window follows slower drift by itself,
    /// while a fitted slope turns the jitter of a few samples into a trend.
    pub fn with_drift(mut self, on: bool) -> Self {
        self.drift = on;
        self
    }

    /// Adds a sample taken now (local wall clock), forgetting the oldest when full.
    /// Returns false (and keeps nothing) for a sample that cannot be right: a non-finite
    /// value or a negative round trip, which only a local clock step between send and
    /// receive produces.
    pub fn add(&mut self, sample: ClockSample) -> bool {
        self.add_at(sample, wall_clock_ms())
    }

    /// [`Self::add`] for a sample taken at local wall time `local_ms` (the reply's `t3`).
    pub fn add_at(&mut self, sample: ClockSample, local_ms: f64) -> bool {
        let valid = sample.offset.is_finite()
            && sample.round_trip.is_finite()
            && sample.round_trip >= 0.0
            && local_ms.is_finite();
        if !valid {
            return false;
        }
        if self.held.len() == self.capacity {
            self.held.pop_front();
        }
        self.held.push_back(Timed { sample, local_ms });
        self.burst_from.get_or_insert(local_ms);
        true
    }

    /// Adds the sample from a `heartbeat_response` received at local wall time `t3` (ms).
    /// Returns the sample when it was kept.
    pub fn add_heartbeat(&mut self, reply: &HeartbeatResponse, t3: f64) -> Option<ClockSample> {
        let sample = ClockSample::from_heartbeat(reply.t0, reply.t1, reply.t2, t3);
        if reply.t0.is_finite() {
            self.burst_from.get_or_insert(reply.t0);
        }
        self.add_at(sample, t3).then_some(sample)
    }

    /// The filtered estimate, `None` before the first sample.
    pub fn estimate(&self) -> Option<ClockEstimate> {
        let f = filter::filter(&self.window())?;
        Some(ClockEstimate {
            offset: f.offset,
            error_bound: f.error_bound,
            round_trip: f.round_trip,
        })
    }

    /// The filtered offset (ms to add to the local clock).
    pub fn offset(&self) -> Option<f64> {
        self.estimate().map(|e| e.offset)
    }

    /// The offset to use at local wall time `local_ms`: [`Self::offset`], plus the fitted
    /// drift times the time since the kept samples' mean local time when drift is on.
    pub fn offset_at(&self, local_ms: f64) -> Option<f64> {
        let held = &self.window();
        let f = filter::filter(held)?;
        let slope = if self.drift {
            filter::drift(held, DRIFT_MIN_SPAN_MS).unwrap_or(0.0)
        } else {
            0.0
        };
        Some(f.offset + slope * (local_ms - f.local_ms))
    }

    /// The fitted drift (ms per ms), when drift is on and the samples span enough.
    pub fn drift(&self) -> Option<f64> {
        if !self.drift {
            return None;
        }
        filter::drift(&self.window(), DRIFT_MIN_SPAN_MS)
    }

    /// The error bound of [`Self::offset`].
    pub fn error_bound(&self) -> Option<f64> {
        self.estimate().map(|e| e.error_bound)
    }

    /// A [`ServerClock`] using the filtered offset.
    pub fn server_clock(&self) -> Option<ServerClock> {
        self.offset().map(ServerClock::new)
    }

    /// How many samples are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The held samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &ClockSample> {
        self.held.iter().map(|t| &t.sample)
    }

    /// The held samples as one slice for the filter (32 of them: copying is cheaper than
    /// keeping a second, contiguous copy up to date).
    fn window(&self) -> Vec<Timed> {
        self.held.iter().copied().collect()
    }

    /// Records that a heartbeat with `t0` (local ms) was sent: starts the join burst at the
    /// first one, and times [`Self::next_heartbeat_in`].
    pub fn heartbeat_sent(&mut self, t0: f64) {
        if t0.is_finite() {
            self.burst_from.get_or_insert(t0);
            self.last_sent = Some(t0);
        }
    }

    /// Starts a new join burst at `now_ms` (after a reconnect: the route may have changed).
    /// The held samples stay; the burst's fresh ones soon outnumber them.
    pub fn restart_burst(&mut self, now_ms: f64) {
        self.burst_from = Some(now_ms);
    }

    /// Whether local time `now_ms` is within the join burst (also before it started).
    pub fn in_burst(&self, now_ms: f64) -> bool {
        self.burst_from
            .is_none_or(|from| now_ms - from < BURST_LENGTH.as_secs_f64() * 1000.0)
    }

    /// The heartbeat interval at `now_ms`: [`BURST_INTERVAL`] during the join burst,
    /// [`STEADY_INTERVAL`] after.
    pub fn heartbeat_interval(&self, now_ms: f64) -> Duration {
        if self.in_burst(now_ms) {
            BURST_INTERVAL
        } else {
            STEADY_INTERVAL
        }
    }

    /// How long to wait at `now_ms` before the next heartbeat: zero before the first, then
    /// what is left of [`Self::heartbeat_interval`] since the last one sent.
    pub fn next_heartbeat_in(&self, now_ms: f64) -> Duration {
        let Some(last) = self.last_sent else {
            return Duration::ZERO;
        };
        let due = last + self.heartbeat_interval(now_ms).as_secs_f64() * 1000.0;
        let wait = due - now_ms;
        if wait.is_finite() && wait > 0.0 {
            Duration::from_secs_f64(wait / 1000.0)
        } else {
            Duration::ZERO
        }
    }
}

/// Converts between the local wall clock and server time with a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerClock {
    /// Add to the local wall clock (ms) to get server time (ms).
    pub offset: f64,
}

impl ServerClock {
    pub fn new(offset: f64) -> Self {
        Self { offset }
    }

    /// Server time now.
    pub fn server_now(&self) -> f64 {
        server_now(self.offset)
    }

    /// The server time at local wall time `wall_ms`.
    pub fn to_server(&self, wall_ms: f64) -> f64 {
        wall_ms + self.offset
    }

    /// The local wall time at server time `server_ms`.
    pub fn to_local(&self, server_ms: f64) -> f64 {
        server_ms - self.offset
    }
}

#[cfg(test)]
mod tests;
