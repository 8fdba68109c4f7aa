//! Options of the Stream Manager (`/stream/status`, `/stream/layers`, `/stream/assets`,
//! `/ws/stream`).

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct StreamManagerConfig {
    /// Where uploaded assets are stored (created if missing). Instances behind one Redis
    /// share it (a shared volume): the asset metadata is in Redis, the bytes are here.
    #[arg(long, env = "ASSET_STORAGE_PATH", default_value = "data/assets")]
    pub asset_storage_path: PathBuf,
    /// Where stream documents are written without `REDIS_URL` (one file per stream), so
    /// state, layers and asset metadata survive a restart.
    #[arg(long, env = "STREAM_STATE_PATH", default_value = "data/streams")]
    pub stream_state_path: PathBuf,
    /// Largest asset file accepted, bytes.
    #[arg(long, env = "MAX_UPLOAD_SIZE", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_size: u64,
    /// All stored assets together at most, MB; an upload past it is `507 STORAGE_FULL`.
    #[arg(long, env = "ASSET_STORAGE_MAX_MB", default_value_t = 1024)]
    pub asset_storage_max_mb: u64,
    /// Uploads received at once, server-wide; more are `503 UPLOADS_BUSY`.
    #[arg(long, env = "MAX_CONCURRENT_UPLOADS", default_value_t = 8)]
    pub max_concurrent_uploads: usize,
    /// Streams the server keeps (each written stream is one); more are `503 STREAM_LIMIT`.
    #[arg(long, env = "STREAM_MAX_STREAMS", default_value_t = 1000)]
    pub stream_max_streams: usize,
    /// Layers per stream.
    #[arg(long, env = "STREAM_MAX_LAYERS", default_value_t = 64)]
    pub stream_max_layers: usize,
    /// Assets per stream.
    #[arg(long, env = "STREAM_MAX_ASSETS", default_value_t = 200)]
    pub stream_max_assets: usize,
    /// Stream Manager REST requests per client address per window (the seed's
    /// `RATE_LIMIT.max`).
    #[arg(long, env = "STREAM_RATE_LIMIT_MAX", default_value_t = 300)]
    pub stream_rate_limit_max: u32,
    /// The window of `STREAM_RATE_LIMIT_MAX`, ms (the seed's `RATE_LIMIT.windowMs`).
    #[arg(long, env = "STREAM_RATE_LIMIT_WINDOW_MS", default_value_t = 60_000)]
    pub stream_rate_limit_window_ms: u64,
    /// Events a stream client may have waiting; one that falls further behind gets a fresh
    /// `streamState` instead.
    #[arg(long, env = "STREAM_CLIENT_QUEUE", default_value_t = 256)]
    pub stream_client_queue: usize,
    /// Largest preview frame (its base64 text), bytes.
    #[arg(long, env = "STREAM_PREVIEW_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub stream_preview_max_bytes: usize,
}

impl StreamManagerConfig {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("MAX_UPLOAD_SIZE", self.max_upload_size),
            ("ASSET_STORAGE_MAX_MB", self.asset_storage_max_mb),
            ("MAX_CONCURRENT_UPLOADS", self.max_concurrent_uploads as u64),
            ("STREAM_MAX_STREAMS", self.stream_max_streams as u64),
            ("STREAM_MAX_LAYERS", self.stream_max_layers as u64),
            ("STREAM_RATE_LIMIT_MAX", self.stream_rate_limit_max as u64),
            (
                "STREAM_RATE_LIMIT_WINDOW_MS",
                self.stream_rate_limit_window_ms,
            ),
            ("STREAM_CLIENT_QUEUE", self.stream_client_queue as u64),
            (
                "STREAM_PREVIEW_MAX_BYTES",
                self.stream_preview_max_bytes as u64,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.asset_storage_path.as_os_str().is_empty() {
            return Err("ASSET_STORAGE_PATH must name a directory".into());
        }
        if self.stream_state_path.as_os_str().is_empty() {
            return Err("STREAM_STATE_PATH must name a directory".into());
        }
        if self.stream_preview_max_bytes > 16 * 1024 * 1024 {
            return Err("STREAM_PREVIEW_MAX_BYTES is at most 16 MiB".into());
        }
        Ok(())
    }

    pub fn rate_window(&self) -> Duration {
        Duration::from_millis(self.stream_rate_limit_window_ms)
    }

    pub fn max_storage_bytes(&self) -> u64 {
        self.asset_storage_max_mb.saturating_mul(1024 * 1024)
    }
}
