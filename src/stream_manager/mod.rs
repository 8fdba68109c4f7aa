//! The Stream Manager: the scene of a band's live stream (state machine, layers, assets)
//! and the clients that render it (`protocol/PROTOCOL.md`, section 17).
//!
//! Every write goes through [`StreamManager::change`]: one writer at a time per stream on
//! this instance, the pure [`document`] change, a commit to the store (files, or Redis with
//! a version check against the other instances), then the events, encoded once, to the
//! stream's clients here ([`hub`]), to the members of the sync session of the same id (the
//! engine), and through Redis to the other instances.

mod access;
pub mod assets;
pub mod config;
pub mod document;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod routes;
pub mod socket;
pub mod store;
mod upload;

use crate::engine::{EngineHandle, Inbound};
use crate::limits::rate::KeyedRate;
use crate::limits::AddrKey;
use crate::metrics::Metrics;
use assets::{AssetLimits, AssetStore};
use bandsync_protocol::stream_manager::StageEvent;
use config::StreamManagerConfig;
use document::{Action, DocLimits, StreamDoc};
use error::ManagerError;
use hub::{Pushed, StageHub};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::{CommitError, DocStore, FileStore};

/// Commits retried after another instance's write got in first.
const MAX_COMMIT_ATTEMPTS: usize = 8;
/// Client addresses the REST rate limiter tracks at most (the least recent are forgotten).
const TRACKED_ADDRESSES: usize = 100_000;

/// Which stream a request addresses: a sync session's, or the default one (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey(pub Option<String>);

impl StreamKey {
    /// The store's and the hub's key: the session id, `""` for the default stream (session
    /// ids are never empty).
    pub fn key(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    pub fn session(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

pub struct StreamManager {
    pub config: StreamManagerConfig,
    docs: Mutex<HashMap<String, Arc<StreamDoc>>>,
    /// One writer at a time per stream, in arrival order; entries leave with their last user.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The last version whose events went out from this instance, per written stream.
    pushed: Mutex<HashMap<String, u64>>,
    store: DocStore,
    pub assets: AssetStore,
    pub hub: Arc<StageHub>,
    /// `STREAM_RATE_LIMIT_MAX` per `STREAM_RATE_LIMIT_WINDOW_MS`, per client address.
    pub rate: KeyedRate<AddrKey>,
    pub metrics: Arc<Metrics>,
    engine: EngineHandle,
}

impl StreamManager {
    /// Opens the asset directory and the documents: from `STREAM_STATE_PATH`, or (with
    /// `cluster`) from Redis as they are asked for.
    pub fn open(
        config: &StreamManagerConfig,
        metrics: Arc<Metrics>,
        engine: EngineHandle,
        cluster: Option<Arc<crate::cluster::redis::stage::StageCluster>>,
    ) -> anyhow::Result<Arc<StreamManager>> {
        use anyhow::Context as _;
        let assets = AssetStore::open(
            &config.asset_storage_path,
            AssetLimits {
                max_upload_bytes: config.max_upload_size,
                max_total_bytes: config.max_storage_bytes(),
                max_uploads_in_flight: config.max_concurrent_uploads,
            },
        )
        .with_context(|| format!("ASSET_STORAGE_PATH {}", config.asset_storage_path.display()))?;
        let mut docs = HashMap::new();
        let store = match cluster {
            Some(cluster) => DocStore::Redis(cluster),
            None => {
                let (files, loaded) =
                    FileStore::open(&config.stream_state_path).with_context(|| {
                        format!("STREAM_STATE_PATH {}", config.stream_state_path.display())
                    })?;
                for (key, doc) in loaded {
                    docs.insert(key, Arc::new(doc));
                }
                DocStore::Files(files)
            }
        };
        let window = config.rate_window();
        let burst = config.stream_rate_limit_max;
        let manager = Arc::new(StreamManager {
            config: config.clone(),
            docs: Mutex::new(docs),
            writers: Mutex::default(),
            pushed: Mutex::default(),
            store,
            assets,
            hub: Arc::default(),
            rate: KeyedRate::new(burst, window / burst, TRACKED_ADDRESSES),
            metrics,
            engine,
        });
        manager.update_resource_gauges();
        Ok(manager)
    }

    fn limits(&self) -> DocLimits {
        DocLimits {
            max_layers: self.config.stream_max_layers,
            max_assets: self.config.stream_max_assets,
        }
    }

    /// The stream's document as committed (a fresh one when it was never written).
    pub async fn read(&self, stream: &StreamKey) -> Result<Arc<StreamDoc>, ManagerError> {
        if let Some(doc) = self.cached(stream.key()) {
            return Ok(doc);
        }
        match self.store.load(stream.key()).await {
            Ok(Some(doc)) => Ok(self.remember(stream.key(), Arc::new(doc))),
            Ok(None) => Ok(Arc::new(StreamDoc::fresh(
                stream.0.clone(),
                crate::http::errors::now_ms(),
            ))),
            Err(_) => Err(ManagerError::StoreUnavailable),
        }
    }

    fn cached(&self, key: &str) -> Option<Arc<StreamDoc>> {
        self.docs.lock().expect("docs lock").get(key).cloned()
    }

    /// Caches `doc` unless a newer version is cached already; returns the one kept.
    fn remember(&self, key: &str, doc: Arc<StreamDoc>) -> Arc<StreamDoc> {
        let mut docs = self.docs.lock().expect("docs lock");
        match docs.get(key) {
            Some(current) if current.version >= doc.version => current.clone(),
            _ => {
                docs.insert(key.to_owned(), doc.clone());
                doc
            }
        }
    }

    fn forget(&self, key: &str) {
        self.docs.lock().expect("docs lock").remove(key);
    }

    fn writer(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut writers = self.writers.lock().expect("writers lock");
        writers.entry(key.to_owned()).or_default().clone()
    }

    fn release_writer(&self, key: &str, writer: Arc<tokio::sync::Mutex<()>>) {
        let mut writers = self.writers.lock().expect("writers lock");
        drop(writer);
        if writers.get(key).is_some_and(|w| Arc::strong_count(w) == 1) {
            writers.remove(key);
        }
    }

    /// Applies `action` to the stream and commits it; on success every client of the
    /// stream (here, in the sync session, on other instances) is told, in version order.
    pub async fn change(
        &self,
        stream: &StreamKey,
        action: Action,
    ) -> Result<Arc<StreamDoc>, ManagerError> {
        let key = stream.key();
        let writer = self.writer(key);
        let result = {
            let _turn = writer.lock().await;
            self.change_in_turn(stream, action).await
        };
        self.release_writer(key, writer);
        if result.is_ok() {
            self.metrics.stream_manager.changes.inc();
        }
        result
    }

    async fn change_in_turn(
        &self,
        stream: &StreamKey,
        action: Action,
    ) -> Result<Arc<StreamDoc>, ManagerError> {
        let key = stream.key();
        let max_streams = self.config.stream_max_streams;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let current = self.read(stream).await?;
            if current.version == 0
                && self.store.is_local()
                && self.docs.lock().expect("docs lock").len() >= max_streams
            {
                return Err(ManagerError::StreamLimit(max_streams));
            }
            let mut next = (*current).clone();
            let now = crate::http::errors::now_ms();
            let events = next.apply(action.clone(), now, self.limits())?;
            match self
                .store
                .commit(key, current.version, &next, &events, max_streams)
                .await
            {
                Ok(()) => {
                    // A newer remote version may be cached already; the events still carry
                    // this commit's version (clients that saw the newer one skip them).
                    let committed = Arc::new(next);
                    self.remember(key, committed.clone());
                    self.publish(stream, &committed, events);
                    self.update_resource_gauges();
                    return Ok(committed);
                }
                Err(CommitError::Conflict) => self.forget(key),
                Err(CommitError::StreamLimit) => {
                    return Err(ManagerError::StreamLimit(max_streams))
                }
                Err(CommitError::Unavailable(message)) => {
                    tracing::warn!(%message, "a stream change was not committed");
                    return Err(ManagerError::StoreUnavailable);
                }
            }
        }
        Err(ManagerError::Contended)
    }

    /// A change committed by another instance: adopted if newer than ours, and pushed to
    /// this instance's clients (a fresh `streamState` when versions were skipped).
    pub fn receive_remote(&self, key: &str, doc: StreamDoc, events: Vec<StageEvent>) {
        let doc = Arc::new(doc);
        self.remember(key, doc.clone());
        let stream = StreamKey((!key.is_empty()).then(|| key.to_owned()));
        self.publish(&stream, &doc, events);
        self.update_resource_gauges();
    }

    /// Forgets every cached document (Redis came back: ours may be stale).
    pub fn forget_all(&self) {
        if !self.store.is_local() {
            self.docs.lock().expect("docs lock").clear();
        }
    }

    /// Encodes `events` once with this instance's counts and pushes them to the stream's
    /// clients here and to the members of the sync session of the same id.
    ///
    /// Versions reach this instance's clients in order, each once: a version already pushed
    /// is skipped (a remote change this instance committed first, or heard twice), and a
    /// gap (a version adopted from Redis after a lost compare-and-set, whose own events come
    /// later or never) is bridged with a `streamState` of `doc` instead of its events. The
    /// `pushed` lock is held across the push, so the writer and the Redis link cannot
    /// interleave two versions.
    fn publish(&self, stream: &StreamKey, doc: &StreamDoc, events: Vec<StageEvent>) {
        let key = stream.key();
        let mut pushed_versions = self.pushed.lock().expect("pushed lock");
        let last = pushed_versions
            .get(key)
            .copied()
            .unwrap_or(doc.version.saturating_sub(1));
        if doc.version <= last {
            return;
        }
        let now = crate::http::errors::now_ms();
        let events = if doc.version == last + 1 {
            events
        } else {
            vec![StageEvent::StreamState(doc.snapshot(now, 0, false))]
        };
        pushed_versions.insert(key.to_owned(), doc.version);
        let (viewers, producer) = self.hub.counts(key);
        let mut pushed = Vec::with_capacity(events.len());
        for mut event in events {
            match &mut event {
                StageEvent::StateUpdate(status) => {
                    (status.viewers, status.producer) = (viewers, producer)
                }
                StageEvent::StreamState(snapshot) => {
                    (snapshot.status.viewers, snapshot.status.producer) = (viewers, producer)
                }
                _ => {}
            }
            let whole = matches!(event, StageEvent::StreamState(_));
            let frame = hub::encode(&event, now, Some(doc.version));
            if let (Some(session), true) = (stream.session(), event.is_change()) {
                self.forward_to_session(session, &frame);
            }
            pushed.push(Pushed {
                version: doc.version,
                frame: tokio_tungstenite::tungstenite::Utf8Bytes::try_from(frame)
                    .expect("frames are JSON text"),
                whole,
            });
        }
        let sent = self.hub.push(key, pushed);
        drop(pushed_versions);
        self.metrics.stream_manager.broadcasts.inc_by(sent as u64);
    }

    /// Hands a change to the engine for the sync session's members (`stream_event`).
    fn forward_to_session(&self, session: &str, frame: &[u8]) {
        let Ok(event) = serde_json::from_slice(frame) else {
            return;
        };
        let notice = Inbound::StreamEvent {
            session_id: session.to_owned(),
            event,
        };
        // The engine's queue full: members miss this change, the stream's clients do not.
        if self.engine.try_send(notice).is_err() {
            tracing::debug!("engine queue full; a stream_event for sync members was skipped");
        }
    }

    /// Asset count and storage in `/metrics`.
    fn update_resource_gauges(&self) {
        let m = &self.metrics.stream_manager;
        m.assets.set(self.assets.count() as i64);
        m.asset_bytes.set(self.assets.used_bytes() as i64);
        if self.store.is_local() {
            m.streams
                .set(self.docs.lock().expect("docs lock").len() as i64);
        }
    }
}
