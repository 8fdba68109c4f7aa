//! Loading what a join, a listener or a `/sessions/{id}` query needs before it can go on:
//! the session (live here, revived from the cluster, or new) and a resume token issued
//! elsewhere. With the memory broker the answer is immediate; with Redis it arrives later
//! as an inbound event and the waiting request resumes from [`PendingLoad`].

use super::access::Access;
use super::session::Session;
use super::{ConnKey, Engine, SessionInfo};
use crate::cluster::Loaded;
use crate::outbox::Outbox;
use bandsync_protocol::{ErrorCode, JoinSession, ProtocolError, RequestId};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;

/// What waits for a session to load from the cluster.
pub(super) enum PendingLoad {
    Join {
        key: ConnKey,
        id: Option<RequestId>,
        join: Box<JoinSession>,
        access: Access,
    },
    Sse(Box<SseOpen>),
    Query {
        session_id: String,
        reply: oneshot::Sender<Option<SessionInfo>>,
    },
}

/// An SSE listener waiting to be let in.
pub(super) struct SseOpen {
    pub key: ConnKey,
    pub session_id: String,
    pub last_event_id: Option<u64>,
    pub outbox: Arc<Outbox<Bytes>>,
    pub access: Access,
    pub reply: oneshot::Sender<Result<(), ProtocolError>>,
}

impl Engine {
    /// The live session, revived from `record`, or new (within `MAX_SYNC_SESSIONS`).
    pub(super) fn session_for_join(
        &mut self,
        session_id: &str,
        loaded: Loaded,
    ) -> Result<Arc<str>, ProtocolError> {
        if let Some((id, _)) = self.sessions.get_key_value(session_id) {
            return Ok(id.clone());
        }
        self.check_session_room()?;
        let cap = self.settings.sse_history;
        let mut session = match loaded.record {
            Some(record) => Session::from_record(record, cap),
            None => Session::new(session_id.into(), self.clock.now_ms(), cap),
        }
        .with_state_log(self.settings.resume_history);
        if let Some(tag) = self.sse_id_tag {
            session = session.with_id_tag(tag, self.clock.now_ms());
        }
        session.remote.extend(loaded.presence);
        let now_ms = self.clock.now_ms();
        // A version that changed the sheet is never replayed (see `apply_committed`). The
        // oldest commit held is only a baseline unless it is the session's first (before
        // which there was no sheet): whether it changed the sheet is unknown.
        let (mut sheet, held) = match loaded.log.split_first() {
            Some((first, rest)) if first.version > 1 => (first.sheet.as_str(), rest),
            _ => ("", &loaded.log[..]),
        };
        for record in held {
            if record.sheet != sheet {
                session.states.restart();
            } else {
                session
                    .states
                    .record(super::commit::state_of(record, now_ms));
            }
            sheet = &record.sheet;
        }
        let id = session.id.clone();
        self.sessions.insert(id.clone(), Box::new(session));
        self.metrics.sessions.set(self.sessions.len() as i64);
        self.arm(&id);
        Ok(id)
    }

    pub(super) fn check_session_room(&self) -> Result<(), ProtocolError> {
        if self.sessions.len() >= self.settings.max_sync_sessions {
            return Err(ProtocolError::new(
                ErrorCode::SessionLimit,
                "the server holds its maximum number of sessions",
            ));
        }
        Ok(())
    }

    pub(super) fn check_capacity(&mut self, session_id: &Arc<str>) -> Result<(), ProtocolError> {
        if self.sessions[session_id].cluster_audience() >= self.settings.max_session_members {
            self.retire_if_abandoned(session_id);
            return Err(ProtocolError::new(
                ErrorCode::SessionFull,
                "the session is full",
            ));
        }
        Ok(())
    }

    /// Loads what a join or a listener needs from the cluster (the session when it is not
    /// live here; a resume token issued elsewhere), then continues with `next`: at once
    /// with the memory broker, when the answer arrives with Redis.
    pub(super) fn load_then(
        &mut self,
        session_id: &str,
        resume_token: Option<&str>,
        next: PendingLoad,
    ) {
        let live = self.sessions.contains_key(session_id);
        let token = resume_token.filter(|t| self.broker.is_shared() && !self.resume.contains(t));
        if live && token.is_none() {
            return self.loaded(next, Loaded::default());
        }
        if !live {
            if let Err(e) = self.check_session_room() {
                return self.refuse_load(next, e);
            }
        }
        let ticket = self.next_ticket();
        match self.broker.load(ticket, session_id, token) {
            Some(loaded) => self.loaded(next, loaded),
            None => {
                self.pending_loads.insert(ticket, next);
            }
        }
    }

    /// A load's answer: the waiting join, listener or query goes on.
    pub(super) fn loaded(&mut self, next: PendingLoad, loaded: Loaded) {
        match next {
            PendingLoad::Join {
                key,
                id,
                join,
                access,
            } => self.join_loaded(key, id, *join, access, loaded),
            PendingLoad::Sse(open) => {
                if open.reply.is_closed() {
                    return; // the listener left while the session loaded
                }
                let reply = open.reply;
                let result = self.open_sse(
                    open.key,
                    &open.session_id,
                    open.last_event_id,
                    open.outbox,
                    open.access,
                    loaded,
                );
                let _ = reply.send(result);
            }
            PendingLoad::Query { session_id, reply } => {
                let _ = reply.send(self.session_info(&session_id, loaded));
            }
        }
    }

    pub(super) fn refuse_load(&mut self, next: PendingLoad, error: ProtocolError) {
        match next {
            PendingLoad::Join { key, id, .. } => self.reply_error(key, id.as_ref(), error),
            PendingLoad::Sse(open) => {
                let _ = open.reply.send(Err(error));
            }
            PendingLoad::Query { reply, .. } => {
                let _ = reply.send(None);
            }
        }
    }
}
