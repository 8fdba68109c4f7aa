//! The Redis broker: many instances, one band.
//!
//! The engine side ([`RedisBroker`]) never touches the network: it queues [`Command`]s
//! (bounded; a full queue counts as Redis being out of reach) for the link task
//! (`link.rs`), which owns two Redis connections, one for commands and one for pub/sub, as
//! the seed's design has it. Answers and news go back to the engine's inbound queue as
//! [`ClusterEvent`]s through a bounded channel.
//!
//! While Redis is out of reach, changes commit in this instance only
//! ([`Proposed::CommittedLocally`]); loads find nothing (a session not live here starts
//! fresh); when Redis is back, the engine re-publishes what changed (`scripts.rs` states the
//! reconciliation rule).

mod envelope;
mod history;
pub mod keys;
mod link;
pub mod repo;
mod scripts;
mod sequencer;
pub mod share;
pub mod sockets;
pub mod stage;

use super::memory::next_version;
use super::{Broker, ClusterEvent, Loaded, Presence, Proposal, Proposed, ResumeGrant, Ticket};
use crate::store::SessionRecord;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Commands the engine side may queue before further ones count as an outage.
const COMMAND_QUEUE: usize = 8192;
/// Each Redis call's deadline: past it the connection counts as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff of every Redis task: from 100 ms, doubling, up to 5 s.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}

/// Waits out `backoff` while Redis is out of reach, discarding what `inbox` queues
/// meanwhile (those changes stay local). Returns `false` when the inbox closed: the server
/// is done and the task should end.
async fn sit_out<T>(backoff: Duration, inbox: &mut mpsc::Receiver<T>) -> bool {
    let retry = tokio::time::sleep(backoff);
    tokio::pin!(retry);
    loop {
        tokio::select! {
            () = &mut retry => return true,
            item = inbox.recv() => if item.is_none() { return false },
        }
    }
}

/// The two connections of a Redis task, as the seed's design has them: one for commands
/// and scripts (reconnecting by itself, every call bounded by [`REDIS_TIMEOUT`]) and one
/// for pub/sub.
async fn connect(
    client: &redis::Client,
) -> redis::RedisResult<(redis::aio::ConnectionManager, redis::aio::PubSub)> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1);
    let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
    let pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })??;
    Ok((conn, pubsub))
}

/// What the link needs to know.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    /// TTL of a session's keys after its last change or sign of life.
    pub retention: Duration,
    /// Commits kept in each session's stream (about; Redis trims lazily).
    pub stream_length: usize,
    /// How long a dropped leader's seat is held (`RECOVERY_WINDOW_MS`): its lease.
    pub recovery_window: Duration,
}

/// What the engine asks of the link.
#[derive(Debug)]
pub enum Command {
    Propose(Proposal),
    Load {
        ticket: Ticket,
        session: String,
        resume_token: Option<String>,
    },
    Retire(SessionRecord),
    Presence {
        session: String,
        presence: Presence,
    },
    SaveResume {
        token: String,
        grant: ResumeGrant,
        ttl: Duration,
    },
    TouchResume {
        tokens: Vec<String>,
        ttl: Duration,
    },
    RevokeResume(String),
    HoldSeats {
        seats: Vec<(Arc<str>, Arc<str>)>,
        window: Duration,
    },
}

pub struct RedisBroker {
    instance: Arc<str>,
    commands: mpsc::Sender<Command>,
    up: Arc<AtomicBool>,
}

/// Starts the link task on the current runtime. Cluster events go to `events`.
pub fn spawn(
    settings: RedisSettings,
    events: mpsc::Sender<ClusterEvent>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<RedisBroker, redis::RedisError> {
    let client = redis::Client::open(settings.url.as_str())?;
    let instance: Arc<str> = {
        use rand::RngCore;
        format!("i{:012x}", rand::rng().next_u64() & 0xffff_ffff_ffff).into()
    };
    let up = Arc::new(AtomicBool::new(false));
    let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
    let link = link::Link::new(
        client,
        settings,
        instance.clone(),
        up.clone(),
        events,
        metrics,
    );
    tokio::spawn(link.run(rx));
    Ok(RedisBroker {
        instance,
        commands,
        up,
    })
}

impl RedisBroker {
    fn send(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

impl Broker for RedisBroker {
    fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn propose(&mut self, proposal: Proposal) -> Proposed {
        if self.is_up() {
            let record = proposal.record.clone();
            if self.send(Command::Propose(proposal)) {
                return Proposed::Pending;
            }
            return Proposed::CommittedLocally(next_version(record));
        }
        Proposed::CommittedLocally(next_version(proposal.record))
    }

    fn load(&mut self, ticket: Ticket, session_id: &str, token: Option<&str>) -> Option<Loaded> {
        let command = Command::Load {
            ticket,
            session: session_id.to_owned(),
            resume_token: token.map(str::to_owned),
        };
        if self.is_up() && self.send(command) {
            None
        } else {
            Some(Loaded::default())
        }
    }

    fn retire(&mut self, record: &SessionRecord, _ttl: Duration) {
        self.send(Command::Retire(record.clone()));
    }

    fn presence(&mut self, session_id: &str, presence: &Presence) {
        self.send(Command::Presence {
            session: session_id.to_owned(),
            presence: presence.clone(),
        });
    }

    fn resume_saved(&mut self, token: &str, grant: &ResumeGrant, ttl: Duration) {
        self.send(Command::SaveResume {
            token: token.to_owned(),
            grant: grant.clone(),
            ttl,
        });
    }

    fn resume_touch(&mut self, tokens: &[String], ttl: Duration) {
        if !tokens.is_empty() {
            self.send(Command::TouchResume {
                tokens: tokens.to_vec(),
                ttl,
            });
        }
    }

    fn resume_revoked(&mut self, token: &str) {
        self.send(Command::RevokeResume(token.to_owned()));
    }

    fn hold_seats(&mut self, seats: &[(Arc<str>, Arc<str>)], window: Duration) {
        if !seats.is_empty() {
            self.send(Command::HoldSeats {
                seats: seats.to_vec(),
                window,
            });
        }
    }

    fn housekeeping(&mut self) {}

    fn link_up(&self) -> Option<bool> {
        Some(self.is_up())
    }
}
