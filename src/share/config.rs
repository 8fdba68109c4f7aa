//! The Music Share relay's settings: the seed's environment variables, plus the test-time
//! knobs for its fixed durations.

use super::{SessionLimitsConfig, ShareSettings};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct ShareConfig {
    /// Token the share API requires in `Authorization` (the whole header value, e.g.
    /// `Bearer Token`, or the token after `Bearer `). Unset: the share API answers 401.
    #[arg(long, env = "BEARER_TOKEN")]
    pub bearer_token: Option<String>,
    /// Most active share sessions (the seed's `MAX_SESSIONS`).
    #[arg(
        long = "max-share-sessions",
        env = "MAX_SESSIONS",
        default_value_t = 50
    )]
    pub max_share_sessions: usize,
    /// Seconds of audio each share session buffers for pollers and late joiners.
    #[arg(long, env = "AUDIO_BUFFER_SECONDS", default_value_t = 5.0)]
    pub audio_buffer_seconds: f64,
    /// A share session with no sharer activity for this long ends (fractions allowed).
    #[arg(long, env = "SESSION_TIMEOUT_MINUTES", default_value_t = 15.0)]
    pub session_timeout_minutes: f64,
    /// How much recent audio a receiver that joins late gets at once, ms.
    #[arg(long, env = "AUDIO_BURST_MS", default_value_t = 1000)]
    pub audio_burst_ms: u64,
    /// Metadata requests allowed per share session per second.
    #[arg(long, env = "SHARE_METADATA_RATE", default_value_t = 2)]
    pub share_metadata_rate: u32,
    /// Audio requests allowed per share session per second.
    #[arg(long, env = "SHARE_AUDIO_RATE", default_value_t = 10)]
    pub share_audio_rate: u32,
    /// How long posted metadata stays current, ms (the seed's 30 s TTL).
    #[arg(long, env = "SHARE_METADATA_TTL_MS", default_value_t = 30_000)]
    pub share_metadata_ttl_ms: u64,
    /// How long a stopped session still reports "ended", ms (the seed's 5 minutes).
    #[arg(long, env = "SHARE_ENDED_RETENTION_MS", default_value_t = 300_000)]
    pub share_ended_retention_ms: u64,
}

/// Most chunks a buffer holds whatever their length, so tiny chunks cannot grow it.
const BUFFER_MAX_CHUNKS: usize = 4096;

impl ShareConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.audio_buffer_seconds.is_finite() && self.audio_buffer_seconds > 0.0) {
            return Err("AUDIO_BUFFER_SECONDS must be a positive number".into());
        }
        if !(self.session_timeout_minutes.is_finite() && self.session_timeout_minutes > 0.0) {
            return Err("SESSION_TIMEOUT_MINUTES must be a positive number".into());
        }
        if self.max_share_sessions == 0 {
            return Err("MAX_SESSIONS must be greater than 0".into());
        }
        Ok(())
    }

    pub fn settings(&self) -> ShareSettings {
        ShareSettings {
            bearer_token: self.bearer_token.clone(),
            max_sessions: self.max_share_sessions,
            limits: SessionLimitsConfig {
                buffer_secs: self.audio_buffer_seconds,
                buffer_max_chunks: BUFFER_MAX_CHUNKS,
                metadata_per_sec: self.share_metadata_rate,
                audio_per_sec: self.share_audio_rate,
            },
            session_timeout: Duration::from_secs_f64(self.session_timeout_minutes * 60.0),
            metadata_ttl: Duration::from_millis(self.share_metadata_ttl_ms),
            ended_retention: Duration::from_millis(self.share_ended_retention_ms),
        }
    }

    pub fn audio_burst(&self) -> Duration {
        Duration::from_millis(self.audio_burst_ms)
    }
}
