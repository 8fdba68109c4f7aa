//! Where stream documents are kept: files (one per stream, replaced atomically) without
//! Redis, or Redis with a compare-and-set on the version when several instances share
//! the streams.
//!
//! The manager serializes the writes of one stream on this instance (see
//! [`super::StreamManager::change`]), so the file store needs no version check of its own;
//! the Redis store checks it because other instances write too.

use super::document::StreamDoc;
use bandsync_protocol::stream_manager::StageEvent;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a commit did not happen.
#[derive(Debug)]
pub enum CommitError {
    /// Another instance committed first: reload and try again.
    Conflict,
    /// Creating the stream would pass `STREAM_MAX_STREAMS`.
    StreamLimit,
    Unavailable(String),
}

pub enum DocStore {
    /// Files under `STREAM_STATE_PATH`.
    Files(FileStore),
    Redis(Arc<crate::cluster::redis::stage::StageCluster>),
}

impl DocStore {
    /// The stored document of `key`, if any.
    pub async fn load(&self, key: &str) -> Result<Option<StreamDoc>, CommitError> {
        match self {
            // Every file was loaded at start: a key not cached has no document.
            DocStore::Files(_) => Ok(None),
            DocStore::Redis(cluster) => cluster.load(key).await,
        }
    }

    /// Stores `doc` (whose version is `expected + 1`) if the stored version is still
    /// `expected`, and tells the other instances (with the events to push).
    pub async fn commit(
        &self,
        key: &str,
        expected: u64,
        doc: &StreamDoc,
        events: &[StageEvent],
        max_streams: usize,
    ) -> Result<(), CommitError> {
        match self {
            DocStore::Files(files) => files.write(key, doc).await,
            DocStore::Redis(cluster) => {
                cluster
                    .commit(key, expected, doc, events, max_streams)
                    .await
            }
        }
    }

    /// Whether every document is held in the manager's cache (so it can count them).
    pub fn is_local(&self) -> bool {
        matches!(self, DocStore::Files(_))
    }
}

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating) `dir` and reads every stream document in it. A file that does not
    /// parse is logged and skipped, never fatal: one damaged stream must not stop a server.
    pub fn open(dir: &Path) -> std::io::Result<(FileStore, Vec<(String, StreamDoc)>)> {
        std::fs::create_dir_all(dir)?;
        let mut docs = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(key_of_file)
            else {
                continue;
            };
            match std::fs::read(&path).map(|bytes| serde_json::from_slice::<StreamDoc>(&bytes)) {
                Ok(Ok(doc)) => docs.push((key, doc)),
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable stream document")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable stream document")
                }
            }
        }
        Ok((
            FileStore {
                dir: dir.to_owned(),
            },
            docs,
        ))
    }

    /// Writes `doc` to a temporary file and renames it over the stream's file, so a crash
    /// leaves the old document or the new one, never half of one.
    async fn write(&self, key: &str, doc: &StreamDoc) -> Result<(), CommitError> {
        let bytes = serde_json::to_vec(doc).expect("documents always serialize");
        let path = self.dir.join(file_of_key(key));
        let temp = self.dir.join(format!(".{}.tmp", file_of_key(key)));
        let unavailable = |e: std::io::Error| {
            tracing::error!(error = %e, "writing a stream document failed");
            CommitError::Unavailable("the stream state could not be written".into())
        };
        tokio::fs::write(&temp, &bytes).await.map_err(unavailable)?;
        tokio::fs::rename(&temp, &path).await.map_err(unavailable)
    }
}

/// The file name of a stream: session ids may hold `/` and `.`, so they are hex-encoded.
fn file_of_key(key: &str) -> String {
    if key.is_empty() {
        return "default.json".into();
    }
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}.json")
}

fn key_of_file(name: &str) -> Option<String> {
    if name == "default.json" {
        return Some(String::new());
    }
    let hex = name.strip_prefix("s-")?.strip_suffix(".json")?;
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let key = String::from_utf8(bytes?).ok()?;
    bandsync_protocol::validate::session_id(&key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_never_climb() {
        for key in ["", "my-band", "owner/repo", "../x", "a.b_c"] {
            let name = file_of_key(key);
            assert!(!name.contains('/'), "{name}");
            if bandsync_protocol::validate::session_id(key).is_ok() || key.is_empty() {
                assert_eq!(key_of_file(&name).as_deref(), Some(key));
            }
        }
        assert_eq!(key_of_file("s-zz.json"), None);
        assert_eq!(key_of_file(".s-61.json.tmp"), None);
        assert_eq!(key_of_file("notes.txt"), None);
    }

    #[tokio::test]
    async fn documents_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("bandsync-store-{}", rand::random::<u64>()));
        let (store, docs) = FileStore::open(&dir).unwrap();
        assert!(docs.is_empty());
        let mut doc = StreamDoc::fresh(Some("owner/repo".into()), 1.0);
        doc.version = 3;
        store.write("owner/repo", &doc).await.unwrap();
        store.write("", &StreamDoc::fresh(None, 2.0)).await.unwrap();
        std::fs::write(dir.join("s-6e.json"), b"{not json").unwrap();
        let (_, mut docs) = FileStore::open(&dir).unwrap();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(docs.len(), 2, "the damaged file is skipped");
        assert_eq!(docs[1], ("owner/repo".to_string(), doc));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
