//! The clock filter: which of the held samples to trust, and what they say together.
//!
//! Pure functions over `(sample, local time)` pairs, so the maths is tested without a
//! clock or a socket. The rules are the contract a client in any language follows
//! (`protocol/PROTOCOL.md`, section 7); the browser page ports them line for line.

use bandsync_protocol::timeline::ClockSample;

/// The fewest samples the filter keeps once it holds more than that: one sample's offset
/// can be any split of its round trip, and the median of three is the smallest that
/// outvotes one bad sample.
pub const MIN_BEST: usize = 3;

/// A held sample and the local wall time (ms) it was taken at (the reply's arrival, `t3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    pub sample: ClockSample,
    pub local_ms: f64,
}

/// How many of `n` held samples the filter keeps: all of them while `n <= 3`, then
/// `max(3, ceil(n / 4))`, the quarter with the shortest round trips.
///
/// A quarter: in a window of 32, the best 8. Queueing delay is one-sided (a sample is
/// only ever late), so the shortest round trips are the least delayed and the closest to
/// symmetric; a quarter still leaves enough of them for the median to ignore the odd one
/// whose short round trip hides an uneven split.
pub fn best_count(n: usize) -> usize {
    if n <= MIN_BEST {
        n
    } else {
        MIN_BEST.max(n.div_ceil(4))
    }
}

/// The `best_count(held.len())` samples with the shortest round trips. Equal round trips
/// keep their order in the window (the sort is stable), as the page's port does.
pub fn best(held: &[Timed]) -> Vec<Timed> {
    let mut sorted = held.to_vec();
    sorted.sort_by(|a, b| a.sample.round_trip.total_cmp(&b.sample.round_trip));
    sorted.truncate(best_count(held.len()));
    sorted
}

/// The median of `values`: the middle one, or the mean of the two middle ones for an even
/// count. `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// What the filtered samples say: the offset, its bound, and the shortest round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Filtered {
    /// Median of the kept samples' offsets.
    pub offset: f64,
    /// The largest half round trip among the kept samples: each kept sample's true offset
    /// lies within its own `offset ± round_trip / 2`, so their median lies within the
    /// widest of those intervals' half-widths of the truth.
    pub error_bound: f64,
    /// The shortest round trip among them.
    pub round_trip: f64,
    /// The mean local time of the kept samples: where a drift line is anchored.
    pub local_ms: f64,
}

/// Filters `held` (the window, any order). `None` when empty.
pub fn filter(held: &[Timed]) -> Option<Filtered> {
    let kept = best(held);
    let mut offsets: Vec<f64> = kept.iter().map(|t| t.sample.offset).collect();
    let offset = median(&mut offsets)?;
    let error_bound = kept
        .iter()
        .map(|t| t.sample.round_trip / 2.0)
        .fold(0.0, f64::max);
    let round_trip = kept
        .iter()
        .map(|t| t.sample.round_trip)
        .fold(f64::INFINITY, f64::min);
    let local_ms = kept.iter().map(|t| t.local_ms).sum::<f64>() / kept.len() as f64;
    Some(Filtered {
        offset,
        error_bound,
        round_trip,
        local_ms,
    })
}

/// The least-squares slope of the kept samples' offsets against their local times
/// (ms of offset per ms of local time), or `None` when they span less than `min_span_ms`
/// (over a short span, the jitter of a few samples passes for drift).
pub fn drift(held: &[Timed], min_span_ms: f64) -> Option<f64> {
    let kept = best(held);
    let (first, last) = kept
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
            (lo.min(t.local_ms), hi.max(t.local_ms))
        });
    if kept.len() < MIN_BEST || last - first < min_span_ms {
        return None;
    }
    let n = kept.len() as f64;
    let mean_t = kept.iter().map(|t| t.local_ms).sum::<f64>() / n;
    let mean_o = kept.iter().map(|t| t.sample.offset).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for t in &kept {
        let dx = t.local_ms - mean_t;
        sxy += dx * (t.sample.offset - mean_o);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx)
}
