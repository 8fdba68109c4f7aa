//! The request/reply layer of [`WsClient`]: send with a fresh id, read until the frame
//! carrying that id, keep everything else for later `next` calls in arrival order.
//!
//! Kept apart from the connection itself (`ws.rs`), which only moves frames.

use super::{Incoming, WsClient, DEFAULT_REQUEST_TIMEOUT};
use crate::clock::wall_clock_ms;
use crate::error::{ClientError, Result};
use bandsync_protocol::client::Heartbeat;
use bandsync_protocol::server::{ServerEvent, SessionState, Snapshot};
use bandsync_protocol::timeline::ClockSample;
use bandsync_protocol::{ClientEvent, JoinSession, Role, ServerFrame};
use std::time::Duration;

impl WsClient {
    /// Sends `event` with a fresh id and waits for the frame that carries the same id
    /// (whatever its type: the reply, an `error` or `rate_limit_exceeded`). Frames that
    /// arrive meanwhile are kept for later [`Self::next`] calls, in order.
    pub async fn request(&mut self, event: ClientEvent, timeout: Duration) -> Result<ServerFrame> {
        self.request_incoming(event, timeout)
            .await
            .map(|(frame, _)| frame)
    }

    /// Joins `session_id` and returns the `snapshot`. An `error` reply becomes
    /// [`ClientError::Server`] with its code. Asking for `Role::Leader` while the seat is
    /// taken joins as follower: check `snapshot.role`.
    pub async fn join(
        &mut self,
        session_id: &str,
        role: Option<Role>,
        name: Option<&str>,
    ) -> Result<Snapshot> {
        let join = JoinSession {
            session_id: session_id.to_owned(),
            name: name.map(str::to_owned),
            role,
            resume_token: None,
            ..Default::default()
        };
        self.join_with(join, DEFAULT_REQUEST_TIMEOUT).await
    }

    /// [`Self::join`] presenting `credentials` (a session token, the share token).
    pub async fn join_as(
        &mut self,
        session_id: &str,
        role: Option<Role>,
        name: Option<&str>,
        credentials: &crate::Credentials,
    ) -> Result<Snapshot> {
        let join = credentials.join(session_id, role, name);
        self.join_with(join, DEFAULT_REQUEST_TIMEOUT).await
    }

    /// [`Self::join`] with every field of `join_session` (e.g. a `resumeToken`).
    pub async fn join_with(&mut self, join: JoinSession, timeout: Duration) -> Result<Snapshot> {
        let frame = self
            .request(ClientEvent::JoinSession(join), timeout)
            .await?;
        match frame.event {
            ServerEvent::Snapshot(snapshot) => Ok(snapshot),
            other => Err(unexpected_reply("snapshot", other)),
        }
    }

    /// Asks for the session state (`sync_request` → `sync_response`).
    pub async fn sync(&mut self, timeout: Duration) -> Result<SessionState> {
        let frame = self.request(ClientEvent::SyncRequest, timeout).await?;
        match frame.event {
            ServerEvent::SyncResponse(state) => Ok(state),
            other => Err(unexpected_reply("sync_response", other)),
        }
    }

    /// One heartbeat round trip: the clock sample it yields (feed it to a
    /// [`crate::ClockEstimator`]).
    pub async fn heartbeat(&mut self, timeout: Duration) -> Result<ClockSample> {
        let t0 = wall_clock_ms();
        let event = ClientEvent::Heartbeat(Heartbeat { t0 });
        let (frame, t3) = self.request_incoming(event, timeout).await?;
        match frame.event {
            ServerEvent::HeartbeatResponse(r) => {
                Ok(ClockSample::from_heartbeat(r.t0, r.t1, r.t2, t3))
            }
            other => Err(unexpected_reply("heartbeat_response", other)),
        }
    }

    /// Skips frames until one satisfies `pred` and returns it; the skipped frames are
    /// gone. Buffered frames are looked at first. A close while waiting is
    /// [`ClientError::Closed`], no match in time [`ClientError::Timeout`].
    pub async fn wait_for<F>(&mut self, mut pred: F, timeout: Duration) -> Result<ServerFrame>
    where
        F: FnMut(&ServerFrame) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let incoming = match self.buffered.pop_front() {
                Some(buffered) => buffered?,
                None => tokio::time::timeout_at(deadline, self.read_socket())
                    .await
                    .map_err(|_| ClientError::Timeout(timeout))??,
            };
            match incoming {
                Incoming::Frame { frame, .. } if pred(&frame) => return Ok(frame),
                Incoming::Frame { .. } => {}
                Incoming::Closed { code, reason } => {
                    return Err(ClientError::Closed { code, reason })
                }
            }
        }
    }

    /// Sends with a fresh id and reads the socket until the reply; returns it with the
    /// wall-clock time it arrived.
    async fn request_incoming(
        &mut self,
        event: ClientEvent,
        timeout: Duration,
    ) -> Result<(ServerFrame, f64)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.send(event).await?;
        loop {
            let incoming = tokio::time::timeout_at(deadline, self.read_socket())
                .await
                .map_err(|_| ClientError::Timeout(timeout))?;
            match incoming {
                Ok(Incoming::Frame { frame, wall_ms, .. }) if frame.id.as_ref() == Some(&id) => {
                    return Ok((frame, wall_ms))
                }
                // Sticky: later `next` calls return `Closed` again after the buffer.
                Ok(Incoming::Closed { code, reason }) => {
                    return Err(ClientError::Closed { code, reason })
                }
                frame @ Ok(Incoming::Frame { .. }) => self.buffered.push_back(frame),
                // Non-fatal: keep it in order for the caller to see.
                bad @ Err(ClientError::Decode { .. } | ClientError::UnexpectedBinary(_)) => {
                    self.buffered.push_back(bad)
                }
                Err(fatal) => return Err(fatal),
            }
        }
    }
}

/// The typed error for a reply of the wrong type: `error` keeps its code.
pub fn unexpected_reply(expected: &'static str, event: ServerEvent) -> ClientError {
    match event {
        ServerEvent::Error(e) => ClientError::Server {
            code: e.code,
            message: e.message,
        },
        ServerEvent::RateLimitExceeded(r) => ClientError::RateLimited {
            retry_after_ms: r.retry_after_ms,
        },
        other => ClientError::UnexpectedReply {
            expected,
            got: other.type_name(),
        },
    }
}
