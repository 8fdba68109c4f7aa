//! Who listens to which repository, the latest composition of each, and the broadcast.
//!
//! Each listener has a bounded [`Outbox`]: `connected`, `heartbeat` and `error` are state
//! frames (all delivered, in order), compositions are audio frames (at most
//! `REPO_LISTENER_QUEUE` wait; a newer one pushes out the oldest unsent one). Every frame is
//! a shared `Bytes`, so a slow listener holds references, never copies: what it can pin is
//! a couple of compositions that the latest-composition cache holds anyway.
//!
//! Locks are std mutexes held for map updates only; pushes happen after the listeners are
//! cloned out, and nothing here is ever held across an `.await`.

use super::composition::{small_frame, Composition};
use super::path::repo_key;
use crate::net::io::ConnAbort;
use crate::outbox::{CloseReason, Frame, Outbox, OutboxLimits};
use bandsync_protocol::repo::Encoding;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a listener's queue holds: a small message (`connected`, `heartbeat`, `error`, as
/// an SSE frame) or a composition, which the listener's writer sends in its encoding.
#[derive(Clone)]
pub enum RepoFrame {
    Message(Bytes),
    Composition(Arc<Composition>),
}

impl Frame for RepoFrame {
    /// Compositions are shared (the latest-composition cache holds them anyway): they do
    /// not count against a listener's byte bound, which is for small messages.
    fn byte_len(&self) -> usize {
        match self {
            RepoFrame::Message(bytes) => bytes.len(),
            RepoFrame::Composition(_) => 0,
        }
    }
}

/// One listener (SSE or WebSocket) of one repository.
pub struct Listener {
    pub client_id: String,
    /// The repository as the listener named it.
    pub repo_id: String,
    pub encoding: Encoding,
    pub outbox: Outbox<RepoFrame>,
    /// Wall clock at connect, ms since the Unix epoch.
    connected_at_ms: u64,
    connected: Instant,
    /// Ms after `connected` when the listener last took its queue.
    last_activity_ms: AtomicU64,
    /// Ends the listener's connection even while a write to it is stuck.
    abort: Option<ConnAbort>,
}

impl Listener {
    /// The listener's writer took everything queued: it is alive and reading.
    pub fn touch(&self) {
        let ms = self.connected.elapsed().as_millis() as u64;
        self.last_activity_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_for(&self, now: Instant) -> Duration {
        let last =
            self.connected + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

/// The latest composition of each repository, least recently played evicted first once
/// their bytes pass the budget.
struct Latest {
    by_repo: lru::LruCache<String, Arc<Composition>>,
    bytes: usize,
    budget: usize,
}

impl Latest {
    fn insert(&mut self, key: String, composition: Arc<Composition>) {
        self.bytes += composition.retained_bytes();
        if let Some(old) = self.by_repo.put(key, composition) {
            self.bytes -= old.retained_bytes();
        }
        // The newest always stays, even alone over the budget: a listener that connects
        // now should still hear it.
        while self.bytes > self.budget && self.by_repo.len() > 1 {
            if let Some((_, evicted)) = self.by_repo.pop_lru() {
                self.bytes -= evicted.retained_bytes();
            }
        }
    }
}

/// Figures for `/health` and `/health/repo/{repoId}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientDetail {
    pub client_id: String,
    pub repo_id: String,
    pub encoding: Encoding,
    pub connected_at: u64,
    pub connection_duration_ms: u64,
    pub idle_ms: u64,
}

pub struct Hub {
    rooms: Mutex<HashMap<String, Vec<Arc<Listener>>>>,
    latest: Mutex<Latest>,
    limits: OutboxLimits,
    buffers_created: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map update: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new(limits: OutboxLimits, retained_bytes: usize) -> Self {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            latest: Mutex::new(Latest {
                by_repo: lru::LruCache::unbounded(),
                bytes: 0,
                budget: retained_bytes,
            }),
            limits,
            buffers_created: AtomicU64::new(0),
        }
    }

    /// Adds a listener: queues `connected`, then the repository's latest composition if
    /// there is one, so a late listener hears what was last played.
    pub fn subscribe(
        &self,
        repo_id: &str,
        client_id: String,
        encoding: Encoding,
        now_ms: u64,
        abort: Option<ConnAbort>,
    ) -> Arc<Listener> {
        let listener = Arc::new(Listener {
            client_id,
            repo_id: repo_id.to_owned(),
            encoding,
            outbox: Outbox::new(self.limits),
            connected_at_ms: now_ms,
            connected: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            abort,
        });
        let connected = small_frame(&json!({
            "type": "connected",
            "timestamp": now_ms,
            "data": {
                "message": format!("Streaming audio for repo: {repo_id}"),
                "clientId": listener.client_id,
                "repoId": repo_id,
            }
        }));
        let _ = listener.outbox.push(RepoFrame::Message(connected));
        let key = repo_key(repo_id);
        if let Some(latest) = self.latest(&key) {
            let _ = listener.outbox.push_audio(RepoFrame::Composition(latest));
        }
        listener.outbox.wake();
        lock(&self.rooms)
            .entry(key)
            .or_default()
            .push(listener.clone());
        listener
    }

    /// Removes a listener (its stream ended).
    pub fn unsubscribe(&self, listener: &Arc<Listener>) {
        let key = repo_key(&listener.repo_id);
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get_mut(&key) {
            room.retain(|l| !Arc::ptr_eq(l, listener));
            if room.is_empty() {
                rooms.remove(&key);
            }
        }
    }

    fn latest(&self, key: &str) -> Option<Arc<Composition>> {
        lock(&self.latest).by_repo.get(key).cloned()
    }

    /// The latest composition of `repo`, if one is kept.
    pub fn latest_of(&self, repo: &str) -> Option<Arc<Composition>> {
        self.latest(&repo_key(repo))
    }

    fn listeners_of(&self, key: &str) -> Vec<Arc<Listener>> {
        lock(&self.rooms).get(key).cloned().unwrap_or_default()
    }

    /// Keeps `composition` as its repository's latest and queues it for every listener of
    /// that repository. Returns how many listeners it was queued for.
    pub fn broadcast(&self, composition: Arc<Composition>) -> usize {
        let key = repo_key(&composition.meta.repo_id);
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        lock(&self.latest).insert(key.clone(), composition.clone());
        let listeners = self.listeners_of(&key);
        let mut notified = 0;
        for listener in &listeners {
            let frame = RepoFrame::Composition(composition.clone());
            if listener.outbox.push_audio(frame).is_ok() {
                listener.outbox.wake();
                notified += 1;
            }
        }
        notified
    }

    /// Keeps `composition` as its repository's latest unless a newer one is kept already
    /// (it came from another instance for a late listener; nobody here is waiting for it).
    pub fn keep_latest(&self, composition: Arc<Composition>) {
        let key = repo_key(&composition.meta.repo_id);
        let mut latest = lock(&self.latest);
        let newer = latest
            .by_repo
            .peek(&key)
            .is_some_and(|kept| kept.meta.timestamp_ms >= composition.meta.timestamp_ms);
        if !newer {
            latest.insert(key, composition);
        }
    }

    /// Sends an `error` message (e.g. `RENDER_ERROR`) to every listener of `repo`.
    pub fn broadcast_error(&self, repo: &str, code: &str, message: &str, now_ms: u64) {
        let frame = small_frame(&json!({
            "type": "error",
            "timestamp": now_ms,
            "data": { "message": message, "code": code }
        }));
        for listener in self.listeners_of(&repo_key(repo)) {
            push_state(&listener, frame.clone());
        }
    }

    /// Queues a `heartbeat` for every listener (one frame, shared).
    pub fn heartbeat(&self, now_ms: u64) {
        let frame = small_frame(&json!({ "type": "heartbeat", "timestamp": now_ms }));
        for listener in self.all_listeners() {
            push_state(&listener, frame.clone());
        }
    }

    /// Disconnects listeners that took nothing from their queue for `idle`; returns how many.
    pub fn sweep(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut closed = 0;
        for listener in self.all_listeners() {
            if listener.idle_for(now) >= idle && !listener.outbox.is_closed() {
                listener.outbox.close(CloseReason::PingTimeout);
                if let Some(abort) = &listener.abort {
                    abort.abort();
                }
                closed += 1;
            }
        }
        closed
    }

    /// Ends every stream (the server is shutting down).
    pub fn close_all(&self) {
        for listener in self.all_listeners() {
            listener.outbox.close(CloseReason::Shutdown);
        }
    }

    fn all_listeners(&self) -> Vec<Arc<Listener>> {
        lock(&self.rooms).values().flatten().cloned().collect()
    }

    pub fn active_clients(&self) -> usize {
        lock(&self.rooms).values().map(Vec::len).sum()
    }

    /// Listeners of `repo`.
    pub fn listener_count(&self, repo: &str) -> usize {
        lock(&self.rooms).get(&repo_key(repo)).map_or(0, Vec::len)
    }

    /// Repositories with at least one listener.
    pub fn active_repos(&self) -> usize {
        lock(&self.rooms).len()
    }

    pub fn buffers_created(&self) -> u64 {
        self.buffers_created.load(Ordering::Relaxed)
    }

    pub fn retained_compositions(&self) -> (usize, usize) {
        let latest = lock(&self.latest);
        (latest.by_repo.len(), latest.bytes)
    }

    /// Every listener of `repo` (or of all repositories), at most `limit` of them.
    pub fn details(&self, repo: Option<&str>, now_ms: u64, limit: usize) -> Vec<ClientDetail> {
        let listeners = match repo {
            Some(repo) => self.listeners_of(&repo_key(repo)),
            None => self.all_listeners(),
        };
        let now = Instant::now();
        listeners
            .iter()
            .take(limit)
            .map(|l| ClientDetail {
                client_id: l.client_id.clone(),
                repo_id: l.repo_id.clone(),
                encoding: l.encoding,
                connected_at: l.connected_at_ms,
                connection_duration_ms: now_ms.saturating_sub(l.connected_at_ms),
                idle_ms: l.idle_for(now).as_millis() as u64,
            })
            .collect()
    }
}

fn push_state(listener: &Listener, frame: Bytes) {
    // A listener too far behind on small messages is closed by the outbox itself.
    if let Ok(was_empty) = listener.outbox.push(RepoFrame::Message(frame)) {
        if was_empty {
            listener.outbox.wake();
        }
    }
}

#[cfg(test)]
mod tests;
