//! The metrics history in Redis: each instance's per-minute rollups under
//! `{prefix}:instance:{id}:history`, so any instance answers `/metrics/history` for the
//! whole cluster. It rides on the HTTP side's Redis connection (`ShareCluster`).

use super::share::ShareCluster;
use redis::RedisResult;

impl ShareCluster {
    /// Stores this instance's rollup of the minute (the newest first, a day of them).
    pub async fn store_rollup(&self, rollup: &crate::history::Rollup) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        let key = self.keys.history(&self.instance);
        let json = serde_json::to_string(rollup).unwrap_or_default();
        let mut pipe = redis::pipe();
        pipe.lpush(&key, json)
            .ignore()
            .ltrim(&key, 0, crate::history::MINUTES_KEPT as isize - 1)
            .ignore()
            .pexpire(&key, 25 * 3_600_000)
            .ignore();
        let _: RedisResult<()> = pipe.query_async(&mut conn).await;
    }

    /// The rollups of every instance seen in the last day, oldest first, by instance;
    /// `None` while Redis is out of reach.
    pub async fn cluster_history(
        &self,
    ) -> Option<std::collections::BTreeMap<String, Vec<crate::history::Rollup>>> {
        let mut conn = self.connection()?;
        let since = crate::clock::ServerClock::shared().now_ms() as u64 - 24 * 3_600_000;
        let instances: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.instances())
            .arg(since)
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .ok()?;
        let mut history = std::collections::BTreeMap::new();
        for instance in instances {
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(self.keys.history(&instance))
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .ok()?;
            let mut minutes: Vec<crate::history::Rollup> = raw
                .iter()
                .filter_map(|j| serde_json::from_str(j).ok())
                .collect();
            minutes.reverse();
            history.insert(instance, minutes);
        }
        Some(history)
    }
}
