//! Upkeep: this instance's heartbeat and presence, the instances alive, the sessions live
//! in the cluster, and letting go of a session.

use super::super::envelope;
use super::{Link, Up, INSTANCE_TIMEOUT_MS};
use crate::cluster::{ClusterEvent, Presence};
use crate::store::SessionRecord;
use redis::aio::ConnectionManager;
use redis::RedisResult;
use std::sync::Arc;

impl Link {
    pub(super) async fn retire(&mut self, up: &mut Up, record: &SessionRecord) -> RedisResult<()> {
        let session = &record.session_id;
        self.sequencer.forget(session);
        if self.followed.remove(session) {
            up.sink.unsubscribe(self.keys.channel(session)).await?;
        }
        self.count("retire");
        let ttl = self.settings.retention.as_millis() as i64;
        let mut pipe = redis::pipe();
        pipe.hdel(self.keys.presence(session), &*self.instance)
            .ignore()
            .publish(
                self.keys.channel(session),
                envelope::presence(&self.instance, &Presence::default()),
            )
            .ignore()
            .pexpire(self.keys.state(session), ttl)
            .ignore()
            .pexpire(self.keys.log(session), ttl)
            .ignore();
        pipe.query_async::<()>(&mut up.conn).await
    }

    pub(super) async fn publish_presence(
        &mut self,
        conn: &mut ConnectionManager,
        session: &str,
        presence: &Presence,
    ) -> RedisResult<()> {
        self.count("presence");
        let json = serde_json::to_string(presence).unwrap_or_default();
        let mut pipe = redis::pipe();
        pipe.hset(self.keys.presence(session), &*self.instance, json)
            .ignore()
            .pexpire(
                self.keys.presence(session),
                self.settings.retention.as_millis() as i64,
            )
            .ignore()
            .publish(
                self.keys.channel(session),
                envelope::presence(&self.instance, presence),
            )
            .ignore();
        pipe.query_async::<()>(conn).await
    }

    /// Once a second: this instance's heartbeat, the instances alive, the sessions live
    /// on any of them; and, every minute, the TTLs of the sessions followed here.
    pub(super) async fn heartbeat(&mut self, conn: &mut ConnectionManager) -> RedisResult<()> {
        self.count("heartbeat");
        let now = crate::clock::ServerClock::shared().now_ms() as u64;
        let live = self.keys.live(&self.instance);
        let mut pipe = redis::pipe();
        pipe.zadd(self.keys.instances(), &*self.instance, now)
            .ignore()
            .zrembyscore(self.keys.instances(), 0, now.saturating_sub(3_600_000))
            .ignore()
            .del(&live)
            .ignore();
        if !self.followed.is_empty() {
            pipe.sadd(&live, self.followed.iter().collect::<Vec<_>>())
                .ignore();
        }
        pipe.pexpire(&live, (INSTANCE_TIMEOUT_MS * 2) as i64)
            .ignore()
            .zrangebyscore(
                self.keys.instances(),
                now.saturating_sub(INSTANCE_TIMEOUT_MS),
                "+inf",
            );
        let (alive,): (Vec<String>,) = pipe.query_async(conn).await?;
        let alive: Vec<Arc<str>> = alive.into_iter().map(Arc::from).collect();
        self.metrics.cluster.instances.set(alive.len() as i64);
        let live_sets: Vec<String> = alive.iter().map(|i| self.keys.live(i)).collect();
        self.count("active_sessions");
        let active: Vec<String> = redis::cmd("SUNION")
            .arg(&live_sets)
            .query_async(conn)
            .await?;
        self.metrics
            .cluster
            .active_sessions
            .set(active.len() as i64);
        if alive != self.alive {
            self.alive.clone_from(&alive);
            self.deliver(ClusterEvent::Instances { alive }).await;
        }
        self.beats += 1;
        if self.beats.is_multiple_of(60) && !self.followed.is_empty() {
            let ttl = self.settings.retention.as_millis() as i64;
            let mut pipe = redis::pipe();
            for session in &self.followed {
                pipe.pexpire(self.keys.state(session), ttl)
                    .ignore()
                    .pexpire(self.keys.log(session), ttl)
                    .ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        Ok(())
    }
}
