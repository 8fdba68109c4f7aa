//! The churn scenario's leader: changes the session's state once a period (tempo, play,
//! seek, message, pause, in turn, so each one is a real change and bumps `version`), and
//! churns like the followers: drops, comes back after `away` with its token, and must get
//! its seat back to carry on. Time slots that fall while it is away are skipped and
//! counted; the cycle resumes where it stopped, so every change sent is a real one.
//! Against a cluster it joins the first instance and resumes on a random one each time,
//! so its seat must follow it across instances.

use crate::churn_member::{resumed, Identity, ResumeCounters};
use crate::spread::Picker;
use anyhow::{bail, Context as _};
use bandsync_client::protocol::client::{Play, Seek, SetTempo, UpdateMessage};
use bandsync_client::protocol::server::{ServerEvent, Snapshot};
use bandsync_client::protocol::{ClientEvent, JoinSession, Role};
use bandsync_client::{Incoming, WsClient};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ChurnLeader {
    /// `None` only while dropped.
    ws: Option<WsClient>,
    /// Every instance's URL, and the one it is on.
    urls: Arc<[Arc<str>]>,
    at: usize,
    picker: Picker,
    session: String,
    id: Identity,
    /// The newest version the leader has seen (its own changes come back to it).
    pub version: u64,
    pub sent: u64,
    pub skipped: u64,
}

/// The `k`th change of the cycle. From a paused session the cycle tempo, play, seek,
/// message, pause changes something every time.
fn change(k: u64) -> ClientEvent {
    match k % 5 {
        0 => ClientEvent::SetTempo(SetTempo::new(100.0 + (k % 200) as f64 * 0.5)),
        1 => ClientEvent::Play(Play::new(None)),
        2 => ClientEvent::Seek(Seek::new(k as f64)),
        3 => ClientEvent::UpdateMessage(UpdateMessage {
            text: format!("cue {k}"),
        }),
        _ => ClientEvent::Pause(Default::default()),
    }
}

fn identity(s: &Snapshot) -> Identity {
    Identity {
        client_id: s.client_id.clone(),
        role: format!("{:?}", s.role),
        token: s.resume_token.clone(),
    }
}

impl ChurnLeader {
    /// Joins `session` on `urls[0]` as its leader; `seed` picks where it resumes.
    pub async fn join(urls: Arc<[Arc<str>]>, session: &str, seed: u64) -> anyhow::Result<Self> {
        let mut ws = tokio::time::timeout(REPLY_TIMEOUT, WsClient::connect(&urls[0]))
            .await
            .context("leader connect timed out")??;
        let snap = ws
            .join(session, Some(Role::Leader), Some("churn-leader"))
            .await
            .context("leader join")?;
        if snap.role != Role::Leader {
            bail!("session {session} already has a leader");
        }
        Ok(Self {
            ws: Some(ws),
            urls,
            at: 0,
            picker: Picker::new(seed),
            session: session.to_owned(),
            id: identity(&snap),
            version: snap.version,
            sent: 0,
            skipped: 0,
        })
    }

    fn ws(&mut self) -> &mut WsClient {
        self.ws
            .as_mut()
            .expect("connected except inside drop_and_resume")
    }

    fn on_incoming(&mut self, incoming: bandsync_client::Result<Incoming>) -> anyhow::Result<()> {
        match incoming {
            Ok(Incoming::Frame { frame, .. }) => {
                match frame.event {
                    ServerEvent::StateUpdate(s) | ServerEvent::SyncResponse(s) => {
                        self.version = self.version.max(s.version);
                    }
                    ServerEvent::Error(e) => bail!("leader got an error: {e:?}"),
                    _ => {}
                }
                Ok(())
            }
            Ok(Incoming::Closed { code, reason }) => {
                bail!("server closed the leader (code {code:?}): {reason}")
            }
            Err(e) if e.is_timeout() => Ok(()),
            Err(e) => Err(e).context("leader connection"),
        }
    }

    /// Reads its socket until `until`.
    pub async fn read_until(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                incoming = self.ws().next() => self.on_incoming(incoming)?,
            }
        }
    }

    /// Drops the socket, waits `away`, resumes with its token and last version.
    async fn drop_and_resume(
        &mut self,
        away: Duration,
        counters: &ResumeCounters,
    ) -> anyhow::Result<()> {
        drop(self.ws.take()); // the TCP connection ends without a close frame
        tokio::time::sleep(away).await;
        counters.attempted.fetch_add(1, Relaxed);
        let to = self.picker.pick(self.urls.len());
        let mut ws = tokio::time::timeout(REPLY_TIMEOUT, WsClient::connect(&self.urls[to]))
            .await
            .context("leader reconnect timed out")??;
        let join = JoinSession {
            session_id: self.session.clone(),
            resume_token: Some(self.id.token.clone()),
            last_version: Some(self.version),
            ..JoinSession::default()
        };
        let snap = ws.join_with(join, REPLY_TIMEOUT).await?;
        let now = identity(&snap);
        resumed(counters, &self.id, &now, snap.resumed);
        if to != self.at {
            counters.moved.fetch_add(1, Relaxed);
        }
        self.at = to;
        if snap.role != Role::Leader {
            bail!("the leader resumed as {:?}: the seat was lost", snap.role);
        }
        self.version = self.version.max(snap.version);
        self.ws = Some(ws);
        self.id = now;
        Ok(())
    }

    /// Changes the state every `period` from `start` until `until`, and drops and resumes
    /// from `first_drop` every `every` (while a whole drop fits before `until`).
    pub async fn drive(
        &mut self,
        plan: LeaderPlan,
        counters: &ResumeCounters,
    ) -> anyhow::Result<()> {
        let LeaderPlan {
            start,
            until,
            period,
            first_drop,
            every,
            away,
        } = plan;
        // `slot`: the time slot; `self.sent`: the position in the change cycle.
        let mut slot: u32 = 0;
        let mut next_drop = first_drop;
        loop {
            let due = start + period * slot;
            if due >= until {
                return Ok(());
            }
            let drop_due = next_drop + away + Duration::from_secs(1) <= until;
            tokio::select! {
                () = tokio::time::sleep_until(due) => {
                    let next = change(self.sent);
                    self.ws().send_with_id(next, None).await?;
                    self.sent += 1;
                    slot += 1;
                }
                () = tokio::time::sleep_until(next_drop), if drop_due => {
                    self.drop_and_resume(away, counters).await?;
                    next_drop += every;
                    while start + period * slot <= Instant::now() {
                        self.skipped += 1;
                        slot += 1;
                    }
                }
                incoming = self.ws().next() => self.on_incoming(incoming)?,
            }
        }
    }

    pub async fn close(self) {
        if let Some(ws) = self.ws {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
        }
    }
}

/// When the leader changes state and when it churns.
#[derive(Debug, Clone, Copy)]
pub struct LeaderPlan {
    pub start: Instant,
    pub until: Instant,
    pub period: Duration,
    pub first_drop: Instant,
    pub every: Duration,
    pub away: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_cycle_alternates_play_and_pause() {
        let kinds: Vec<&str> = (0..10).map(|k| change(k).type_name()).collect();
        assert_eq!(
            kinds,
            ["set_tempo", "play", "seek", "update_message", "pause"].repeat(2)
        );
        let tempo = |k| match change(k) {
            ClientEvent::SetTempo(t) => t.tempo,
            _ => unreachable!(),
        };
        assert_ne!(tempo(0), tempo(5), "each tempo differs from the last");
        assert!((20.0..=400.0).contains(&tempo(995)));
    }
}
