//! The Stream Manager's asset store: uploaded images and glTF models on disk, under
//! `ASSET_STORAGE_PATH`.
//!
//! What it guarantees, and where:
//! - `form`: a `multipart/form-data` upload is parsed as it streams in, with every limit
//!   (file size, whole body, type by magic number, storage total) enforced before a byte
//!   past it is written; `magic` decides the type.
//! - `upload`: the temporary file of one upload. It is removed on every failure, including
//!   the request future being dropped when the client disconnects, and its reserved bytes
//!   are given back; a committed asset appears as its data file and metadata together.
//! - `serve`: `GET|HEAD .../content`, streamed, with validators for caching.
//!
//! Only a server-made id (`ast_` + 32 hex digits) ever becomes a path: no part of a
//! client's file name reaches the file system. The store knows nothing of streams,
//! sessions or HTTP routing; the routes map its answers onto the contract.

mod form;
mod late_end;
pub mod magic;
mod serve;
mod upload;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

pub use magic::is_image;

/// Limits, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct AssetLimits {
    /// Most bytes of file content one upload may carry (`MAX_UPLOAD_SIZE`).
    pub max_upload_bytes: u64,
    /// Most bytes all stored assets may take together (`ASSET_STORAGE_MAX_MB`).
    pub max_total_bytes: u64,
    /// Most `receive` calls running at once; one more is `503 UPLOADS_BUSY`.
    pub max_uploads_in_flight: usize,
}

/// What an upload stored; also the metadata file `<id>.json` beside the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAsset {
    pub id: String,
    /// For display only: the client's name, cleaned (see `form::display_name`).
    pub name: String,
    /// Detected from the magic number, never from the client.
    pub mime: String,
    pub size: u64,
    /// Hex SHA-256 of the content: the `ETag`.
    pub sha256: String,
    /// Server ms.
    pub created_at: f64,
}

/// Why an upload was refused; each variant maps to one status and contract code.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("the file is larger than the upload limit")]
    TooLarge,
    #[error("the file is not a PNG, JPEG, GIF, WebP image or a binary glTF model")]
    UnsupportedType,
    #[error("uploads must be multipart/form-data")]
    UnsupportedMediaType,
    #[error("invalid multipart body: {0}")]
    Multipart(String),
    #[error("asset storage is full")]
    StorageFull,
    #[error("too many uploads at once, try again shortly")]
    Busy,
    /// The message stays generic: an I/O error may carry a server path.
    #[error("the asset could not be stored")]
    Io(#[from] io::Error),
}

impl AssetError {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            AssetError::TooLarge => S::PAYLOAD_TOO_LARGE,
            AssetError::UnsupportedType | AssetError::UnsupportedMediaType => {
                S::UNSUPPORTED_MEDIA_TYPE
            }
            AssetError::Multipart(_) => S::BAD_REQUEST,
            AssetError::StorageFull => S::INSUFFICIENT_STORAGE,
            AssetError::Busy => S::SERVICE_UNAVAILABLE,
            AssetError::Io(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AssetError::TooLarge => "PAYLOAD_TOO_LARGE",
            AssetError::UnsupportedType => "UNSUPPORTED_ASSET_TYPE",
            AssetError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            AssetError::Multipart(_) => "INVALID_MULTIPART",
            AssetError::StorageFull => "STORAGE_FULL",
            AssetError::Busy => "UPLOADS_BUSY",
            AssetError::Io(_) => "STORAGE_ERROR",
        }
    }

    /// The contract's JSON error response for this refusal.
    pub fn response(&self) -> http::Response<crate::http::errors::Body> {
        crate::http::errors::error_response(self.status(), self.code(), &self.to_string())
    }
}

/// Checks an asset id's shape (`ast_` + 32 lowercase hex); ids are the only thing that
/// becomes a path.
pub fn valid_asset_id(id: &str) -> bool {
    id.len() == 36
        && id.starts_with("ast_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh id: 128 random bits, so the content URL is a capability.
fn new_asset_id() -> String {
    format!("ast_{:032x}", rand::random::<u128>())
}

/// Temporary files (an upload in progress, and its metadata before the commit) start with
/// this; `open` sweeps the ones a crash left behind.
const TEMP_PREFIX: &str = ".upload-";

/// How old a leftover must be before `open` removes it. Instances may share the directory
/// (a shared volume, section 17 "Many instances"): a fresh temporary file may be another
/// instance's upload in progress, and a data file without metadata may be between the two
/// renames of its commit. Nothing stalls that long: the server's idle timeouts end a
/// stalled body well before.
const LEFTOVER_AGE: Duration = Duration::from_secs(15 * 60);

/// The biggest metadata file `info` reads; ours are a few hundred bytes.
const MAX_META_BYTES: u64 = 16 * 1024;

/// The asset files of one server: the data and metadata under `dir`, the running total of
/// stored bytes, and the gate on concurrent uploads. Counters are atomics (no lock is held
/// across the file I/O), so one `AssetStore` is shared by every request.
#[derive(Debug)]
pub struct AssetStore {
    dir: PathBuf,
    limits: AssetLimits,
    /// Bytes of stored files plus bytes reserved by uploads in progress; never above
    /// `limits.max_total_bytes` (see `upload::reserve`).
    used: AtomicU64,
    count: AtomicU64,
    uploads: Semaphore,
}

impl AssetStore {
    /// Creates `dir` if missing, removes leftover temporary files of an interrupted upload
    /// (and half-committed files), and sums the stored files' sizes (the storage-used figure).
    pub fn open(dir: impl Into<PathBuf>, limits: AssetLimits) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let (used, count) = scan(&dir, SystemTime::now())?;
        Ok(AssetStore {
            dir,
            limits,
            used: AtomicU64::new(used),
            count: AtomicU64::new(count),
            uploads: Semaphore::new(limits.max_uploads_in_flight),
        })
    }

    /// Streams a multipart/form-data body to a temporary file in the same directory,
    /// enforcing every limit while it arrives; on success renames it to its final name and
    /// writes its metadata; on any failure nothing stays on disk. `headers` are the
    /// request's (Content-Type with boundary).
    pub async fn receive<B>(
        &self,
        headers: &http::HeaderMap,
        body: B,
    ) -> Result<StoredAsset, AssetError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // Held until the upload is stored or refused, dropped with the future otherwise.
        let _permit = self.uploads.try_acquire().map_err(|_| AssetError::Busy)?;
        form::receive(self, headers, body).await
    }

    /// The stored metadata of `id` (None when there is no such asset, or `id` is not an id).
    pub async fn info(&self, id: &str) -> Option<StoredAsset> {
        if !valid_asset_id(id) {
            return None;
        }
        let meta_path = self.meta_path(id);
        let meta_len = tokio::fs::metadata(&meta_path).await.ok()?.len();
        if meta_len > MAX_META_BYTES || tokio::fs::metadata(self.data_path(id)).await.is_err() {
            return None;
        }
        let bytes = tokio::fs::read(&meta_path).await.ok()?;
        let asset: StoredAsset = serde_json::from_slice(&bytes).ok()?;
        (asset.id == id).then_some(asset)
    }

    /// Deletes the file and its metadata; frees its bytes from the total. The metadata goes
    /// first, so a crash in between leaves an orphan data file (swept by `open`), never
    /// metadata pointing at nothing. Removing an asset that is not there is not an error.
    pub async fn remove(&self, id: &str) -> io::Result<()> {
        if !valid_asset_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an asset id",
            ));
        }
        let data = self.data_path(id);
        let size = match tokio::fs::metadata(&data).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        ignore_missing(tokio::fs::remove_file(self.meta_path(id)).await)?;
        match tokio::fs::remove_file(&data).await {
            // Only the call that removed the file gives its bytes back: two concurrent
            // removes of one asset must not free them twice.
            Ok(()) => {
                self.used.fetch_sub(size, Ordering::AcqRel);
                self.count.fetch_sub(1, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => ignore_missing(Err(e)),
        }
    }

    /// Bytes of stored files (plus those reserved by uploads in progress).
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Stored assets.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> AssetLimits {
        self.limits
    }

    fn data_path(&self, id: &str) -> PathBuf {
        debug_assert!(valid_asset_id(id));
        self.dir.join(id)
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        debug_assert!(valid_asset_id(id));
        self.dir.join(format!("{id}.json"))
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Sums the stored assets of `dir` (a data file with its metadata) and removes what an
/// interrupted upload, commit or removal left: temporary files, a data file without
/// metadata, metadata without data, once older than [`LEFTOVER_AGE`]. Files of any other
/// name are left alone.
fn scan(dir: &Path, now: SystemTime) -> io::Result<(u64, u64)> {
    let (mut used, mut count) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let stale = meta
            .modified()
            .ok()
            .and_then(|at| now.duration_since(at).ok())
            .is_none_or(|age| age >= LEFTOVER_AGE);
        let leftover = if name.starts_with(TEMP_PREFIX) {
            true
        } else if valid_asset_id(&name) {
            if dir.join(format!("{name}.json")).is_file() {
                used += meta.len();
                count += 1;
                false
            } else {
                true
            }
        } else if let Some(id) = name.strip_suffix(".json").filter(|id| valid_asset_id(id)) {
            !dir.join(id).is_file()
        } else {
            false
        };
        if leftover && stale {
            ignore_missing(std::fs::remove_file(entry.path()))?;
        }
    }
    Ok((used, count))
}
