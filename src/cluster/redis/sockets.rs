//! Socket.IO recovery records in Redis, so that a socket dropped on one instance recovers
//! on any other: `SET {p}:sio:{pid} <record> PX <window>` when it drops, `GETDEL` when it
//! reconnects (a record recovers one connection, once).

use super::keys::Keys;
use crate::metrics::Metrics;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a request waits for the first connection before it gives up (recovery then
/// fails, and the client starts a fresh socket).
const CONNECT_WAIT: Duration = Duration::from_secs(2);

pub struct SocketRecords {
    client: redis::Client,
    keys: Keys,
    conn: OnceCell<ConnectionManager>,
    metrics: Arc<Metrics>,
}

impl SocketRecords {
    pub fn open(url: &str, prefix: &str, metrics: &Arc<Metrics>) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            keys: Keys::new(prefix),
            conn: OnceCell::new(),
            metrics: metrics.clone(),
        })
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let connect = self
            .conn
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()));
        match tokio::time::timeout(CONNECT_WAIT, connect).await {
            Ok(Ok(conn)) => Some(conn.clone()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "Redis unreachable: Socket.IO recovery records unavailable");
                None
            }
            Err(_) => None,
        }
    }

    fn count(&self) {
        self.metrics
            .cluster
            .redis_commands
            .with_label_values(&["socketio"])
            .inc();
    }

    pub async fn save(&self, pid: &str, record: &str, ttl: Duration) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        self.count();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let result: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.keys.socket(pid))
            .arg(record)
            .arg("PX")
            .arg(millis)
            .query_async(&mut conn)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "saving a Socket.IO recovery record failed");
        }
    }

    pub async fn take(&self, pid: &str) -> Option<String> {
        let mut conn = self.connection().await?;
        self.count();
        let result: redis::RedisResult<Option<String>> = redis::cmd("GETDEL")
            .arg(self.keys.socket(pid))
            .query_async(&mut conn)
            .await;
        result
            .inspect_err(
                |error| tracing::warn!(%error, "reading a Socket.IO recovery record failed"),
            )
            .ok()
            .flatten()
    }
}
