//! What the proxy actually did: the one-way delay each chunk really got (from the read
//! that took it off one socket to the write that put it on the other), so a benchmark
//! reports the jitter it measured rather than the one it asked for. The timer's
//! granularity (tokio's is 1 ms), the order rule and any time the host kept the proxy's
//! thread off the CPU are in these figures; the delays the model drew are kept beside
//! them, so the two can be told apart.

use std::sync::Mutex;

/// How many delays a direction records at most: 16 chunks a second for over 17 hours of
/// one link, or a benchmark's thousands of heartbeats; beyond it only the counters move.
pub const MAX_RECORDED: usize = 1 << 20;

/// The recorded delays of one direction.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Recorded>,
}

#[derive(Debug, Default, Clone)]
struct Recorded {
    delays_ms: Vec<f64>,
    drawn_ms: Vec<f64>,
    chunks: u64,
    bytes: u64,
    stalls: u64,
}

/// A direction's figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DelaySummary {
    pub chunks: u64,
    pub bytes: u64,
    pub stalls: u64,
    pub mean_ms: f64,
    /// Population standard deviation of the recorded one-way delays.
    pub sd_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Recorder {
    /// Records one chunk written `delay_ms` after it was read, whose drawn delay was
    /// `drawn_ms`.
    pub fn record(&self, delay_ms: f64, drawn_ms: f64, bytes: usize, stalled: bool) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.chunks += 1;
        r.bytes += bytes as u64;
        r.stalls += u64::from(stalled);
        if r.delays_ms.len() < MAX_RECORDED {
            r.delays_ms.push(delay_ms);
            r.drawn_ms.push(drawn_ms);
        }
    }

    /// The recorded delays so far, in write order.
    pub fn delays(&self) -> Vec<f64> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.delays_ms.clone()
    }

    /// The delays the model drew for the same chunks.
    pub fn drawn(&self) -> Vec<f64> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.drawn_ms.clone()
    }

    pub fn summary(&self) -> DelaySummary {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = summarize(&r.delays_ms);
        s.chunks = r.chunks;
        s.bytes = r.bytes;
        s.stalls = r.stalls;
        s
    }
}

/// Mean, population SD, min and max of `delays` (zeros when empty).
pub fn summarize(delays: &[f64]) -> DelaySummary {
    if delays.is_empty() {
        return DelaySummary::default();
    }
    let n = delays.len() as f64;
    let mean = delays.iter().sum::<f64>() / n;
    let var = delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n;
    DelaySummary {
        mean_ms: mean,
        sd_ms: var.sqrt(),
        min_ms: delays.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: delays.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ..DelaySummary::default()
    }
}
