//! The link task: the only code that talks to Redis. One task, so each session's commits
//! pass through one [`Sequencer`] and leave for the engine in version order.
//!
//! Two connections, as the seed's design has it: a [`ConnectionManager`] for commands and
//! scripts, and a pub/sub connection subscribed to the channel of every session live on
//! this instance. Either failing takes the link down: it answers what the engine waits for
//! locally, retries with backoff (100 ms doubling to 5 s), and on its return resubscribes,
//! fetches from the streams what it missed and tells the engine to reconcile.

mod commits;
mod upkeep;

use super::envelope::{Commit, Envelope};
use super::keys::Keys;
use super::sequencer::Sequencer;
use super::{Command, RedisSettings};
use crate::cluster::memory::next_version;
use crate::cluster::{ClusterEvent, Loaded, ProposalKind};
use crate::metrics::Metrics;
use crate::store::SessionRecord;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::{AsyncCommands, RedisResult};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// An instance that has not refreshed its heartbeat for this long is gone.
const INSTANCE_TIMEOUT_MS: u64 = 5000;
const HEARTBEAT: Duration = Duration::from_secs(1);
const GAP_CHECK: Duration = Duration::from_millis(50);

pub struct Link {
    client: redis::Client,
    settings: RedisSettings,
    keys: Keys,
    instance: Arc<str>,
    up: Arc<AtomicBool>,
    events: mpsc::Sender<ClusterEvent>,
    metrics: Arc<Metrics>,
    sequencer: Sequencer,
    /// Sessions whose channel this instance listens to (live here).
    followed: HashSet<String>,
    alive: Vec<Arc<str>>,
    beats: u64,
}

/// The connections of one stretch of the link being up.
struct Up {
    conn: ConnectionManager,
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Link {
    pub fn new(
        client: redis::Client,
        settings: RedisSettings,
        instance: Arc<str>,
        up: Arc<AtomicBool>,
        events: mpsc::Sender<ClusterEvent>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            keys: Keys::new(&settings.prefix),
            settings,
            instance,
            up,
            events,
            metrics,
            sequencer: Sequencer::default(),
            followed: HashSet::new(),
            alive: Vec::new(),
            beats: 0,
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut backoff = super::BACKOFF_MIN;
        let mut ever_up = false;
        let mut last_warning: Option<Instant> = None;
        self.metrics.cluster.redis_up.set(0);
        loop {
            match self.connect().await {
                Ok(mut up) => {
                    backoff = super::BACKOFF_MIN;
                    if self.resume(&mut up, ever_up).await.is_ok() {
                        ever_up = true;
                        tracing::info!(instance = %self.instance, "Redis reachable: sessions are shared");
                        if !self.serve(&mut up, &mut commands).await {
                            return; // the engine is gone
                        }
                    }
                    self.set_up(false);
                    tracing::warn!(
                        "lost Redis: serving this instance's members from memory until it returns"
                    );
                }
                Err(e) => {
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(error = %e, "Redis unreachable: running in memory, retrying with backoff");
                    }
                }
            }
            let retry = tokio::time::sleep(backoff);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = &mut retry => break,
                    command = commands.recv() => match command {
                        Some(command) => self.answer_down(command).await,
                        None => return,
                    },
                }
            }
            backoff = super::next_backoff(backoff);
        }
    }

    async fn connect(&self) -> RedisResult<Up> {
        let (conn, pubsub) = super::connect(&self.client).await?;
        let (sink, stream) = pubsub.split();
        Ok(Up { conn, sink, stream })
    }

    /// Resubscribes, and after an outage catches up from the streams and has the engine
    /// reconcile what changed here meanwhile.
    async fn resume(&mut self, up: &mut Up, after_outage: bool) -> RedisResult<()> {
        for session in self.followed.clone() {
            up.sink.subscribe(self.keys.channel(&session)).await?;
        }
        self.heartbeat(&mut up.conn).await?;
        self.set_up(true);
        if after_outage {
            for (session, delivered) in self.sequencer.positions() {
                self.fetch(&mut up.conn, &session, delivered, u64::MAX)
                    .await?;
            }
        }
        // Also the first time: sessions may have started here before Redis answered.
        self.deliver(ClusterEvent::Reconnected).await;
        Ok(())
    }

    fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::AcqRel);
        self.metrics.cluster.redis_up.set(i64::from(up));
        if was && !up {
            self.metrics.cluster.redis_outages.inc();
        }
    }

    /// Serves until the link fails (false: the engine stopped, never come back).
    async fn serve(&mut self, up: &mut Up, commands: &mut mpsc::Receiver<Command>) -> bool {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut gaps = tokio::time::interval(GAP_CHECK);
        loop {
            let failed = tokio::select! {
                message = up.stream.next() => match message {
                    Some(message) => { self.on_message(&message).await; false }
                    None => true,
                },
                command = commands.recv() => match command {
                    Some(command) => self.execute(up, command).await.is_err(),
                    None => return false,
                },
                _ = heartbeat.tick() => self.heartbeat(&mut up.conn).await.is_err(),
                _ = gaps.tick() => self.fill_gaps(&mut up.conn).await.is_err(),
            };
            if failed {
                self.metrics.cluster.redis_errors.inc();
                return true;
            }
        }
    }

    async fn deliver(&self, event: ClusterEvent) {
        // Bounded: a busy engine slows the reading of Redis, it never loses an event.
        let _ = self.events.send(event).await;
    }

    async fn deliver_commits(&self, commits: Vec<Commit>) {
        for commit in commits {
            let (record, origin) = commit.into_parts(&self.instance);
            self.deliver(ClusterEvent::Committed {
                record,
                origin,
                local_only: false,
            })
            .await;
        }
    }

    fn count(&self, purpose: &str) {
        self.metrics
            .cluster
            .redis_commands
            .with_label_values(&[purpose])
            .inc();
    }

    /// What the engine waits for, answered without Redis.
    async fn answer_down(&mut self, command: Command) {
        match command {
            // Out of reach, a change (an activation too) commits here only.
            Command::Propose(p)
                if matches!(p.kind, ProposalKind::Reconcile | ProposalKind::Seed) =>
            {
                let event = ClusterEvent::Rejected {
                    ticket: p.ticket,
                    current: None,
                    unreachable: true,
                };
                self.deliver(event).await;
            }
            Command::Propose(p) => {
                let event = ClusterEvent::Committed {
                    record: next_version(p.record),
                    origin: Some(p.ticket),
                    local_only: true,
                };
                self.deliver(event).await;
            }
            Command::Load { ticket, .. } => {
                let loaded = Loaded::default();
                self.deliver(ClusterEvent::Loaded { ticket, loaded }).await;
            }
            Command::Retire(record) => {
                self.followed.remove(&record.session_id);
                self.sequencer.forget(&record.session_id);
            }
            _ => {}
        }
    }

    async fn execute(&mut self, up: &mut Up, command: Command) -> RedisResult<()> {
        match command {
            Command::Propose(p) => {
                if let Err(e) = self.propose(up, &p).await {
                    // Not known to have committed: commit here, reconcile on return.
                    self.answer_down(Command::Propose(p)).await;
                    return Err(e);
                }
            }
            Command::Load {
                ticket,
                session,
                resume_token,
            } => match self.load(up, &session, resume_token.as_deref()).await {
                Ok(loaded) => self.deliver(ClusterEvent::Loaded { ticket, loaded }).await,
                Err(e) => {
                    let loaded = Loaded::default();
                    self.deliver(ClusterEvent::Loaded { ticket, loaded }).await;
                    return Err(e);
                }
            },
            Command::Retire(record) => self.retire(up, &record).await?,
            Command::Presence { session, presence } => {
                self.publish_presence(&mut up.conn, &session, &presence)
                    .await?;
            }
            Command::SaveResume { token, grant, ttl } => {
                self.count("resume");
                let json = serde_json::to_string(&grant).unwrap_or_default();
                let ms = ttl.as_millis().max(1) as u64;
                let _: () = up.conn.pset_ex(self.keys.resume(&token), json, ms).await?;
            }
            Command::TouchResume { tokens, ttl } => {
                self.count("resume");
                let mut pipe = redis::pipe();
                for token in &tokens {
                    pipe.pexpire(self.keys.resume(token), ttl.as_millis() as i64)
                        .ignore();
                }
                let _: () = pipe.query_async(&mut up.conn).await?;
            }
            Command::RevokeResume(token) => {
                self.count("resume");
                let _: () = up.conn.del(self.keys.resume(&token)).await?;
            }
            Command::HoldSeats { seats, window } => {
                self.count("lease");
                let mut pipe = redis::pipe();
                for (session, holder) in &seats {
                    pipe.pset_ex(
                        self.keys.lease(session),
                        &**holder,
                        window.as_millis() as u64,
                    )
                    .ignore();
                }
                let _: () = pipe.query_async(&mut up.conn).await?;
            }
        }
        Ok(())
    }

    async fn on_message(&mut self, message: &redis::Msg) {
        let Some(session) = self.keys.session_of_channel(message.get_channel_name()) else {
            return;
        };
        let session = session.to_owned();
        let Ok(envelope) = serde_json::from_slice::<Envelope>(message.get_payload_bytes()) else {
            tracing::warn!(session, "unreadable message on a session channel; ignored");
            return;
        };
        match envelope {
            Envelope::Commit(commit) if self.sequencer.is_following(&session) => {
                let ready = self.sequencer.offer(&session, *commit, Instant::now());
                self.deliver_commits(ready).await;
            }
            Envelope::Presence { instance, presence } if instance != self.instance => {
                let event = ClusterEvent::Presence {
                    session_id: session,
                    instance,
                    presence,
                };
                self.deliver(event).await;
            }
            Envelope::Claimed {
                client_id,
                instance,
            } if instance != self.instance => {
                let event = ClusterEvent::Claimed {
                    session_id: session,
                    client_id,
                };
                self.deliver(event).await;
            }
            _ => {}
        }
    }
}

/// A record read from Redis (its `version` field is stale there: `version` overrides it).
fn parse_record(json: &str, version: Option<u64>) -> Option<SessionRecord> {
    let mut record: SessionRecord = serde_json::from_str(json).ok()?;
    if let Some(version) = version {
        record.version = version;
    }
    Some(record)
}

/// A fresh epoch for a session whose keys are created anew.
fn new_epoch() -> String {
    use rand::RngCore;
    format!("{:016x}", rand::rng().next_u64())
}
