//! What every route and connection shares: configuration, clock, metrics, the engine
//! handle, the shutdown signal, and the connection budget.

use crate::clock::ServerClock;
use crate::config::Config;
use crate::engine::{ConnKey, EngineHandle};
use crate::limits::{AuthFailures, AuthLimits, ConnLimits, TrustedProxies};
use crate::metrics::Metrics;
use crate::outbox::OutboxLimits;
use crate::ws::budget::PartialBudget;
use crate::ws::guard::GuardLimits;
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
    /// Per-address limits (`src/limits`): the proxies whose `X-Forwarded-For` is believed,
    /// the TCP connection caps, and failed authentications (shared with the engine, which
    /// checks WebSocket `share_start` tokens).
    pub trusted_proxies: TrustedProxies,
    pub conn_limits: ConnLimits,
    pub auth_failures: Arc<AuthFailures>,
    /// With `REDIS_URL`: Music Share claims and replication across instances.
    pub share_cluster: Option<Arc<crate::cluster::redis::share::ShareCluster>>,
    /// Per-minute rollups of the key figures (`GET /metrics/history`).
    pub history: Arc<crate::history::MetricsHistory>,
    /// Bytes all WebSockets together may hold in half-received messages.
    pub partial_budget: Arc<PartialBudget>,
    /// Repository streams: listeners, the render pool, webhook deliveries.
    pub repo: Arc<crate::repo::RepoStreams>,
    /// The Stream Manager: stream state, layers, assets and their clients.
    pub stream_manager: Arc<crate::stream_manager::StreamManager>,
    /// The Socket.IO endpoint's Engine.IO sessions and recovery records.
    pub socket_io: Arc<crate::socketio::SocketIo>,
    /// The raised alerts and their subscribers (`src/ops`).
    pub ops: Arc<crate::ops::Ops>,
}

/// The features served next to the sync sessions, built before the context.
pub struct Features {
    pub repo: Arc<crate::repo::RepoStreams>,
    pub stream_manager: Arc<crate::stream_manager::StreamManager>,
    pub socket_io: Arc<crate::socketio::SocketIo>,
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
        features: Features,
    ) -> Self {
        let Features {
            repo,
            stream_manager,
            socket_io,
        } = features;
        let limits = &config.limits;
        // Validated with the configuration; an unparsable list trusts no one.
        let trusted_proxies = TrustedProxies::parse(&limits.trusted_proxies).unwrap_or_default();
        let tcp_cap = match limits.max_tcp_connections {
            0 => usize::MAX,
            n => n,
        };
        let conn_limits = ConnLimits::new(tcp_cap, limits.max_connections_per_ip);
        let auth_failures = Arc::new(AuthFailures::new(auth_limits(&config), metrics.clone()));
        let partial_budget = Arc::new(
            PartialBudget::new(config.partial_message_budget_bytes)
                .with_gauge(metrics.partial_message_bytes.clone()),
        );
        Self {
            ops: Arc::new(crate::ops::Ops::new(metrics.clone())),
            repo,
            stream_manager,
            socket_io,
            partial_budget,
            trusted_proxies,
            conn_limits,
            auth_failures,
            share_cluster: None,
            history: Arc::default(),
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

    /// Shares `auth_failures` with the engine, which was started before this context.
    pub fn with_auth_failures(mut self, auth_failures: Arc<AuthFailures>) -> Self {
        self.auth_failures = auth_failures;
        self
    }

    /// Replicates Music Share through Redis (with `REDIS_URL`).
    pub fn with_share_cluster(
        mut self,
        cluster: Option<Arc<crate::cluster::redis::share::ShareCluster>>,
    ) -> Self {
        self.share_cluster = cluster;
        self
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

    /// The frame guard's limits for a WebSocket; `deflate` if it negotiated compression.
    pub fn guard_limits(&self, deflate: bool) -> GuardLimits {
        GuardLimits {
            text: self.config.max_message_bytes,
            hard: self.config.max_frame_bytes,
            deflate,
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

/// The failed-authentication limits of `config`.
pub fn auth_limits(config: &Config) -> AuthLimits {
    AuthLimits {
        max_failures: config.limits.auth_failure_limit,
        window: config.limits.auth_failure_window(),
        ban: config.limits.auth_ban(),
        capacity: config.limits.tracked_addresses,
    }
}
