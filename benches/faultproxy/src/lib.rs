//! `faultproxy`: a TCP proxy on loopback that makes a link between a client and a server
//! look like a real network: seeded delay, jitter, asymmetry (a different base delay each
//! way) and stalls, without ever reordering bytes.
//!
//! Why not an existing crate: `noxious` (a Toxiproxy port) draws uniform jitter, sleeps each
//! chunk in turn (so back-to-back chunks add up their delays instead of overlapping), has
//! no stalls and is run as a server with a REST API; `turmoil` simulates the network
//! inside one process instead of sitting between real sockets. Tests and benchmarks here
//! need the real server and the real client on real sockets, with a jitter whose standard
//! deviation is exactly the one asked for, and a record of what was injected.
//!
//! Each accepted connection opens one to the upstream; both sockets get `TCP_NODELAY`, so
//! small frames (heartbeats) cross one by one and each gets its own delay instead of
//! being coalesced by Nagle's algorithm. See [`pump`] for the order rule and [`model`] for
//! the jitter models.

pub mod model;
pub mod pump;
pub mod stats;

pub use model::{ConfigError, DelayModel, Jitter, Link, MAX_DELAY_MS};
pub use stats::{DelaySummary, Recorder};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections one proxy carries at once: a test or benchmark needs a few; a stray client
/// past this waits in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// Both directions of a link and the seed of its delays.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Client to server.
    pub up: Link,
    /// Server to client.
    pub down: Link,
    /// Seeds every direction of every connection (see [`model::direction_seed`]).
    pub seed: u64,
}

impl Faults {
    /// The same jitter both ways around the same base.
    pub fn symmetric(base_ms: f64, sd_ms: f64, seed: u64) -> Self {
        Self {
            up: Link::jittered(base_ms, sd_ms),
            down: Link::jittered(base_ms, sd_ms),
            seed,
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        self.up.check()?;
        self.down.check()
    }
}

/// What a proxy injected so far, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Injected {
    pub up: DelaySummary,
    pub down: DelaySummary,
    pub connections: u64,
}

/// A running proxy. Dropping it stops it and every connection through it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    up: Arc<Recorder>,
    down: Arc<Recorder>,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, faults: Faults) -> Result<Self, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, upstream, faults)
    }

    /// Forwards every connection `listener` accepts to `upstream`.
    pub fn serve(
        listener: TcpListener,
        upstream: SocketAddr,
        faults: Faults,
    ) -> Result<Self, StartError> {
        faults.check()?;
        let addr = listener.local_addr()?;
        let up = Arc::new(Recorder::default());
        let down = Arc::new(Recorder::default());
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            faults,
            (up.clone(), down.clone()),
            connections.clone(),
        ));
        Ok(Self {
            addr,
            up,
            down,
            connections,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What was injected so far.
    pub fn injected(&self) -> Injected {
        Injected {
            up: self.up.summary(),
            down: self.down.summary(),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }

    /// The recorded one-way delays (ms) so far: (up, down).
    pub fn delays(&self) -> (Vec<f64>, Vec<f64>) {
        (self.up.delays(), self.down.delays())
    }

    /// The delays the model drew for the same chunks: (up, down).
    pub fn drawn(&self) -> (Vec<f64>, Vec<f64>) {
        (self.up.drawn(), self.down.drawn())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the connections' JoinSet: aborting it ends them all.
        self.task.abort();
    }
}

/// Why a proxy did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Faults,
    (up, down): (Arc<Recorder>, Arc<Recorder>),
    connections: Arc<AtomicU64>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        // Reap finished connections so the set holds only live ones.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let conn = connections.fetch_add(1, Ordering::Relaxed);
        let (up, down) = (up.clone(), down.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_rx, client_tx) = client.into_split();
            let (server_rx, server_tx) = server.into_split();
            let up_model =
                DelayModel::new(faults.up, model::direction_seed(faults.seed, conn, true));
            let down_model =
                DelayModel::new(faults.down, model::direction_seed(faults.seed, conn, false));
            tokio::join!(
                pump::run(client_rx, server_tx, up_model, up),
                pump::run(server_rx, client_tx, down_model, down),
            );
        });
    }
}

#[cfg(test)]
mod tests;
