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
    /// parse, or whose name is not its stream's, is logged and skipped, never fatal: one
    /// damaged stream must not stop a server.
    pub fn open(dir: &Path) -> std::io::Result<(FileStore, Vec<(String, StreamDoc)>)> {
        std::fs::create_dir_all(dir)?;
        let mut docs = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<StreamDoc>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(doc) => {
                    let key = doc.session.clone().unwrap_or_default();
                    if file_of_key(&key) == name {
                        docs.push((key, doc));
                    } else {
                        tracing::warn!(path = %path.display(), "skipping a stream document stored under another stream's name");
                    }
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping an unreadable stream document")
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

/// The file name of a stream: its session id's SHA-256 (ids may hold `/` and `.`, and 128
/// of them hex-encoded would pass the 255 bytes a file name may have). The document holds
/// the id itself.
fn file_of_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    if key.is_empty() {
        return "default.json".into();
    }
    let digest = Sha256::digest(key.as_bytes());
    format!("s-{}.json", hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_short_and_never_climb() {
        let longest = "a/".repeat(64);
        for key in ["", "my-band", "owner/repo", "../x", longest.as_str()] {
            let name = file_of_key(key);
            assert!(!name.contains('/') && name.len() <= 72, "{name}");
        }
        assert_ne!(file_of_key("a"), file_of_key("b"));
    }

    #[tokio::test]
    async fn documents_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("bandsync-store-{}", rand::random::<u64>()));
        let (store, docs) = FileStore::open(&dir).unwrap();
        assert!(docs.is_empty());
        let session = "owner/".to_string() + &"r".repeat(122);
        let mut doc = StreamDoc::fresh(Some(session.clone()), 1.0);
        doc.version = 3;
        store.write(&session, &doc).await.unwrap();
        store.write("", &StreamDoc::fresh(None, 2.0)).await.unwrap();
        std::fs::write(dir.join("s-6e.json"), b"{not json").unwrap();
        let misplaced = serde_json::to_vec(&StreamDoc::fresh(Some("other".into()), 3.0)).unwrap();
        std::fs::write(dir.join("s-00.json"), misplaced).unwrap();
        let (_, mut docs) = FileStore::open(&dir).unwrap();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            docs.len(),
            2,
            "the damaged and the misplaced files are skipped"
        );
        assert_eq!(docs[1], (session, doc));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
