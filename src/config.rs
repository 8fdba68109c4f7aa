//! Server configuration: every option is an environment variable and a command-line flag.
//!
//! The names and defaults of the contract's variables (`PORT`, `SCROLL_TICK_INTERVAL`, ...)
//! are fixed by the wire contract (`protocol/PROTOCOL.md`); the rest are bandsync's explicit
//! limits.

use clap::Parser;
use std::time::Duration;

/// The shape of log lines (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the session engine runs (`ENGINE_PLACEMENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnginePlacement {
    /// `worker` when the runtime has one worker thread (one core), `thread` otherwise.
    Auto,
    /// A thread of its own, beside the runtime's workers.
    Thread,
    /// A task of the runtime: no context switch between the engine and the connections
    /// when they share one core.
    Worker,
}

/// Whether the engine's socket writes may be batched through io_uring (`IO_URING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoUringUse {
    /// Batched where the kernel allows io_uring; one `send` each where it does not.
    Auto,
    /// One `send` per socket write, always.
    Off,
}

/// bandsync: realtime sync server for bands.
#[derive(Debug, Clone, Parser)]
#[command(name = "bandsync", version, about)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3001)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `bandsync=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log lines as `text` (for people) or `json` (one object a line, with the fields of
    /// the enclosing spans: connection, request id; for a log collector).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Allowed CORS origin(s), comma-separated, or `*`.
    #[arg(long, env = "CORS_ORIGIN", default_value = "*")]
    pub cors_origin: String,
    /// Milliseconds between `scroll_tick`s of a playing session.
    #[arg(long, env = "SCROLL_TICK_INTERVAL", default_value_t = 16)]
    pub scroll_tick_interval: u64,
    /// How late a scheduled command's `at` may be and still apply (at once), ms; later is
    /// refused with `INVALID_SCHEDULE`.
    #[arg(long, env = "SCHEDULE_PAST_TOLERANCE_MS", default_value_t = 50)]
    pub schedule_past_tolerance_ms: u64,
    /// How far ahead a transport change may be scheduled, ms.
    #[arg(long, env = "SCHEDULE_MAX_AHEAD_MS", default_value_t = 60_000)]
    pub schedule_max_ahead_ms: u64,
    /// The least notice a quantized change (`quantum`) gives before its bar, ms.
    #[arg(long, env = "SCHEDULE_QUANTUM_LEAD_MS", default_value_t = 100)]
    pub schedule_quantum_lead_ms: u64,
    /// Batching window for incoming events, ms (0: process every event at once).
    #[arg(long, env = "BATCH_INTERVAL_MS", default_value_t = 5)]
    pub batch_interval_ms: u64,
    /// Most events processed in one batch.
    #[arg(long, env = "MAX_EVENT_BATCH_SIZE", default_value_t = 100)]
    pub max_event_batch_size: usize,
    /// Rate-limit window per socket, ms.
    #[arg(long, env = "RATE_LIMIT_WINDOW_MS", default_value_t = 1000)]
    pub rate_limit_window_ms: u64,
    /// Events allowed per socket per window.
    #[arg(long, env = "RATE_LIMIT_MAX_REQUESTS", default_value_t = 100)]
    pub rate_limit_max_requests: u32,
    /// Rate-limited events a socket may send, with no quiet window between them, before it
    /// is closed with 1008.
    #[arg(long, env = "RATE_LIMIT_CLOSE_AFTER", default_value_t = 50)]
    pub rate_limit_close_after: u32,
    /// WebSocket ping interval, ms.
    #[arg(long, env = "SOCKET_PING_INTERVAL", default_value_t = 2500)]
    pub socket_ping_interval: u64,
    /// Close a WebSocket that sent nothing (no pong, no frame) for this long, ms.
    #[arg(long, env = "SOCKET_PING_TIMEOUT", default_value_t = 5000)]
    pub socket_ping_timeout: u64,
    /// Redis URL (`redis://host:port/db`): instances sharing it serve one set of sessions
    /// (unset: this process alone, in memory).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// How often the metrics history closes a rollup, ms (a minute; shorter for tests).
    #[arg(long, env = "METRICS_HISTORY_INTERVAL_MS", default_value_t = 60_000)]
    pub metrics_history_interval_ms: u64,
    /// Prefix of every Redis key and channel, so clusters can share a Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "bandsync")]
    pub redis_prefix: String,
    /// How long a dropped client may resume its identity and role, ms.
    #[arg(long, env = "RECOVERY_WINDOW_MS", default_value_t = 30_000)]
    pub recovery_window_ms: u64,
    /// How long a session outlives its last member or listener, ms.
    #[arg(long, env = "SESSION_RETENTION_MS", default_value_t = 300_000)]
    pub session_retention_ms: u64,
    /// Most WebSocket + SSE connections at once; more get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Most sessions at once; joining a new one beyond it gets `SESSION_LIMIT`.
    #[arg(long, env = "MAX_SYNC_SESSIONS", default_value_t = 10_000)]
    pub max_sync_sessions: usize,
    /// Most session records kept for their retention window (live sessions' included);
    /// saving one more forgets the one saved longest ago.
    #[arg(long, env = "MAX_RETAINED_SESSIONS", default_value_t = 10_000)]
    pub max_retained_sessions: usize,
    /// Most members (WebSocket) plus listeners (SSE) in one session.
    #[arg(long, env = "MAX_SESSION_MEMBERS", default_value_t = 20_000)]
    pub max_session_members: usize,
    /// Largest text frame handled as an event, bytes; larger ones get `INVALID_MESSAGE`.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    pub max_message_bytes: usize,
    /// Hard cap on any incoming WebSocket frame or message, bytes; larger closes with 1009.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// A message (all its fragments, or the rest of its only frame) must arrive within this
    /// many ms of its first byte; otherwise the socket closes with 4003. Checked at each
    /// ping, so it may fire up to `SOCKET_PING_INTERVAL` later.
    #[arg(long, env = "MESSAGE_TIMEOUT_MS", default_value_t = 10_000)]
    pub message_timeout_ms: u64,
    /// Bytes the whole server may hold in partially received WebSocket messages (assembled
    /// fragments, inflated output, inflate state); a connection that needs more is closed
    /// with 1013 (try again later).
    #[arg(long, env = "PARTIAL_MESSAGE_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub partial_message_budget_bytes: usize,
    /// Frames a client's outbound queue may hold before it is disconnected as slow.
    #[arg(long, env = "OUTBOX_MAX_FRAMES", default_value_t = 1024)]
    pub outbox_max_frames: usize,
    /// Bytes a client's outbound queue may hold before it is disconnected as slow.
    #[arg(long, env = "OUTBOX_MAX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub outbox_max_bytes: usize,
    /// Audio frames a receiver's queue may hold; older ones are dropped (counted) beyond it.
    #[arg(long, env = "OUTBOX_MAX_AUDIO_FRAMES", default_value_t = 64)]
    pub outbox_max_audio_frames: usize,
    /// Where the session engine runs: `thread` (its own), `worker` (a task of the async
    /// runtime) or `auto` (`worker` on one core, where the two would take turns on it).
    #[arg(long, env = "ENGINE_PLACEMENT", value_enum, default_value_t = EnginePlacement::Auto)]
    pub engine_placement: EnginePlacement,
    /// How the engine writes a fan-out into its sockets: `auto` submits them in batches
    /// through io_uring where the kernel allows it (a fifth less CPU a send), `off` makes
    /// one `send` each.
    #[arg(long, env = "IO_URING", value_enum, default_value_t = IoUringUse::Auto)]
    pub io_uring: IoUringUse,
    /// Capacity of the queue from connections to the session engine, events.
    #[arg(long, env = "ENGINE_QUEUE_CAPACITY", default_value_t = 16_384)]
    pub engine_queue_capacity: usize,
    /// Members listed in a `snapshot` at most (counts in `room_stats` stay exact).
    /// (100: a listing of 1000 made every join into a big room cost ~32 KB, O(N^2) in all.)
    #[arg(long, env = "SNAPSHOT_MEMBER_LIMIT", default_value_t = 100)]
    pub snapshot_member_limit: usize,
    /// Minimum spacing of `room_stats` per session, ms.
    #[arg(long, env = "ROOM_STATS_INTERVAL_MS", default_value_t = 250)]
    pub room_stats_interval_ms: u64,
    /// State events per session kept for SSE `Last-Event-ID` resume.
    #[arg(long, env = "SSE_HISTORY", default_value_t = 512)]
    pub sse_history: usize,
    /// State versions per session kept for WebSocket resume with `lastVersion`: a client
    /// that resumes within the recovery window gets the `state_update`s it missed replayed,
    /// if it missed at most this many (else a snapshot alone). 0 turns replay off. A replay
    /// is also held to half of OUTBOX_MAX_FRAMES and OUTBOX_MAX_BYTES, since it is queued
    /// at once.
    #[arg(long, env = "RESUME_HISTORY", default_value_t = 128)]
    pub resume_history: usize,
    /// SSE keep-alive comment interval, ms.
    #[arg(long, env = "SSE_KEEPALIVE_MS", default_value_t = 15_000)]
    pub sse_keepalive_ms: u64,
    /// How long shutdown waits for connections to close, ms.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 5_000)]
    pub shutdown_timeout_ms: u64,
    /// Largest HTTP request body accepted, bytes.
    #[arg(long, env = "MAX_HTTP_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_http_body_bytes: u64,
    /// Negotiate permessage-deflate (RFC 7692) on `/ws` with clients that offer it
    /// (`true`/`false`, also `on`/`off`, `1`/`0`). Off: every frame goes out plain.
    #[arg(
        long,
        env = "WS_DEFLATE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub ws_deflate: bool,
    /// Server messages longer than this many bytes are compressed for clients that
    /// negotiated permessage-deflate; shorter ones (ticks, most replies) go out plain,
    /// since deflate barely shrinks them and costs CPU on every broadcast.
    #[arg(long, env = "COMPRESSION_THRESHOLD", default_value_t = 1024)]
    pub compression_threshold: usize,
    /// The Music Share relay (`/api/share/...`).
    #[command(flatten)]
    pub share: crate::share::config::ShareConfig,
    /// Repository streams and the GitHub webhook (`src/repo`).
    #[command(flatten)]
    pub repo: crate::repo::config::RepoConfig,
    /// The Stream Manager: stream control, layers, assets (`src/stream_manager`).
    #[command(flatten)]
    pub stream_manager: crate::stream_manager::config::StreamManagerConfig,
    /// Timeouts, connection caps and per-address limits (`src/limits`).
    #[command(flatten)]
    pub limits: crate::limits::config::LimitsConfig,
    /// The monitor: `METRICS_INTERVAL`, `SYNC_TARGET_LATENCY` and the alert thresholds
    /// (`src/ops`).
    #[command(flatten)]
    pub ops: crate::ops::config::OpsConfig,

    // Access control (src/auth). Unset: the open mode, anyone may join any session.
    /// Authenticated mode: HS256 secret that signs session tokens (at least 32 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Authenticated mode: RS256 or ES256 (P-256) public key that verifies session tokens,
    /// as inline PEM (starting `-----BEGIN`) or the path of a PEM file.
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,
    /// Clock skew tolerated on a token's `exp` (and `nbf`), seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
}

impl Config {
    /// The defaults, as if started with no flags and no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["bandsync"])
    }

    /// Checks values clap cannot: ranges that would make the server misbehave.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("SCROLL_TICK_INTERVAL", self.scroll_tick_interval),
            ("RATE_LIMIT_WINDOW_MS", self.rate_limit_window_ms),
            (
                "RATE_LIMIT_MAX_REQUESTS",
                u64::from(self.rate_limit_max_requests),
            ),
            ("SOCKET_PING_INTERVAL", self.socket_ping_interval),
            ("SOCKET_PING_TIMEOUT", self.socket_ping_timeout),
            ("MAX_EVENT_BATCH_SIZE", self.max_event_batch_size as u64),
            ("OUTBOX_MAX_FRAMES", self.outbox_max_frames as u64),
            ("ENGINE_QUEUE_CAPACITY", self.engine_queue_capacity as u64),
            ("MAX_CONNECTIONS", self.max_connections as u64),
            ("MAX_RETAINED_SESSIONS", self.max_retained_sessions as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.schedule_max_ahead_ms == 0
            || self.schedule_quantum_lead_ms >= self.schedule_max_ahead_ms
        {
            // A quantized change could never be scheduled.
            return Err("SCHEDULE_MAX_AHEAD_MS must exceed SCHEDULE_QUANTUM_LEAD_MS".into());
        }
        self.share.validate()?;
        self.repo.validate()?;
        self.stream_manager.validate()?;
        self.ops.validate()?;
        if self.limits.idle_timeout_ms <= self.repo.repo_heartbeat_ms {
            // A listener between two heartbeats would be cut as idle.
            return Err("IDLE_TIMEOUT_MS must exceed REPO_HEARTBEAT_MS".into());
        }
        if self.repo.repo_idle_timeout_ms <= self.repo.repo_heartbeat_ms {
            return Err("REPO_IDLE_TIMEOUT_MS must exceed REPO_HEARTBEAT_MS".into());
        }
        self.limits.validate(self.sse_keepalive_ms)?;
        if self.max_message_bytes > self.max_frame_bytes {
            return Err("MAX_MESSAGE_BYTES must not exceed MAX_FRAME_BYTES".into());
        }
        if self.partial_message_budget_bytes < self.max_frame_bytes {
            // One largest message must fit, or no client could ever send one.
            return Err("PARTIAL_MESSAGE_BUDGET_BYTES must be at least MAX_FRAME_BYTES".into());
        }
        if self.message_timeout_ms == 0 {
            return Err("MESSAGE_TIMEOUT_MS must be greater than 0".into());
        }
        if self.ws_deflate && self.compression_threshold >= self.outbox_max_bytes {
            // A message that large could never be queued, so nothing would be compressed.
            return Err(
                "COMPRESSION_THRESHOLD must be below OUTBOX_MAX_BYTES (or set WS_DEFLATE=false)"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.scroll_tick_interval)
    }
    pub fn schedule_limits(&self) -> bandsync_protocol::schedule::ScheduleLimits {
        bandsync_protocol::schedule::ScheduleLimits {
            past_tolerance_ms: self.schedule_past_tolerance_ms as f64,
            max_ahead_ms: self.schedule_max_ahead_ms as f64,
            quantum_lead_ms: self.schedule_quantum_lead_ms as f64,
        }
    }
    pub fn batch_interval(&self) -> Duration {
        Duration::from_millis(self.batch_interval_ms)
    }
    pub fn rate_limit_window(&self) -> Duration {
        Duration::from_millis(self.rate_limit_window_ms)
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.socket_ping_interval)
    }
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.socket_ping_timeout)
    }
    pub fn recovery_window(&self) -> Duration {
        Duration::from_millis(self.recovery_window_ms)
    }
    pub fn session_retention(&self) -> Duration {
        Duration::from_millis(self.session_retention_ms)
    }
    pub fn room_stats_interval(&self) -> Duration {
        Duration::from_millis(self.room_stats_interval_ms)
    }
    pub fn sse_keepalive(&self) -> Duration {
        Duration::from_millis(self.sse_keepalive_ms)
    }
    pub fn message_timeout(&self) -> Duration {
        Duration::from_millis(self.message_timeout_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::defaults();
        assert_eq!(c.port, 3001);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.scroll_tick_interval, 16);
        assert_eq!(c.batch_interval_ms, 5);
        assert_eq!(c.max_event_batch_size, 100);
        assert_eq!(c.rate_limit_window_ms, 1000);
        assert_eq!(c.rate_limit_max_requests, 100);
        assert_eq!(c.socket_ping_interval, 2500);
        assert_eq!(c.socket_ping_timeout, 5000);
        assert!(c.redis_url.is_none());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(
            Config::parse_from(["bandsync", "--log-format", "json"]).log_format,
            LogFormat::Json
        );
        assert!(Config::try_parse_from(["bandsync", "--log-format", "xml"]).is_err());
        assert!(c.ws_deflate);
        assert_eq!(c.compression_threshold, 1024);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn flags_override_and_bad_values_are_refused() {
        let c = Config::parse_from(["bandsync", "--port", "0", "--scroll-tick-interval", "10"]);
        assert_eq!(c.port, 0);
        assert_eq!(c.scroll_tick_interval, 10);
        let c = Config::parse_from(["bandsync", "--scroll-tick-interval", "0"]);
        assert!(c.validate().unwrap_err().contains("SCROLL_TICK_INTERVAL"));
        let c = Config::parse_from(["bandsync", "--schedule-max-ahead-ms", "100"]);
        assert!(c.validate().unwrap_err().contains("SCHEDULE_MAX_AHEAD_MS"));
    }

    #[test]
    fn the_open_mode_is_the_default_and_jwt_options_parse() {
        let c = Config::defaults();
        assert!(c.jwt_secret.is_none() && c.jwt_public_key.is_none());
        assert_eq!(c.jwt_leeway_secs, 30);
        let c = Config::parse_from(["bandsync", "--jwt-secret", "s", "--jwt-leeway-secs", "5"]);
        assert_eq!(c.jwt_secret.as_deref(), Some("s"));
        assert_eq!(c.jwt_leeway_secs, 5);
    }

    #[test]
    fn deflate_can_be_switched_off_and_its_threshold_is_checked() {
        for off in ["false", "off", "0"] {
            let c = Config::parse_from(["bandsync", "--ws-deflate", off]);
            assert!(!c.ws_deflate, "{off}");
        }
        let c = Config::parse_from(["bandsync", "--compression-threshold", "0"]);
        assert!(c.validate().is_ok());
        let c = Config::parse_from(["bandsync", "--compression-threshold", "4194304"]);
        assert!(c.validate().unwrap_err().contains("COMPRESSION_THRESHOLD"));
        let c = Config::parse_from([
            "bandsync",
            "--compression-threshold",
            "4194304",
            "--ws-deflate",
            "false",
        ]);
        assert!(c.validate().is_ok());
    }
}
