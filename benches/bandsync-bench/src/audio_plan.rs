//! The `audio` scenario's part of the plan: its settings, the Music Share seed's presets,
//! and the checks of its flags.

use crate::cli::{PcmFormat, RxTransport, Uplink};
use bandsync_bench::bench_stats::frames_per_chunk;
use std::time::Duration;

/// What the `audio` scenario reads besides the common settings.
#[derive(Debug, Clone)]
pub struct AudioSettings {
    pub receivers: u64,
    pub transport: RxTransport,
    pub uplink: Uplink,
    pub chunk_ms: u32,
    pub sample_rate: u32,
    pub channels: u16,
    pub format: PcmFormat,
    pub token: String,
    /// Seeds the run's 6-digit share ids (pid, clock, job number).
    pub id_seed: u64,
}

impl AudioSettings {
    /// Chunks a sharer sends per second.
    pub fn chunks_per_s(&self) -> f64 {
        1000.0 / f64::from(self.chunk_ms)
    }

    /// PCM bytes of one chunk in the sharer's format.
    pub fn chunk_bytes(&self) -> usize {
        frames_per_chunk(self.sample_rate, self.chunk_ms) as usize
            * usize::from(self.channels)
            * self.format.bytes_per_sample()
    }

    /// The SHARE_AUDIO_RATE a spawned server gets: 20 a second (the default of 10 is
    /// exactly 100 ms chunks, no headroom), or twice the chunk rate when that is higher.
    pub fn spawn_audio_rate(&self) -> u32 {
        (2.0 * self.chunks_per_s()).ceil().max(20.0) as u32
    }
}

/// One step of the `audio-seed` preset: its fixed sessions x receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub sessions: u64,
    pub receivers: u64,
}

/// The Music Share specification's load-test scenarios (its "Load Testing" section).
pub const AUDIO_SEED: [Preset; 3] = [
    Preset {
        name: "audio-seed-1",
        sessions: 10,
        receivers: 1,
    },
    Preset {
        name: "audio-seed-2",
        sessions: 5,
        receivers: 10,
    },
    Preset {
        name: "audio-seed-3",
        sessions: 50,
        receivers: 5,
    },
];

/// Checks the audio settings of one run: `sessions` sharers, `duration` long.
pub fn check_audio(a: &AudioSettings, sessions: u64, duration: Duration) -> Result<(), String> {
    let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_owned()) };
    check(
        (1..=1000).contains(&sessions),
        "audio: --sessions must be 1..=1000 (6-digit share ids, one sharer each)",
    )?;
    check(
        (1..=10_000).contains(&a.receivers),
        "audio: --receivers must be 1..=10000",
    )?;
    check(
        sessions * a.receivers <= 100_000,
        "audio: --sessions x --receivers must be at most 100000",
    )?;
    check(
        (5..=10_000).contains(&a.chunk_ms),
        "audio: --chunk-ms must be 5..=10000",
    )?;
    check(
        (1..=384_000).contains(&a.sample_rate),
        "audio: --sample-rate must be 1..=384000 Hz",
    )?;
    check(
        (1..=32).contains(&a.channels),
        "audio: --channels must be 1..=32",
    )?;
    check(
        frames_per_chunk(a.sample_rate, a.chunk_ms) >= 1,
        "audio: --chunk-ms x --sample-rate must make at least one frame per chunk",
    )?;
    check(
        a.chunk_bytes() <= 1024 * 1024,
        "audio: a chunk must be at most 1 MiB (the server's limit); lower --chunk-ms",
    )?;
    check(
        !(a.uplink == Uplink::Rest && a.format == PcmFormat::I16),
        "audio: --format i16 needs --uplink ws (the REST API carries base64 f32 only)",
    )?;
    let chunks = (duration.as_secs_f64() * 1000.0 / f64::from(a.chunk_ms)).ceil() as u64 + 1;
    check(
        sessions * chunks <= 20_000_000,
        "audio: --sessions x chunks per session must be at most 20M (shorten -d)",
    )?;
    check(!a.token.is_empty(), "audio: --token must not be empty")?;
    Ok(())
}
