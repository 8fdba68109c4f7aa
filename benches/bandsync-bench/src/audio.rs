//! `audio`: the Music Share relay under load (protocol section 13). S sharers each start
//! a share session and stream real-time audio; R receivers per session get it pushed (WS
//! binary frames, SSE `audio_chunk` events) or poll for it. Relay latency is the
//! receiver's receive instant minus the sharer's send instant, keyed by (session,
//! sequence): one process, one monotonic clock.
//!
//! Order of events: every share starts, then every receiver joins (or polls once), then
//! the sharers stream, so no receiver gets a join burst of older audio and every chunk is
//! expected by every receiver of its session. Sharers' phases are spread over one chunk
//! period; each sends chunk k at its absolute deadline `start + phase + k * chunk`.

use crate::audio_rx::{self, Receivers};
use crate::audio_tx::{self, SharerPhase};
use crate::plan::AudioSettings;
use crate::progress::WindowBar;
use crate::recorder::{lock, Recorder};
use crate::report::AudioResults;
use crate::target::Endpoints;
use crate::Settings;
use anyhow::bail;
use bandsync_bench::bench_stats::{
    frames_per_chunk, share_ids, ChunkSchedule, LatencySummary, SendBook, SeqInsert, SeqSet,
    ShardedHistogram,
};
use bandsync_client::protocol::audio::SampleFormat;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Quiet time after the receivers joined (their `room_stats`) before streaming.
const SETTLE: Duration = Duration::from_millis(300);
/// How long after the last send chunks may still arrive before they count as lost (a
/// poller asks every 100 ms, so this is many polls).
const DRAIN: Duration = Duration::from_secs(2);
/// Histogram shards.
const SHARDS: usize = 16;

/// One receiver's view while it runs.
pub struct RxState {
    pub session: usize,
    pub hint: usize,
    pub seen: SeqSet,
}

/// Everything the sharers and receivers of one run share.
pub struct AudioRun {
    pub rec: Arc<Recorder>,
    pub book: SendBook,
    pub ids: Vec<String>,
    pub settings: AudioSettings,
    pub format: SampleFormat,
    /// Chunks a sharer sends at most (the sequence range, 0..capacity).
    pub capacity: u64,
    /// PCM bytes of one chunk in the sharer's format, and as f32 (what polls carry).
    pub chunk_bytes: usize,
    pub poll_chunk_bytes: usize,
    /// Receivers joined per session: each accepted chunk is expected this many times.
    pub joined: Vec<AtomicU64>,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_order: AtomicU64,
    pub corrupt: AtomicU64,
    pub pcm_delivered: AtomicU64,
    pub wire_bytes: AtomicU64,
    pub polls: AtomicU64,
    pub empty_polls: AtomicU64,
    pub lateness: ShardedHistogram,
    pub post_us: ShardedHistogram,
    /// (session, what it saw) of every receiver that finished.
    pub received: Mutex<Vec<(usize, SeqSet)>>,
    /// Per session: the sequences the server accepted (set when the sharer finishes).
    pub accepted_sets: Mutex<Vec<Option<SeqSet>>>,
}

impl AudioRun {
    pub fn new(rec: Arc<Recorder>, s: &Settings) -> Self {
        let a = s.audio.clone();
        let sessions = s.sessions as usize;
        let period = Duration::from_millis(u64::from(a.chunk_ms));
        let capacity = ChunkSchedule {
            period,
            phase: Duration::ZERO,
            duration: s.duration,
        }
        .count();
        let frames = frames_per_chunk(a.sample_rate, a.chunk_ms) as usize;
        let format = match a.format {
            crate::cli::PcmFormat::F32 => SampleFormat::F32,
            crate::cli::PcmFormat::I16 => SampleFormat::I16,
        };
        Self {
            rec,
            book: SendBook::new(sessions, capacity),
            ids: share_ids(a.id_seed, sessions),
            chunk_bytes: a.chunk_bytes(),
            poll_chunk_bytes: frames * usize::from(a.channels) * 4,
            settings: a,
            format,
            capacity,
            joined: (0..sessions).map(|_| AtomicU64::new(0)).collect(),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            pcm_delivered: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            empty_polls: AtomicU64::new(0),
            lateness: ShardedHistogram::new(SHARDS),
            post_us: ShardedHistogram::new(SHARDS),
            received: Mutex::new(Vec::new()),
            accepted_sets: Mutex::new(vec![None; sessions]),
        }
    }

    pub fn rx_state(&self, session: usize, hint: usize) -> RxState {
        RxState {
            session,
            hint,
            seen: SeqSet::new(self.capacity),
        }
    }

    /// A receiver got chunk `seq` at `at`: `pcm_len` bytes of samples (`expected_len` if
    /// intact), `wire_len` bytes as they came. Counted only inside the window.
    pub fn on_chunk(
        &self,
        rx: &mut RxState,
        seq: i64,
        pcm_len: usize,
        expected_len: usize,
        wire_len: usize,
        at: std::time::Instant,
    ) {
        let rec = &*self.rec;
        if !rec.measuring() {
            return;
        }
        let Some(sent) = self.book.sent_at(rx.session, seq) else {
            rec.unmatched.fetch_add(1, Relaxed);
            return;
        };
        match rx.seen.insert(seq) {
            SeqInsert::New { out_of_order } => {
                if out_of_order {
                    self.out_of_order.fetch_add(1, Relaxed);
                }
            }
            SeqInsert::Duplicate => {
                self.duplicates.fetch_add(1, Relaxed);
                return;
            }
            SeqInsert::OutOfRange => {
                rec.unmatched.fetch_add(1, Relaxed);
                return;
            }
        }
        if pcm_len != expected_len {
            self.corrupt.fetch_add(1, Relaxed);
        }
        let us = at.saturating_duration_since(sent).as_micros() as u64;
        rec.latency.record(rx.hint, us);
        rec.deliveries.fetch_add(1, Relaxed);
        self.pcm_delivered.fetch_add(pcm_len as u64, Relaxed);
        self.wire_bytes.fetch_add(wire_len as u64, Relaxed);
    }

    /// A receiver is done: its sequences count towards per-receiver loss.
    pub fn receiver_finished(&self, rx: RxState) {
        lock(&self.received).push((rx.session, rx.seen));
    }

    /// The sharer of `session` had chunk `seq` accepted.
    pub fn chunk_accepted(&self, session: usize) {
        self.accepted.fetch_add(1, Relaxed);
        let receivers = self.joined[session].load(Relaxed);
        self.rec.expected.fetch_add(receivers, Relaxed);
    }

    /// Per-receiver loss: (receivers that missed something, the most one missed).
    fn loss(&self) -> (u64, u64) {
        let accepted = lock(&self.accepted_sets);
        let received = lock(&self.received);
        let mut with_loss = 0;
        let mut worst = 0;
        for (session, seen) in received.iter() {
            let Some(Some(sent)) = accepted.get(*session) else {
                continue;
            };
            let missing = seen.missing_from(sent);
            if missing > 0 {
                with_loss += 1;
                worst = worst.max(missing);
            }
        }
        (with_loss, worst)
    }

    fn results(&self, sharers: u64, streamed: Duration) -> AudioResults {
        let secs = streamed.as_secs_f64();
        let per_s = |bytes: u64| {
            if secs > 0.0 {
                (bytes as f64 / secs).round()
            } else {
                0.0
            }
        };
        let (receivers_with_loss, max_lost_per_receiver) = self.loss();
        let accepted = self.accepted.load(Relaxed);
        let poll = self.settings.transport == crate::cli::RxTransport::Poll;
        let rest = self.settings.uplink == crate::cli::Uplink::Rest;
        AudioResults {
            sharers,
            chunks_accepted: accepted,
            chunks_refused: self.refused.load(Relaxed),
            receivers_with_loss,
            max_lost_per_receiver,
            duplicates: self.duplicates.load(Relaxed),
            out_of_order: self.out_of_order.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            unmatched: self.rec.unmatched.load(Relaxed),
            uplink_bytes_per_s: per_s(accepted * self.chunk_bytes as u64),
            relayed_bytes_per_s: per_s(self.pcm_delivered.load(Relaxed)),
            received_wire_bytes_per_s: per_s(self.wire_bytes.load(Relaxed)),
            send_lateness_us: LatencySummary::of(&self.lateness.merged()),
            post_us: rest
                .then(|| LatencySummary::of(&self.post_us.merged()))
                .flatten(),
            polls: poll.then(|| self.polls.load(Relaxed)),
            empty_polls: poll.then(|| self.empty_polls.load(Relaxed)),
        }
    }
}

pub async fn run(s: &Settings, ep: &Endpoints, rec: Arc<Recorder>) -> anyhow::Result<()> {
    let run = Arc::new(AudioRun::new(rec.clone(), s));
    let (phase_tx, phase_rx) = watch::channel(SharerPhase::Setup);

    // 1. Every sharer starts its share session.
    let mut sharers = audio_tx::start_all(&run, ep, s, phase_rx).await?;
    let started = sharers.started();
    lock(&rec.extra).audio = Some(AudioResults {
        sharers: started,
        ..AudioResults::default()
    });

    // 2. Every receiver joins before any audio exists: no join burst.
    let receivers: Receivers = audio_rx::open_all(&run, ep, s).await?;
    if rec.connected.load(Relaxed) == 0 {
        phase_tx.send_replace(SharerPhase::Stop);
        sharers.finish(Duration::from_secs(5)).await;
        bail!(
            "no receiver could connect: {}",
            rec.first_error().unwrap_or_default()
        );
    }
    tokio::time::sleep(SETTLE).await;

    // 3. Stream for the duration, then let the last chunks arrive.
    rec.begin_window();
    let bar = WindowBar::start(&rec, s.duration);
    let start = Instant::now() + Duration::from_millis(20);
    let until = start + s.duration;
    phase_tx.send_replace(SharerPhase::Go { start, until });
    sharers.wait_sent().await;
    let drain_end = Instant::now() + DRAIN;
    while Instant::now() < drain_end && rec.deliveries.load(Relaxed) < rec.expected.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rec.end_window();
    drop(bar);

    // 4. Receivers hand in what they saw; sharers stop their shares.
    receivers.stop(Duration::from_secs(3)).await;
    phase_tx.send_replace(SharerPhase::Stop);
    let sharer_error = sharers.finish(Duration::from_secs(5)).await;
    lock(&rec.extra).audio = Some(run.results(started, s.duration));
    match sharer_error {
        Some(e) => Err(e.context("a sharer failed")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::report::Params;
    use clap::Parser;

    fn run_for(args: &[&str]) -> (AudioRun, Settings) {
        let cli =
            Cli::try_parse_from(std::iter::once("bandsync-bench").chain(args.iter().copied()))
                .unwrap();
        let plan = cli.validate("bench-1".into()).unwrap();
        let s = plan.job_settings(&plan.jobs[0], 0);
        let rec = Recorder::new("audio", Params::default(), None, 0, false);
        (AudioRun::new(rec, &s), s)
    }

    #[test]
    fn deliveries_are_matched_by_session_and_sequence() {
        let (run, s) = run_for(&["audio", "--sessions", "2", "--receivers", "2", "-d", "1"]);
        assert_eq!(run.capacity, 10, "1 s of 100 ms chunks");
        assert_eq!(run.ids.len(), 2);
        assert_eq!(run.chunk_bytes, 35_280);
        assert_eq!(run.poll_chunk_bytes, 35_280);
        for session in 0..2 {
            run.joined[session].store(s.audio.receivers, Relaxed);
        }
        let t0 = std::time::Instant::now();
        let mut a = run.rx_state(0, 0);
        let mut b = run.rx_state(0, 1);
        let mut other = run.rx_state(1, 2);

        // Nothing counts outside the window.
        run.book.mark(0, 0, t0);
        run.on_chunk(&mut a, 0, 35_280, 35_280, 35_308, t0);
        assert_eq!(run.rec.deliveries.load(Relaxed), 0);

        run.rec.begin_window();
        for seq in 0..3 {
            run.book.mark(0, seq, t0);
            run.chunk_accepted(0);
        }
        let at = t0 + Duration::from_micros(700);
        run.on_chunk(&mut a, 0, 35_280, 35_280, 35_308, at);
        run.on_chunk(&mut a, 2, 35_280, 35_280, 35_308, at);
        run.on_chunk(&mut a, 1, 35_280, 35_280, 35_308, at); // late
        run.on_chunk(&mut a, 1, 35_280, 35_280, 35_308, at); // again
        run.on_chunk(&mut b, 0, 100, 35_280, 128, at); // wrong size
        run.on_chunk(&mut other, 0, 35_280, 35_280, 35_308, at); // session 1 sent nothing
        run.on_chunk(&mut b, 99, 35_280, 35_280, 35_308, at); // never sent
        assert_eq!(run.rec.expected.load(Relaxed), 6);
        assert_eq!(run.rec.deliveries.load(Relaxed), 4);
        assert_eq!(run.duplicates.load(Relaxed), 1);
        assert_eq!(run.out_of_order.load(Relaxed), 1);
        assert_eq!(run.corrupt.load(Relaxed), 1);
        assert_eq!(run.rec.unmatched.load(Relaxed), 2);
        let latency = LatencySummary::of(&run.rec.latency.merged()).unwrap();
        assert_eq!(latency.count, 4);
        assert!((699..=701).contains(&latency.p50), "{latency:?}");
        run.rec.end_window();

        // Per-receiver loss against what the server accepted.
        let mut sent = SeqSet::new(run.capacity);
        for seq in 0..3 {
            sent.insert(seq);
        }
        lock(&run.accepted_sets)[0] = Some(sent);
        run.receiver_finished(a);
        run.receiver_finished(b);
        run.receiver_finished(other);
        assert_eq!(
            run.loss(),
            (1, 2),
            "b missed 1 and 2; a has all; session 1 sent none"
        );
        let r = run.results(1, Duration::from_secs(1));
        assert_eq!(r.chunks_accepted, 3);
        assert_eq!(r.relayed_bytes_per_s, (3 * 35_280 + 100) as f64);
        assert!(r.post_us.is_none(), "no POST was timed");
        assert_eq!(r.polls, None);
    }

    #[test]
    fn polls_carry_f32_whatever_the_sharer_sends() {
        let (run, _) = run_for(&["audio", "--uplink", "ws", "--format", "i16", "-d", "1"]);
        assert_eq!(run.chunk_bytes, 17_640);
        assert_eq!(run.poll_chunk_bytes, 35_280);
        assert_eq!(run.format, SampleFormat::I16);
    }
}
