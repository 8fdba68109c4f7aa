//! The engine's frames for this socket, as Socket.IO packets: broadcasts pass as they were
//! converted (once, by the engine), direct replies are converted here with the request id
//! put back and the acknowledgement they answer; a recovering socket's rejoin decides what
//! follows its `CONNECT` answer.

use super::{packet, Pending, Socket};
use crate::frames::WsFrame;
use crate::socketio::acks::Answer;
use crate::socketio::recovery::Membership;
use bandsync_protocol::server::HeartbeatResponse;
use bandsync_protocol::socketio::{self as wire, Envelope};
use bandsync_protocol::{encode_server_frame, RequestId, ServerEvent};
use serde::Deserialize;

/// The fields of a `snapshot` the socket keeps for its recovery record and its
/// recovery's outcome.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotFields {
    session_id: String,
    #[serde(default)]
    resume_token: String,
    #[serde(default)]
    resumed: bool,
    #[serde(default)]
    replay_count: u64,
    #[serde(default)]
    version: u64,
}

impl Socket {
    /// Moves what the engine queued into `out` as Socket.IO packets. Returns whether the
    /// outbox was closed, and why.
    pub(in crate::socketio) fn drain(
        &mut self,
        out: &mut Pending,
    ) -> Option<crate::outbox::CloseReason> {
        let mut frames = std::mem::take(&mut self.frames);
        let drained = self.outbox.drain_into(&mut frames);
        let metrics = self.ctx.metrics.clone();
        if drained.dropped_ticks > 0 {
            metrics.ticks_dropped.inc_by(drained.dropped_ticks);
        }
        // Until a recovering socket's rejoin is answered, what arrives is held back, to
        // follow its `CONNECT` answer.
        let mut held = std::mem::take(&mut self.held);
        for frame in frames.drain(..) {
            let target = match self.awaiting_rejoin.is_some() {
                true => &mut held,
                false => &mut *out,
            };
            match frame {
                WsFrame::Packet(packet) => target.push_back(packet),
                WsFrame::Text(text) | WsFrame::Deflated { text, .. } => {
                    self.convert(text.json(), target);
                }
                WsFrame::Heartbeat { id, t0, t1 } => {
                    let t2 = self.ctx.clock.now_ms();
                    let reply = ServerEvent::HeartbeatResponse(HeartbeatResponse { t0, t1, t2 });
                    self.convert(&encode_server_frame(&reply, id.as_ref(), t2), target);
                }
                // Music Share audio is binary; Socket.IO clients get its JSON events only.
                WsFrame::Binary(_) => metrics.audio_dropped.inc(),
                // Framed for a `/ws` socket only; a Socket.IO outbox never holds one.
                WsFrame::Raw { .. } => {}
            }
            if let Some(connect) = self.rejoined.take() {
                out.push_back(connect);
                out.append(&mut held);
            }
        }
        self.frames = frames;
        let overflow = held.len() > self.ctx.config.outbox_max_frames;
        self.held = held;
        if overflow {
            metrics.slow_client_disconnects.inc();
            return Some(crate::outbox::CloseReason::SlowConsumer);
        }
        drained.closed
    }

    /// A reply or event the engine addressed to this socket alone, as an envelope.
    fn convert(&mut self, json: &str, out: &mut Pending) {
        let Ok(envelope) = Envelope::parse(json) else {
            return;
        };
        if envelope.kind() == "snapshot" {
            self.remember_membership(envelope.data());
        }
        let answer = match envelope.id() {
            Some(raw) => match serde_json::from_str::<RequestId>(raw) {
                Ok(id) => self.acks.answer(&id),
                Err(_) => Answer::Plain,
            },
            None => Answer::Plain,
        };
        let (client_id, ack) = match &answer {
            Answer::Plain => (envelope.id().map(str::to_owned), None),
            Answer::Ack {
                ack,
                client_id,
                ack_only_state,
            } => {
                let client_id = client_id
                    .as_ref()
                    .map(|id| serde_json::to_string(id).expect("ids serialize"));
                if *ack_only_state && envelope.kind() == "sync_response" {
                    let argument = envelope.argument(client_id.as_deref());
                    out.push_back(packet(wire::ack_packet(*ack, &argument)));
                    return;
                }
                (client_id, Some(*ack))
            }
            Answer::Recovery { last_version } => {
                self.rejoined = self.awaiting_rejoin.take();
                if !self.recovery_needs_snapshot(&envelope, *last_version) {
                    return;
                }
                (None, None)
            }
        };
        emit(&envelope, client_id.as_deref(), ack, out);
    }

    /// The answer to a recovery's rejoin: a snapshot the client does not need when every
    /// missed event was replayed before it (or none was missed); otherwise (the replay
    /// log no longer reaches back, the token expired) it gets the snapshot, its state.
    fn recovery_needs_snapshot(&self, envelope: &Envelope<'_>, last_version: Option<u64>) -> bool {
        if envelope.kind() != "snapshot" {
            return true;
        }
        let Ok(fields) = serde_json::from_str::<SnapshotFields>(envelope.data()) else {
            return true;
        };
        let complete = fields.replay_count > 0 || Some(fields.version) == last_version;
        !(fields.resumed && complete)
    }

    fn remember_membership(&mut self, data: &str) {
        let (Some(connected), Ok(fields)) = (
            &mut self.connected,
            serde_json::from_str::<SnapshotFields>(data),
        ) else {
            return;
        };
        if !fields.resume_token.is_empty() {
            connected.membership = Some(Membership {
                session_id: fields.session_id,
                resume_token: fields.resume_token,
            });
        }
    }
}

/// Queues `envelope` as an event carrying `id` (raw JSON), and as acknowledgement `ack`.
pub(super) fn emit(envelope: &Envelope<'_>, id: Option<&str>, ack: Option<u64>, out: &mut Pending) {
    let argument = envelope.argument(id);
    let event = wire::event_packet(envelope.kind(), &argument, envelope.offset());
    out.push_back(packet(event));
    if let Some(ack) = ack {
        out.push_back(packet(wire::ack_packet(ack, &argument)));
    }
}
