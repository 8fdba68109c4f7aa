//! The session leaders, through the client library's [`WsClient`]: there are few of them,
//! so the convenience of typed requests costs nothing measurable.

use crate::recorder::Recorder;
use anyhow::{bail, Context as _};
use bandsync_bench::bench_stats::bench_tempo;
use bandsync_client::protocol::client::{Play, SetTempo};
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::{ClientEvent, Role};
use bandsync_client::{Incoming, WsClient};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Leader {
    ws: WsClient,
    rec: Arc<Recorder>,
}

/// Hands out tempo indexes for a whole run (shared by every leader of `mixed`).
pub type TempoCounter = Arc<AtomicU64>;

impl Leader {
    /// Connects and joins `session` as its leader (the session must have none).
    pub async fn join(url: &str, session: &str, rec: Arc<Recorder>) -> anyhow::Result<Self> {
        let mut ws = tokio::time::timeout(REPLY_TIMEOUT, WsClient::connect(url))
            .await
            .context("leader connect timed out")?
            .with_context(|| format!("leader connecting to {url}"))?;
        let snapshot = ws
            .join(session, Some(Role::Leader), Some("bench-leader"))
            .await
            .with_context(|| format!("leader joining {session}"))?;
        if snapshot.role != Role::Leader {
            bail!(
                "session {session} already has a leader ({:?})",
                snapshot.leader_id
            );
        }
        Ok(Self { ws, rec })
    }

    /// Starts playback and waits for the `state_update` that says so.
    pub async fn play(&mut self) -> anyhow::Result<()> {
        self.ws
            .send(ClientEvent::Play(Play::new(Some(0.0))))
            .await?;
        self.ws
            .wait_for(
                |f| matches!(&f.event, ServerEvent::StateUpdate(s) if s.transport.playing),
                REPLY_TIMEOUT,
            )
            .await
            .context("waiting for play to take effect")?;
        Ok(())
    }

    /// Sends `set_tempo` `rate` times a second from `start` until `until`, each with the
    /// next unique tempo, adding `followers` (read at each send) to the expected
    /// deliveries. Reads its own socket in between (pings, its own broadcasts).
    pub async fn drive_tempo(
        &mut self,
        start: Instant,
        rate: f64,
        until: Instant,
        counter: &TempoCounter,
        followers: &AtomicU64,
    ) -> anyhow::Result<()> {
        let rec = self.rec.clone();
        self.drive_tempo_to(start, rate, until, counter, &[(&rec, followers)])
            .await
    }

    /// [`Self::drive_tempo`] for followers recorded apart (one recorder per instance of a
    /// cluster): each send is stamped in every recorder, and adds to each its followers.
    pub async fn drive_tempo_to(
        &mut self,
        start: Instant,
        rate: f64,
        until: Instant,
        counter: &TempoCounter,
        audiences: &[(&Recorder, &AtomicU64)],
    ) -> anyhow::Result<()> {
        let period = Duration::from_secs_f64(1.0 / rate);
        let mut k: u32 = 0;
        loop {
            let due = start + period * k;
            if due >= until {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => {
                    let index = counter.fetch_add(1, Relaxed);
                    let Some(tempo) = bench_tempo(index) else {
                        bail!("ran out of unique tempos (run sends too many set_tempo)");
                    };
                    for (rec, followers) in audiences {
                        rec.expected.fetch_add(followers.load(Relaxed), Relaxed);
                        rec.mark_sent(index);
                    }
                    self.ws.send_with_id(ClientEvent::SetTempo(SetTempo::new(tempo)), None).await?;
                    k += 1;
                }
                incoming = self.ws.next() => self.on_incoming(incoming)?,
            }
        }
    }

    /// Runs `work` to completion while answering this socket (pings, broadcasts): a
    /// leader that stops reading for SOCKET_PING_TIMEOUT is closed by the server.
    pub async fn while_reading<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> anyhow::Result<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                incoming = self.ws.next() => self.on_incoming(incoming)?,
            }
        }
    }

    /// Keeps reading until `until`, or earlier once `done()` holds (checked every 10 ms).
    pub async fn idle_until(
        &mut self,
        until: Instant,
        done: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        let mut check = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                _ = check.tick() => if done() { return Ok(()) },
                incoming = self.ws.next() => self.on_incoming(incoming)?,
            }
        }
    }

    fn on_incoming(&self, incoming: bandsync_client::Result<Incoming>) -> anyhow::Result<()> {
        match incoming {
            Ok(Incoming::Frame { frame, .. }) => {
                if self.rec.measuring() {
                    self.rec.frames.fetch_add(1, Relaxed);
                }
                if let ServerEvent::Error(_) | ServerEvent::RateLimitExceeded(_) = &frame.event {
                    self.rec.server_errors.fetch_add(1, Relaxed);
                    self.rec
                        .note_error(|| format!("leader got {:?}", frame.event));
                }
                Ok(())
            }
            Ok(Incoming::Closed { code, reason }) => {
                bail!("server closed the leader (code {code:?}): {reason}")
            }
            Err(e) if e.is_timeout() => Ok(()),
            Err(bandsync_client::ClientError::Decode { .. }) => {
                self.rec.undecodable.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => Err(e).context("leader connection"),
        }
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close()).await;
    }
}
