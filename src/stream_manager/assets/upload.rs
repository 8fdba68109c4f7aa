//! One upload's temporary file, from its first accepted byte to its commit.
//!
//! The bytes are reserved against the storage total *before* they are written, so the
//! directory never holds more than the cap even with many uploads racing. If the upload
//! ends any way but `commit` (a refusal, an I/O error, or its future dropped because the
//! client went away), `Drop` removes every file it made and gives its reservation back.

use super::{new_asset_id, AssetError, AssetStore, StoredAsset, TEMP_PREFIX};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;

pub(super) struct Upload<'a> {
    store: &'a AssetStore,
    mime: &'static str,
    file: tokio::fs::File,
    hasher: Sha256,
    /// Bytes written, all of them reserved in `store.used`.
    size: u64,
    /// The files this upload made; all removed by `Drop` unless `committed`.
    temp_data: PathBuf,
    temp_meta: PathBuf,
    final_data: Option<PathBuf>,
    committed: bool,
}

impl<'a> Upload<'a> {
    /// Creates the temporary file `.upload-<random>` in the store's directory (same file
    /// system, so the commit is a rename).
    pub(super) async fn create(
        store: &'a AssetStore,
        mime: &'static str,
    ) -> Result<Upload<'a>, AssetError> {
        let token = format!("{TEMP_PREFIX}{:032x}", rand::random::<u128>());
        let temp_data = store.dir.join(&token);
        let temp_meta = store.dir.join(format!("{token}.json"));
        // create_new: never write through a file (or link) that is already there.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_data)
            .await?;
        Ok(Upload {
            store,
            mime,
            file,
            hasher: Sha256::new(),
            size: 0,
            temp_data,
            temp_meta,
            final_data: None,
            committed: false,
        })
    }

    /// Reserves `chunk`'s bytes against the storage total, then writes and hashes them.
    pub(super) async fn write(&mut self, chunk: &[u8]) -> Result<(), AssetError> {
        let len = chunk.len() as u64;
        reserve(self.store, len)?;
        // Counted before the write: if it fails or the future is dropped mid-write, `Drop`
        // releases exactly what was reserved.
        self.size += len;
        self.file.write_all(chunk).await?;
        self.hasher.update(chunk);
        Ok(())
    }

    /// Makes the upload a stored asset under a fresh id: flushes the data to disk, writes
    /// the metadata to a temporary file, renames the data, then the metadata. `info` needs
    /// both, so a crash at any step never shows an asset without its metadata; what it
    /// leaves is swept by `AssetStore::open`.
    pub(super) async fn commit(mut self, name: String) -> Result<StoredAsset, AssetError> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let id = new_asset_id();
        let asset = StoredAsset {
            id: id.clone(),
            name,
            mime: self.mime.to_owned(),
            size: self.size,
            sha256: format!("{:x}", self.hasher.clone().finalize()),
            created_at: crate::clock::ServerClock::shared().now_ms(),
        };
        let meta = serde_json::to_vec(&asset).map_err(std::io::Error::other)?;
        let mut meta_file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.temp_meta)
            .await?;
        meta_file.write_all(&meta).await?;
        meta_file.sync_all().await?;
        drop(meta_file);

        let final_data = self.store.data_path(&id);
        self.final_data = Some(final_data.clone());
        tokio::fs::rename(&self.temp_data, &final_data).await?;
        tokio::fs::rename(&self.temp_meta, self.store.meta_path(&id)).await?;
        self.committed = true;
        self.store.count.fetch_add(1, Ordering::AcqRel);
        Ok(asset)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Blocking removes in Drop: a few unlink calls on small paths, and the only way to
        // clean up after a future that is dropped rather than polled to an error. On Unix an
        // unlinked file still being written by tokio's blocking pool just disappears.
        for path in [
            Some(&self.temp_data),
            Some(&self.temp_meta),
            self.final_data.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = std::fs::remove_file(path);
        }
        self.store.used.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Adds `len` bytes to the store's total if the result stays within the cap. A
/// compare-and-swap loop rather than add-then-check: another upload never sees a total
/// that was briefly over the cap and refused because of it.
fn reserve(store: &AssetStore, len: u64) -> Result<(), AssetError> {
    let cap = store.limits.max_total_bytes;
    store
        .used
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(len).filter(|total| *total <= cap)
        })
        .map(drop)
        .map_err(|_| AssetError::StorageFull)
}
