//! The queue from connections into the engine, with async backpressure.
//!
//! A bounded crossbeam channel: lock-free for the many connection tasks that push, and the
//! engine thread can wait on it with a precise deadline (`recv_deadline`), which is what
//! keeps ticks on time. When the engine is a task of the runtime instead (one core, see
//! `engine::waiting`), every push also signals a [`Notify`] that wakes it.
//!
//! Connection tasks are async and must not block a runtime thread, so a full queue makes
//! them wait on a [`Notify`] that the engine signals after each drain: backpressure flows
//! to the socket (we stop reading it) instead of growing a queue.

use crate::auth::jwt::Grant;
use crate::frames::WsFrame;
use crate::outbox::Outbox;
use bandsync_protocol::{ClientEvent, ProtocolError, RequestId};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_util::future::{ready, BoxFuture, Either, Ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

/// What [`EngineHandle::send`] returns: the outcome when the queue took the message at
/// once, or the wait for room when it was full.
/// It borrows nothing, so a connection can keep it in its own state while it waits.
pub type Sending = Either<Ready<Result<(), EngineStopped>>, WaitingForRoom>;

/// A message the engine's queue had no room for, offered again as room comes.
pub type WaitingForRoom = BoxFuture<'static, Result<(), EngineStopped>>;

/// The outcome of verifying a `join_session`'s token off the engine thread.
pub type Verified = Result<Grant, crate::auth::AuthError>;

/// Server-side key of one connection. Never sent to clients (they see `clientId`).
pub type ConnKey = u64;

/// The hasher of the maps keyed by [`ConnKey`]. The keys come from the server's own counter,
/// so nobody can choose them to collide (what SipHash, std's default, defends against), and
/// a join looks these maps up a few dozen times: foldhash, hashbrown's own default, hashes
/// a `u64` in a few instructions where SipHash takes about a hundred.
pub type ConnKeyHasher = foldhash::fast::RandomState;

/// Everything the engine is told.
pub enum Inbound {
    /// A WebSocket finished its upgrade.
    OpenWs {
        key: ConnKey,
        outbox: Arc<Outbox<WsFrame>>,
        /// Who the client is, for per-address limits (see `crate::limits::client_ip`).
        client_ip: std::net::IpAddr,
        /// Authenticated mode: the grant of a `?token=` on the `/ws` URL, used by every join
        /// on this socket that carries no `token` of its own.
        url_grant: Option<Grant>,
    },
    /// A decoded, validated event from a WebSocket.
    Command {
        key: ConnKey,
        id: Option<RequestId>,
        event: ClientEvent,
        /// When the frame was read off the socket (for the fan-out latency metric).
        received: Instant,
        /// Authenticated mode: a `join_session`'s `token`, verified by the connection task
        /// (an RS256/ES256 check takes hundreds of microseconds: not on the engine thread).
        verified: Option<Verified>,
        /// A Socket.IO acknowledgement waits for this event: it gets an answer even where
        /// the contract has none (a `sync_response` once applied). Always false on `/ws`.
        ack: bool,
    },
    /// A WebSocket ended, for whatever reason.
    ClosedWs { key: ConnKey },
    /// An SSE listener wants to follow a session. The reply tells the HTTP handler whether
    /// to start streaming or refuse.
    OpenSse {
        key: ConnKey,
        session_id: String,
        last_event_id: Option<u64>,
        outbox: Arc<Outbox<Bytes>>,
        /// The access the stream was admitted with (checked by the HTTP handler).
        access: super::Access,
        reply: oneshot::Sender<Result<(), ProtocolError>>,
    },
    /// An SSE stream ended.
    ClosedSse { key: ConnKey },
    /// `GET /sessions/{id}`.
    Query {
        session_id: String,
        reply: oneshot::Sender<Option<super::SessionInfo>>,
    },
    /// A binary frame from a WebSocket (audio from a sharer).
    AudioIn { key: ConnKey, frame: Bytes },
    /// A change made through the Music Share REST API, for push receivers.
    Share(super::ShareNotice),
    /// An answer or news from the cluster (see `cluster::ClusterEvent`).
    Cluster(crate::cluster::ClusterEvent),
    /// A Stream Manager change for the members of the sync session of the same id.
    StreamEvent {
        session_id: String,
        event: serde_json::Value,
    },
    /// Close every connection (1001 / final SSE event) and stop.
    Shutdown,
}

/// The connections' side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Inbound>,
    room: Arc<Notify>,
    on_full: Arc<dyn Fn() + Send + Sync>,
    /// Cleared when the engine thread stops (shutdown, or a fault it could not contain).
    alive: Arc<AtomicBool>,
    /// When the engine is a task of the runtime (`engine::waiting`): signalled after every
    /// message queued, to wake it. A thread of its own waits in the queue itself.
    arrivals: Option<Arc<Notify>>,
}

/// The engine's side of the queue.
pub struct EngineInbox {
    pub rx: Receiver<Inbound>,
    room: Arc<Notify>,
}

/// The engine has stopped; nothing more will be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session engine has stopped")]
pub struct EngineStopped;

pub fn channel(
    capacity: usize,
    on_full: Arc<dyn Fn() + Send + Sync>,
    arrivals: Option<Arc<Notify>>,
) -> (EngineHandle, EngineInbox) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let room = Arc::new(Notify::new());
    (
        EngineHandle {
            tx,
            room: room.clone(),
            on_full,
            alive: Arc::new(AtomicBool::new(true)),
            arrivals,
        },
        EngineInbox { rx, room },
    )
}

impl EngineHandle {
    /// Whether the engine thread is still running: `/health` reports on it.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    pub(super) fn alive_flag(&self) -> Arc<AtomicBool> {
        self.alive.clone()
    }

    /// Sends to the engine, waiting (asynchronously) while its queue is full.
    ///
    /// The message is offered at once, when this is called; the future only reports the
    /// outcome (and, when the queue was full, waits for room and offers it again). That
    /// keeps the future small: an `async fn` holding the message across its wait would
    /// make every caller's future as large as an [`Inbound`] twice over, and callers are
    /// the connection tasks, whose futures live as long as an idle connection. A `/ws`
    /// connection keeps only the slow path's box, and only while the queue is full.
    pub fn send(&self, msg: Inbound) -> Sending {
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.announce();
                Either::Left(ready(Ok(())))
            }
            Err(TrySendError::Disconnected(_)) => Either::Left(ready(Err(EngineStopped))),
            Err(TrySendError::Full(back)) => {
                (self.on_full)();
                let handle = self.clone();
                Either::Right(Box::pin(async move { handle.send_when_room(back).await }))
            }
        }
    }

    /// The slow path of [`EngineHandle::send`]: the queue was full.
    async fn send_when_room(&self, mut msg: Inbound) -> Result<(), EngineStopped> {
        // `send` counted the full queue that sent us here; a retry failing before any wait
        // is the same full queue.
        let mut counted = true;
        loop {
            // Register interest before trying, so a drain between the try and the wait
            // still wakes us.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.tx.try_send(msg) {
                Ok(()) => {
                    self.announce();
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => return Err(EngineStopped),
                Err(TrySendError::Full(back)) => {
                    if !std::mem::take(&mut counted) {
                        (self.on_full)();
                    }
                    msg = back;
                    room.await;
                }
            }
        }
    }

    /// Sends without waiting; for `Drop` paths that cannot await. Fails when full.
    pub fn try_send(&self, msg: Inbound) -> Result<(), Box<Inbound>> {
        self.tx
            .try_send(msg)
            .map_err(|e| Box::new(e.into_inner()))?;
        self.announce();
        Ok(())
    }

    /// Wakes an engine that runs as a task (it may be waiting for this message).
    fn announce(&self) {
        if let Some(arrivals) = &self.arrivals {
            arrivals.notify_one();
        }
    }
}

impl EngineInbox {
    /// Tells waiting senders there is room again. Called after every drain.
    pub fn signal_room(&self) {
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_queue_waits_instead_of_dropping() {
        let (handle, inbox) = channel(1, Arc::new(|| {}), None);
        handle.send(Inbound::ClosedWs { key: 1 }).await.unwrap();
        let second = tokio::spawn({
            let handle = handle.clone();
            async move { handle.send(Inbound::ClosedWs { key: 2 }).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "sender must wait while the queue is full"
        );
        assert!(matches!(
            inbox.rx.try_recv(),
            Ok(Inbound::ClosedWs { key: 1 })
        ));
        inbox.signal_room();
        tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(
            inbox.rx.try_recv(),
            Ok(Inbound::ClosedWs { key: 2 })
        ));
    }

    #[tokio::test]
    async fn a_stopped_engine_is_reported() {
        let (handle, inbox) = channel(4, Arc::new(|| {}), None);
        drop(inbox);
        assert_eq!(handle.send(Inbound::Shutdown).await, Err(EngineStopped));
    }
}
