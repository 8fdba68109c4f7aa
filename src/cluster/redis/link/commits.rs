//! Commits and loads: the scripts that change and read a session, and the gaps filled
//! from its stream.

use super::super::envelope::{Commit, Envelope};
use super::super::scripts::{COMMIT, LOAD};
use super::{new_epoch, parse_record, Link, Up};
use crate::cluster::{ClusterEvent, LeaderCheck, Loaded, Presence, Proposal, ProposalKind};
use redis::aio::{ConnectionManager, PubSubSink};
use redis::RedisResult;
use std::sync::Arc;
use std::time::Instant;

impl Link {
    /// Listens to a session's channel from here on (before reading its state, so nothing
    /// committed in between is missed).
    pub(super) async fn follow(&mut self, sink: &mut PubSubSink, session: &str) -> RedisResult<()> {
        if self.followed.insert(session.to_owned()) {
            self.count("subscribe");
            sink.subscribe(self.keys.channel(session)).await?;
        }
        Ok(())
    }

    pub(super) async fn propose(&mut self, up: &mut Up, p: &Proposal) -> RedisResult<()> {
        let session = p.record.session_id.clone();
        if !self.sequencer.is_following(&session) {
            self.follow(&mut up.sink, &session).await?;
            // Whatever this commit follows is delivered from it on (a gap is fetched).
            self.sequencer.follow(&session, p.record.version, "");
        }
        let (check, holder) = match &p.check {
            LeaderCheck::Any => ("any", ""),
            LeaderCheck::Is(None) => ("is", ""),
            LeaderCheck::Is(Some(c)) => ("is", c.as_str()),
            LeaderCheck::Lapsed(c) => ("lapsed", c.as_str()),
        };
        let record = serde_json::to_string(&p.record).unwrap_or_default();
        self.count("commit");
        let (committed, payload): (i64, String) = COMMIT
            .key(self.keys.state(&session))
            .key(self.keys.log(&session))
            .key(self.keys.lease(&session))
            .key(self.keys.channel(&session))
            .arg(record)
            .arg(check)
            .arg(holder)
            .arg(p.record.version)
            .arg(self.settings.retention.as_millis() as u64)
            .arg(self.settings.stream_length)
            .arg(&*self.instance)
            .arg(p.ticket)
            .arg(match p.kind {
                ProposalKind::Change | ProposalKind::Activate(_) => "change",
                ProposalKind::Reconcile => "reconcile",
                ProposalKind::Seed => "seed",
            })
            .arg(self.settings.recovery_window.as_millis().max(1) as u64)
            .arg(p.record.leader.as_deref().unwrap_or(""))
            .arg(new_epoch())
            .arg(scheduled_id(p.record.scheduled.map(|c| c.id)))
            .arg(scheduled_id(match p.kind {
                ProposalKind::Activate(id) => Some(id),
                _ => None,
            }))
            .invoke_async(&mut up.conn)
            .await?;
        if committed == 1 {
            if let Ok(Envelope::Commit(commit)) = serde_json::from_str(&payload) {
                let ready = self.sequencer.offer(&session, *commit, Instant::now());
                self.deliver_commits(ready).await;
            }
        } else {
            let current = parse_record(&payload, None);
            let event = ClusterEvent::Rejected {
                ticket: p.ticket,
                current,
                unreachable: false,
            };
            self.deliver(event).await;
        }
        Ok(())
    }

    pub(super) async fn load(
        &mut self,
        up: &mut Up,
        session: &str,
        token: Option<&str>,
    ) -> RedisResult<Loaded> {
        self.follow(&mut up.sink, session).await?;
        self.count("load");
        type Entries = Vec<(String, Vec<(String, String)>)>;
        type Raw = (String, u64, String, String, Vec<(String, String)>, Entries);
        let (record, version, epoch, grant, presence, entries): Raw = LOAD
            .key(self.keys.state(session))
            .key(self.keys.presence(session))
            .key(self.keys.resume(token.unwrap_or("-")))
            .key(self.keys.channel(session))
            .key(self.keys.log(session))
            .arg(if token.is_some() { "1" } else { "0" })
            .arg(&*self.instance)
            .invoke_async(&mut up.conn)
            .await?;
        self.sequencer.follow(session, version, &epoch);
        let presence = presence
            .into_iter()
            .filter(|(instance, _)| *instance != *self.instance)
            .filter(|(instance, _)| self.alive.iter().any(|a| **a == **instance))
            .filter_map(|(instance, json)| {
                Some((
                    Arc::from(instance),
                    serde_json::from_str::<Presence>(&json).ok()?,
                ))
            })
            .collect();
        // The stream's commits of this epoch up to the loaded version, for resume replay.
        let log = commits_of(entries)
            .filter(|c| c.epoch == epoch && c.v <= version)
            .map(|c| c.into_parts(&self.instance).0)
            .collect();
        Ok(Loaded {
            record: parse_record(&record, Some(version)),
            resume: serde_json::from_str(&grant).ok(),
            presence,
            log,
        })
    }

    /// Fetches what overdue gaps miss from the sessions' streams.
    pub(super) async fn fill_gaps(&mut self, conn: &mut ConnectionManager) -> RedisResult<()> {
        for gap in self.sequencer.overdue(Instant::now()) {
            self.fetch(conn, &gap.session, gap.after, gap.up_to).await?;
        }
        Ok(())
    }

    /// Delivers the commits of `session` after version `after` (up to `up_to`) that its
    /// stream still holds, then whatever was held behind them.
    pub(super) async fn fetch(
        &mut self,
        conn: &mut ConnectionManager,
        session: &str,
        after: u64,
        up_to: u64,
    ) -> RedisResult<()> {
        self.count("fetch");
        let end = if up_to == u64::MAX {
            "+".to_owned()
        } else {
            format!("{up_to}-0")
        };
        let start = format!("{}-0", after + 1);
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.keys.log(session))
            .arg(start)
            .arg(end)
            .query_async(conn)
            .await?;
        let fetched: Vec<Commit> = commits_of(entries).collect();
        if !fetched.is_empty() {
            self.metrics.cluster.gaps_recovered.inc();
        }
        let ready = self.sequencer.fill(session, fetched);
        self.deliver_commits(ready).await;
        Ok(())
    }
}

/// The commit envelopes of a stream's entries (`XRANGE` answer), in order.
fn commits_of(entries: Vec<(String, Vec<(String, String)>)>) -> impl Iterator<Item = Commit> {
    entries
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter_map(|(_, json)| match serde_json::from_str(&json).ok()? {
            Envelope::Commit(commit) => Some(*commit),
            _ => None,
        })
}

/// A scheduled change's id as the commit script stores and compares it (`''`: none).
fn scheduled_id(id: Option<u64>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}
