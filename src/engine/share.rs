//! Music Share push delivery: a share session is the bandsync session with the same id, so
//! its WebSocket members get audio as binary frames and its SSE listeners as JSON events,
//! plus now-playing metadata and the end of the share. A WebSocket client may also share:
//! `share_start` with the API's bearer token, then binary audio frames.

use super::fanout::{after_push, Audience};
use super::{ConnKey, Engine, Peer};
use crate::frames::{sse_event, WsFrame};
use crate::share::audio::AudioChunk;
use crate::share::replica::ShareChange;
use crate::share::{auth, valid_id, ShareError};
use bandsync_protocol::audio::decode_audio_frame;
use bandsync_protocol::server::{self as events, ErrorEvent, RateLimitExceeded};
use bandsync_protocol::{encode_server_frame, ErrorCode, ProtocolError, RequestId, ServerEvent};
use bytes::Bytes;
use std::sync::Arc;

/// What the share side tells the engine, so push receivers get it too.
#[derive(Debug, Clone)]
pub enum ShareNotice {
    /// A change of a share session: posted through the REST API, timed out, or applied
    /// from another instance (the same type the registry replicates).
    Change(ShareChange),
    /// The cluster's answer to a WebSocket sharer's claim (see [`ShareClaim`]).
    Claimed {
        claim: ShareClaim,
        outcome: Result<(), ShareError>,
    },
}

/// A WebSocket sharer's start, claimed in the cluster before it happens here (as the
/// REST start is), so `MAX_SESSIONS` holds cluster-wide for it too.
#[derive(Debug, Clone)]
pub struct ShareClaim {
    pub key: ConnKey,
    pub id: Option<RequestId>,
    pub session: String,
    pub now_ms: f64,
    /// Give a granted claim back (the start was then refused here); no answer follows.
    pub release: bool,
}

/// Where the engine queues claims (with `REDIS_URL`; bounded, never waited on).
pub type ShareClaims = tokio::sync::mpsc::Sender<ShareClaim>;

/// The error event for a share API refusal.
fn share_error(error: &ShareError) -> ServerEvent {
    let code = match error {
        ShareError::Unauthorized(_) => ErrorCode::Unauthorized,
        ShareError::InvalidSessionId => ErrorCode::InvalidSessionId,
        ShareError::TooManySessions(_) | ShareError::AddressLimit(_) => ErrorCode::SessionLimit,
        ShareError::NotFound | ShareError::Ended => ErrorCode::NotInSession,
        _ => ErrorCode::InvalidMessage,
    };
    ServerEvent::Error(ErrorEvent {
        code,
        message: error.to_string(),
    })
}

impl Engine {
    /// `share_start {token}`: this connection becomes a sharer of its session.
    pub(super) fn share_start(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
        token: &str,
    ) {
        let Some(client) = self.conns.get(&key).map(|c| c.client_ip) else {
            return;
        };
        // A banned address is refused before its token is even compared; the reply says
        // how long to wait, like any rate limit.
        if let Err(retry) = self.auth_failures.check(client) {
            let event = ServerEvent::RateLimitExceeded(RateLimitExceeded {
                retry_after_ms: retry.millis(),
            });
            return self.send_to(key, &event, id.as_ref());
        }
        let configured = self.share.settings().bearer_token.clone();
        if let Err(denied) = auth::check(configured.as_deref(), Some(token.as_bytes())) {
            if denied == auth::Denied::Wrong {
                self.auth_failures.record_failure(client, "ws");
            }
            let error = ProtocolError::new(ErrorCode::Unauthorized, denied.message());
            return self.reply_error(key, id.as_ref(), error);
        }
        if !valid_id(session_id) {
            let error = ProtocolError::new(
                ErrorCode::InvalidSessionId,
                "share sessions have 6-digit ids",
            );
            return self.reply_error(key, id.as_ref(), error);
        }
        let now_ms = self.clock.now_ms();
        if let Some(claims) = &self.share_claims {
            if !self.share.is_active(session_id) {
                let claim = ShareClaim {
                    key,
                    id: id.clone(),
                    session: session_id.to_string(),
                    now_ms,
                    release: false,
                };
                // Continues in `share_claimed`; a full queue decides here.
                if claims.try_send(claim).is_ok() {
                    return;
                }
            }
        }
        self.finish_share_start(key, id, session_id, now_ms);
    }

    /// The cluster answered a WebSocket sharer's claim: a refusal is the sharer's answer;
    /// a claim granted, or refused because the share runs on another instance, goes on
    /// (the sharer attaches to it, as on one instance).
    fn share_claimed(&mut self, claim: ShareClaim, outcome: Result<(), ShareError>) {
        let Some(session_id) = self
            .conns
            .get(&claim.key)
            .and_then(|c| c.session.clone())
            .filter(|s| **s == *claim.session)
        else {
            return; // it left the session meanwhile
        };
        match outcome {
            Ok(()) => {
                let started =
                    self.finish_share_start(claim.key, claim.id.clone(), &session_id, claim.now_ms);
                if !started {
                    // Refused here after all (a per-address limit): free the cluster's slot.
                    if let Some(claims) = &self.share_claims {
                        let _ = claims.try_send(ShareClaim {
                            release: true,
                            ..claim
                        });
                    }
                }
            }
            Err(ShareError::Conflict) => {
                self.finish_share_start(claim.key, claim.id, &session_id, claim.now_ms);
            }
            Err(e) => {
                self.metrics.count_refused_share_start(&e);
                self.send_to(claim.key, &share_error(&e), claim.id.as_ref());
            }
        }
    }

    /// Starts (or joins) the share here and tells the sharer; false when it was refused.
    fn finish_share_start(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
        now_ms: f64,
    ) -> bool {
        let Some(client) = self.conns.get(&key).map(|c| c.client_ip) else {
            return false;
        };
        if let Err(e) = self.share.attach_or_start(session_id, now_ms, client) {
            self.metrics.count_refused_share_start(&e);
            let event = match e {
                ShareError::RateLimited { retry_after_ms, .. } => {
                    ServerEvent::RateLimitExceeded(RateLimitExceeded { retry_after_ms })
                }
                e => share_error(&e),
            };
            self.send_to(key, &event, id.as_ref());
            return false;
        }
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.sharing = Some(session_id.clone());
            // It proved the share token: it may also receive the share's metadata.
            conn.access.share_ok = true;
        }
        let started = ServerEvent::ShareStarted(events::ShareStarted {
            session_id: session_id.to_string(),
        });
        self.send_to(key, &started, id.as_ref());
        true
    }

    /// `share_stop`: ends the share this connection runs; the sharer gets the totals.
    pub(super) fn share_stop(&mut self, key: ConnKey, id: Option<RequestId>) {
        let Some(session_id) = self.conns.get_mut(&key).and_then(|c| c.sharing.take()) else {
            let error =
                ProtocolError::new(ErrorCode::NotInSession, "this connection is not sharing");
            return self.reply_error(key, id.as_ref(), error);
        };
        match self.share.stop(&session_id) {
            Ok((duration, bytes)) => {
                let ended = ServerEvent::ShareEnded(events::ShareEnded {
                    session_id: session_id.to_string(),
                    reason: "stopped".into(),
                    session_duration: Some(duration),
                    bytes_transferred: Some(bytes),
                });
                self.send_to(key, &ended, id.as_ref());
                // The totals are the sharer's business; the others only learn it ended.
                let for_others = ServerEvent::ShareEnded(events::ShareEnded {
                    session_id: session_id.to_string(),
                    reason: "stopped".into(),
                    session_duration: None,
                    bytes_transferred: None,
                });
                self.share_broadcast(&session_id, &for_others, Some(key));
            }
            Err(e) => self.send_to(key, &share_error(&e), id.as_ref()),
        }
    }

    /// A binary frame from a WebSocket: audio from an authorized sharer.
    pub(super) fn audio_in(&mut self, key: ConnKey, frame: Bytes) {
        let Some((session_id, client)) = self
            .conns
            .get(&key)
            .and_then(|c| Some((c.sharing.clone()?, c.client_ip)))
        else {
            // For anyone but a sharer a binary frame is just not a valid (JSON) frame.
            let error = ProtocolError::new(
                ErrorCode::InvalidMessage,
                "binary frames carry shared audio: send share_start with the share token first",
            );
            return self.reply_error(key, None, error);
        };
        let (header, samples) = match decode_audio_frame(&frame) {
            Ok((header, samples)) => (header, frame.slice_ref(samples)),
            Err(e) => {
                return self.reply_error(
                    key,
                    None,
                    ProtocolError::new(ErrorCode::InvalidMessage, e.to_string()),
                )
            }
        };
        match self
            .share
            .post_audio_frame(&session_id, header, samples, client)
        {
            Ok(chunk) => {
                self.metrics.audio_chunks_in.inc();
                self.fan_out_audio(&session_id, &chunk, Some(key));
            }
            Err(ShareError::RateLimited { retry_after_ms, .. }) => {
                let event = ServerEvent::RateLimitExceeded(RateLimitExceeded { retry_after_ms });
                self.send_to(key, &event, None);
            }
            Err(e) => self.send_to(key, &share_error(&e), None),
        }
    }

    /// A change made through the REST API, pushed to the session's receivers.
    pub(super) fn share_notice(&mut self, notice: ShareNotice) {
        match notice {
            ShareNotice::Claimed { claim, outcome } => self.share_claimed(claim, outcome),
            // The start itself tells receivers nothing: what it shares will.
            ShareNotice::Change(ShareChange::Started { .. }) => {}
            ShareNotice::Change(ShareChange::Metadata { id: session, json }) => {
                if let Some(event) = metadata_event(&session, &json) {
                    self.share_broadcast(&session, &event, None);
                }
            }
            ShareNotice::Change(ShareChange::Audio { id: session, chunk }) => {
                self.metrics.audio_chunks_in.inc();
                self.fan_out_audio(&session, &chunk, None);
            }
            ShareNotice::Change(ShareChange::Ended {
                id: session,
                reason,
            }) => {
                for conn in self.conns.values_mut() {
                    if conn.sharing.as_deref() == Some(session.as_str()) {
                        conn.sharing = None;
                    }
                }
                let ended = ServerEvent::ShareEnded(events::ShareEnded {
                    session_id: session.clone(),
                    reason: reason.into(),
                    session_duration: None,
                    bytes_transferred: None,
                });
                self.share_broadcast(&session, &ended, None);
            }
        }
    }

    /// Broadcasts a share event to the session's authorized receivers only (see
    /// [`super::Access::share_ok`]); the others keep getting the sync events alone.
    fn share_broadcast(&mut self, session_id: &str, event: &ServerEvent, except: Option<ConnKey>) {
        self.broadcast(session_id, event, Audience::ShareReceivers { except });
    }

    /// Queues one chunk for every receiver: the binary frame (made once) for WebSocket
    /// members, the JSON event (made once) for SSE listeners, authorized receivers only.
    /// Audio is drop-oldest per receiver, so a slow receiver loses old audio and never
    /// holds up the others.
    fn fan_out_audio(
        &mut self,
        session_id: &str,
        chunk: &Arc<AudioChunk>,
        except: Option<ConnKey>,
    ) {
        let now_ms = self.clock.now_ms();
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let conns = &self.conns;
        let authorized = |key: &ConnKey| conns.get(key).is_some_and(|c| c.access.share_ok);
        let frame = WsFrame::Binary(chunk.wire_frame().clone());
        for (key, outbox) in &session.members {
            if Some(*key) != except && authorized(key) {
                let result = outbox.push_audio(frame.clone());
                after_push(
                    result,
                    outbox,
                    &mut self.wakes.ws,
                    &self.metrics,
                    &session.id,
                );
            }
        }
        if session.listeners.keys().any(authorized) {
            let json = encode_server_frame(&audio_event(session_id, chunk), None, now_ms);
            let sse = sse_event(session.next_event_id(), &json);
            let receivers = session.listeners.iter().filter(|(key, _)| authorized(key));
            for (_, outbox) in receivers {
                let result = outbox.push_audio(sse.clone());
                after_push(
                    result,
                    outbox,
                    &mut self.wakes.sse,
                    &self.metrics,
                    &session.id,
                );
            }
        }
    }

    /// A receiver that just arrived gets the current metadata and the last `AUDIO_BURST_MS`
    /// of audio at once, so playback can start without waiting for the buffer to refill.
    pub(super) fn share_burst(&mut self, key: ConnKey, session_id: &str) {
        if !valid_id(session_id) || !self.share_receiver(key) {
            return;
        }
        if let Some(event) = self
            .share
            .current_metadata(session_id)
            .and_then(|json| metadata_event(session_id, &json))
        {
            self.send_to(key, &event, None);
        }
        let chunks = self
            .share
            .recent_audio(session_id, self.audio_burst.as_secs_f64());
        if chunks.is_empty() {
            return;
        }
        let now_ms = self.clock.now_ms();
        let next_id = self
            .sessions
            .get(session_id)
            .map_or(0, |s| s.current_event_id());
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        for chunk in chunks {
            let result = match &conn.peer {
                Peer::Ws(outbox) => outbox.push_audio(WsFrame::Binary(chunk.wire_frame().clone())),
                Peer::Sse(outbox) => {
                    let json = encode_server_frame(&audio_event(session_id, &chunk), None, now_ms);
                    outbox.push_audio(sse_event(next_id, &json))
                }
            };
            if result.is_err() {
                break;
            }
        }
        match &conn.peer {
            Peer::Ws(outbox) => outbox.wake(),
            Peer::Sse(outbox) => outbox.wake(),
        }
    }

    /// Tells the share registry a session's current push audience (with its `room_stats`).
    pub(super) fn share_audience_changed(&self, session_id: &str) {
        let audience = self.sessions.get(session_id).map_or(0, |s| s.audience());
        self.report_push_audience(session_id, audience);
    }

    /// Tells the share registry how many push receivers a session has (`listenerCount`).
    pub(super) fn report_push_audience(&self, session_id: &str, audience: usize) {
        if valid_id(session_id) {
            self.share.set_push_audience(session_id, audience);
        }
    }
}

fn metadata_event(session_id: &str, json: &[u8]) -> Option<ServerEvent> {
    let metadata = serde_json::from_slice(json).ok()?;
    Some(ServerEvent::ShareMetadata(events::ShareMetadata {
        session_id: session_id.to_owned(),
        metadata,
    }))
}

fn audio_event(session_id: &str, chunk: &AudioChunk) -> ServerEvent {
    ServerEvent::AudioChunk(events::AudioChunk {
        session_id: session_id.to_owned(),
        sequence_number: chunk.header.sequence,
        sample_rate: chunk.header.sample_rate,
        channels: chunk.header.channels,
        format: chunk.header.format.as_str().to_owned(),
        timestamp: chunk.header.timestamp,
        data: chunk.base64().to_owned(),
    })
}
