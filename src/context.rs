//! What every route and connection shares: configuration, clock, metrics, the engine
//! handle, the shutdown signal, and the connection budget.

use crate::clock::ServerClock;
use crate::config::Config;
use crate::engine::{ConnKey, EngineHandle};
use crate::metrics::Metrics;
use crate::outbox::OutboxLimits;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct AppContext {
    pub config: Config,
    pub clock: ServerClock,
    pub metrics: Arc<Metrics>,
    pub engine: EngineHandle,
    pub share: Arc<crate::share::ShareRegistry>,
    /// Origin rule, token verification, share-receive authorization.
    pub auth: Arc<crate::auth::Auth>,
    /// Cancelled when shutdown starts; every connection task watches it.
    pub shutdown: CancellationToken,
    /// Upgraded WebSocket tasks (hyper no longer tracks them once upgraded).
    pub tracker: TaskTracker,
    next_key: AtomicU64,
    realtime_connections: Arc<AtomicUsize>,
}

/// One unit of `MAX_CONNECTIONS`, returned when dropped.
pub struct ConnectionPermit {
    counter: Arc<AtomicUsize>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AppContext {
    pub fn new(
        config: Config,
        clock: ServerClock,
        metrics: Arc<Metrics>,
        engine: EngineHandle,
        share: Arc<crate::share::ShareRegistry>,
        auth: Arc<crate::auth::Auth>,
    ) -> Self {
        Self {
            share,
            auth,
            config,
            clock,
            metrics,
            engine,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_key: AtomicU64::new(1),
            realtime_connections: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn next_key(&self) -> ConnKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a slot for a WebSocket or SSE connection, or `None` when the server is full.
    pub fn try_acquire_connection(&self) -> Option<ConnectionPermit> {
        let max = self.config.max_connections;
        let taken =
            self.realtime_connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
        match taken {
            Ok(_) => Some(ConnectionPermit {
                counter: self.realtime_connections.clone(),
            }),
            Err(_) => {
                self.metrics.connections_rejected.inc();
                None
            }
        }
    }

    pub fn outbox_limits(&self) -> OutboxLimits {
        OutboxLimits {
            max_frames: self.config.outbox_max_frames,
            max_bytes: self.config.outbox_max_bytes,
            max_audio_frames: self.config.outbox_max_audio_frames,
        }
    }
}
