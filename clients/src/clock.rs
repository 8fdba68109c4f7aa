//! Estimating the server clock from `heartbeat` round trips.
//!
//! A client converts its own wall clock to server time by adding an offset. One round trip
//! gives an offset whose error is at most half the round trip (the request and the reply
//! could have taken any split of it), so the estimator keeps the last few samples and
//! trusts the one with the shortest round trip (see
//! [`bandsync_protocol::timeline::best_clock_sample`]). Keeping only the last N lets the
//! estimate follow clock drift and network changes instead of clinging to one lucky
//! sample from long ago.

use bandsync_protocol::server::HeartbeatResponse;
use bandsync_protocol::timeline::{best_clock_sample, ClockSample};
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many samples [`ClockEstimator::default`] keeps: at one heartbeat a second, the best
/// of the last eight seconds.
pub const DEFAULT_CLOCK_SAMPLES: usize = 8;

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

/// The best current offset estimate, with its error bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockEstimate {
    /// Add to the local wall clock (ms) to get server time (ms).
    pub offset: f64,
    /// The true offset lies within `offset ± error_bound` ms (half the round trip).
    pub error_bound: f64,
    /// The round trip of the sample this estimate comes from, in ms.
    pub round_trip: f64,
}

/// Keeps the last N clock samples and reports the one with the shortest round trip.
#[derive(Debug, Clone)]
pub struct ClockEstimator {
    samples: VecDeque<ClockSample>,
    capacity: usize,
}

impl Default for ClockEstimator {
    fn default() -> Self {
        Self::new(DEFAULT_CLOCK_SAMPLES)
    }
}

impl ClockEstimator {
    /// An estimator keeping the last `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds a sample, forgetting the oldest when full. Returns false (and keeps nothing) for
    /// a sample that cannot be right: a non-finite value or a negative round trip, which
    /// only a local clock step between send and receive produces.
    pub fn add(&mut self, sample: ClockSample) -> bool {
        if !sample.offset.is_finite() || !sample.round_trip.is_finite() || sample.round_trip < 0.0 {
            return false;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        true
    }

    /// Adds the sample from a `heartbeat_response` received at local wall time `t3` (ms).
    /// Returns the sample when it was kept.
    pub fn add_heartbeat(&mut self, reply: &HeartbeatResponse, t3: f64) -> Option<ClockSample> {
        let sample = ClockSample::from_heartbeat(reply.t0, reply.t1, reply.t2, t3);
        self.add(sample).then_some(sample)
    }

    /// The best estimate so far, `None` before the first sample.
    pub fn estimate(&self) -> Option<ClockEstimate> {
        let (front, back) = self.samples.as_slices();
        // `best_clock_sample` takes one slice; a ring buffer holds at most two.
        let best = match (best_clock_sample(front), best_clock_sample(back)) {
            (Some(a), Some(b)) => best_clock_sample(&[a, b]),
            (a, b) => a.or(b),
        }?;
        Some(ClockEstimate {
            offset: best.offset,
            error_bound: best.round_trip / 2.0,
            round_trip: best.round_trip,
        })
    }

    /// The best offset so far (ms to add to the local clock).
    pub fn offset(&self) -> Option<f64> {
        self.estimate().map(|e| e.offset)
    }

    /// The error bound of [`Self::offset`], half its round trip.
    pub fn error_bound(&self) -> Option<f64> {
        self.estimate().map(|e| e.error_bound)
    }

    /// A [`ServerClock`] using the best offset so far.
    pub fn server_clock(&self) -> Option<ServerClock> {
        self.offset().map(ServerClock::new)
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The kept samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &ClockSample> {
        self.samples.iter()
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
mod tests {
    use super::*;

    fn sample(offset: f64, round_trip: f64) -> ClockSample {
        ClockSample { offset, round_trip }
    }

    #[test]
    fn empty_estimator_has_no_estimate() {
        let e = ClockEstimator::default();
        assert!(e.is_empty());
        assert_eq!(e.estimate(), None);
        assert_eq!(e.server_clock(), None);
    }

    #[test]
    fn picks_the_shortest_round_trip_and_halves_it() {
        let mut e = ClockEstimator::new(4);
        e.add(sample(100.0, 30.0));
        e.add(sample(90.0, 6.0));
        e.add(sample(120.0, 50.0));
        let est = e.estimate().unwrap();
        assert_eq!(est.offset, 90.0);
        assert_eq!(est.error_bound, 3.0);
        assert_eq!(est.round_trip, 6.0);
    }

    #[test]
    fn forgets_samples_beyond_capacity() {
        let mut e = ClockEstimator::new(3);
        e.add(sample(1.0, 1.0)); // the best, but it will age out
        for offset in [2.0, 3.0, 4.0] {
            e.add(sample(offset, 10.0 + offset));
        }
        assert_eq!(e.len(), 3);
        assert_eq!(e.offset(), Some(2.0));
    }

    #[test]
    fn finds_the_best_across_the_ring_buffer_wrap() {
        // After wrapping, the deque's storage is two slices; the best may be in either.
        let mut e = ClockEstimator::new(4);
        for (i, rtt) in [9.0, 8.0, 7.0, 6.0, 20.0, 1.5].into_iter().enumerate() {
            e.add(sample(i as f64, rtt));
        }
        assert_eq!(e.offset(), Some(5.0));
        let mut e = ClockEstimator::new(4);
        for (i, rtt) in [9.0, 8.0, 2.0, 6.0, 20.0, 10.0].into_iter().enumerate() {
            e.add(sample(i as f64, rtt));
        }
        assert_eq!(e.offset(), Some(2.0));
    }

    #[test]
    fn rejects_impossible_samples() {
        let mut e = ClockEstimator::default();
        assert!(!e.add(sample(f64::NAN, 1.0)));
        assert!(!e.add(sample(1.0, -0.5)));
        assert!(!e.add(sample(1.0, f64::INFINITY)));
        assert!(e.is_empty());
    }

    #[test]
    fn heartbeat_reply_becomes_a_sample() {
        // Server clock 250 ms ahead, 4 ms each way, 1 ms processing.
        let reply = HeartbeatResponse {
            t0: 1_000.0,
            t1: 1_254.0,
            t2: 1_255.0,
        };
        let mut e = ClockEstimator::default();
        let s = e.add_heartbeat(&reply, 1_009.0).unwrap();
        assert!((s.offset - 250.0).abs() < 1e-9);
        assert!((s.round_trip - 8.0).abs() < 1e-9);
        assert!((e.error_bound().unwrap() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn server_clock_converts_both_ways() {
        let c = ServerClock::new(-42.5);
        assert_eq!(c.to_server(1_000.0), 957.5);
        assert_eq!(c.to_local(957.5), 1_000.0);
        let before = wall_clock_ms();
        let now = c.server_now();
        assert!(now >= before - 42.5 && now <= wall_clock_ms() - 42.5);
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_clock_ms() > 1_577_836_800_000.0);
    }
}
