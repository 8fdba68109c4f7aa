//! Everything a scenario measures, in one shared place.
//!
//! Connection tasks record into a [`Recorder`] as frames arrive (atomics and sharded
//! histograms, no per-message allocation), and the report is built from it at the end.
//! Because the report reads only the recorder, a run cut short by `--timeout` or Ctrl-C
//! can still print what it measured so far.

use crate::procfs::{read_cpu, CpuTime};
use crate::report::{Extra, Params};
use bandsync_bench::bench_stats::ShardedHistogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Histogram shards: a few per core keeps lock collisions rare on small machines.
const SHARDS: usize = 16;

/// The `/proc` readings at one edge of the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: Instant,
    pub client: Option<CpuTime>,
    pub server: Option<CpuTime>,
}

impl Mark {
    pub fn now(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            client: read_cpu(None),
            server: server_pid.and_then(|pid| read_cpu(Some(pid))),
        }
    }
}

/// Shared measurements of one scenario run.
pub struct Recorder {
    pub scenario: &'static str,
    pub params: Params,
    pub server_pid: Option<u32>,
    pub tick_interval: Duration,
    pub progress: bool,
    /// Origin of the `sent_at` slots.
    base: Instant,
    /// True inside the measured window; frames outside it are not counted.
    measuring: AtomicBool,
    window: Mutex<(Option<Mark>, Option<Mark>)>,

    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    pub closed_early: AtomicU64,
    first_error: Mutex<Option<String>>,
    pub join_latency: ShardedHistogram,

    /// Per tempo index: when it was sent, as ns since `base` plus one (0 = not sent).
    sent_at: Box<[AtomicU64]>,
    pub sent: AtomicU64,
    pub expected: AtomicU64,
    pub deliveries: AtomicU64,
    pub unmatched: AtomicU64,
    pub latency: ShardedHistogram,

    pub ticks: AtomicU64,
    pub missing: AtomicU64,
    pub out_of_order: AtomicU64,
    pub negative_lag: AtomicU64,
    pub jitter: ShardedHistogram,
    pub lag: ShardedHistogram,
    /// Ticks each finished client received in the window (for min/max per client).
    per_client_ticks: Mutex<Vec<u64>>,

    /// Every frame any of our connections received in the window.
    pub frames: AtomicU64,
    pub undecodable: AtomicU64,
    /// `error` and `rate_limit_exceeded` frames received.
    pub server_errors: AtomicU64,
    /// Scenario-specific results (memory, hold phase), set when known.
    pub extra: Mutex<Extra>,
}

impl Recorder {
    /// `tempo_slots`: how many `set_tempo`s the run may send (0 when it sends none).
    pub fn new(
        scenario: &'static str,
        params: Params,
        server_pid: Option<u32>,
        tempo_slots: u64,
        progress: bool,
    ) -> Arc<Self> {
        let tick_interval = Duration::from_secs_f64(params.tick_interval_ms / 1000.0);
        Arc::new(Self {
            scenario,
            params,
            server_pid,
            tick_interval,
            progress,
            base: Instant::now(),
            measuring: AtomicBool::new(false),
            window: Mutex::new((None, None)),
            connected: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            first_error: Mutex::new(None),
            join_latency: ShardedHistogram::new(SHARDS),
            sent_at: (0..tempo_slots).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            latency: ShardedHistogram::new(SHARDS),
            ticks: AtomicU64::new(0),
            missing: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            negative_lag: AtomicU64::new(0),
            jitter: ShardedHistogram::new(SHARDS),
            lag: ShardedHistogram::new(SHARDS),
            per_client_ticks: Mutex::new(Vec::new()),
            frames: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            extra: Mutex::new(Extra::default()),
        })
    }

    #[inline]
    pub fn measuring(&self) -> bool {
        self.measuring.load(Relaxed)
    }

    /// Opens the measured window: CPU readings of both processes, then counting starts.
    pub fn begin_window(&self) {
        let mark = Mark::now(self.server_pid);
        lock(&self.window).0 = Some(mark);
        self.measuring.store(true, SeqCst);
    }

    /// Closes the window (idempotent: the first call counts).
    pub fn end_window(&self) {
        self.measuring.store(false, SeqCst);
        let mut window = lock(&self.window);
        if window.0.is_some() && window.1.is_none() {
            window.1 = Some(Mark::now(self.server_pid));
        }
    }

    /// The window's edges; an unfinished window ends now.
    pub fn window(&self) -> Option<(Mark, Mark)> {
        let window = *lock(&self.window);
        let start = window.0?;
        Some((
            start,
            window.1.unwrap_or_else(|| Mark::now(self.server_pid)),
        ))
    }

    /// Keeps the first error message of the run for the report.
    pub fn note_error(&self, message: impl FnOnce() -> String) {
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(message());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// Stamps tempo index `index` as sent now; call it just before writing the frame.
    pub fn mark_sent(&self, index: u64) {
        if let Some(slot) = self.sent_at.get(index as usize) {
            let ns = self.base.elapsed().as_nanos() as u64 + 1;
            slot.store(ns, Release);
            self.sent.fetch_add(1, Relaxed);
        }
    }

    /// A follower received the `state_update` for tempo index `index` at `at`.
    pub fn delivered(&self, hint: usize, index: u64, at: Instant) {
        let ns = self
            .sent_at
            .get(index as usize)
            .map_or(0, |slot| slot.load(Acquire));
        if ns == 0 {
            self.unmatched.fetch_add(1, Relaxed);
            return;
        }
        let sent = self.base + Duration::from_nanos(ns - 1);
        let us = at.saturating_duration_since(sent).as_micros() as u64;
        self.latency.record(hint, us);
        self.deliveries.fetch_add(1, Relaxed);
    }

    pub fn client_finished(&self, window_ticks: u64) {
        lock(&self.per_client_ticks).push(window_ticks);
    }

    /// (min, max) ticks one client received in the window, over finished clients.
    pub fn per_client_tick_range(&self) -> Option<(u64, u64)> {
        let all = lock(&self.per_client_ticks);
        Some((*all.iter().min()?, *all.iter().max()?))
    }
}

/// A poisoned lock only means another recording task panicked; the data is still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
