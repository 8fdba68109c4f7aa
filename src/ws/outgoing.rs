//! Writing one WebSocket: drain everything the outbox holds, feed it, flush once.

use super::connection::{close_frame, Socket};
use crate::context::AppContext;
use crate::deflate;
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::server::HeartbeatResponse;
use bandsync_protocol::{encode_server_frame, ServerEvent};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The socket can no longer be written.
#[derive(Debug)]
pub(super) struct Broken;

/// Writes what the outbox holds (and whatever was fed before, such as a ping), then flushes
/// once. Returns the reason when the outbox was closed; its close frame has then been sent.
pub(super) async fn write_pending(
    socket: &mut Socket,
    outbox: &Outbox<WsFrame>,
    ctx: &AppContext,
    frames: &mut Vec<WsFrame>,
) -> Result<Option<CloseReason>, Broken> {
    let drained = outbox.drain_into(frames);
    let deflate = outbox.deflate();
    let (mut count, mut bytes, mut deflated_count) = (0u64, 0u64, 0u64);
    for frame in frames.drain(..) {
        // Bytes counts the payload as written: compressed when it went out compressed.
        let message = match frame {
            WsFrame::Deflated { deflated, .. } if deflate => {
                deflated_count += 1;
                bytes += deflated.len() as u64;
                deflate::compressed_text(deflated)
            }
            // `Packet`s are queued only for Socket.IO outboxes, never for this writer's.
            WsFrame::Text(text) | WsFrame::Deflated { text, .. } | WsFrame::Packet(text) => {
                bytes += text.len() as u64;
                Message::Text(text)
            }
            WsFrame::Binary(audio) => {
                bytes += audio.len() as u64;
                Message::Binary(audio)
            }
            WsFrame::Heartbeat { id, t0, t1 } => {
                let t2 = ctx.clock.now_ms();
                let reply = ServerEvent::HeartbeatResponse(HeartbeatResponse { t0, t1, t2 });
                let text = Utf8Bytes::from(encode_server_frame(&reply, id.as_ref(), t2));
                bytes += text.len() as u64;
                Message::Text(text)
            }
        };
        count += 1;
        socket.feed(message).await.map_err(|_| Broken)?;
    }
    let metrics = &ctx.metrics;
    if count > 0 {
        metrics
            .messages_out
            .with_label_values(&["ws"])
            .inc_by(count);
        metrics.bytes_out.with_label_values(&["ws"]).inc_by(bytes);
    }
    if deflated_count > 0 {
        metrics
            .deflate_messages
            .with_label_values(&["out"])
            .inc_by(deflated_count);
    }
    if drained.dropped_ticks > 0 {
        metrics.ticks_dropped.inc_by(drained.dropped_ticks);
    }
    if drained.dropped_audio > 0 {
        metrics.audio_dropped.inc_by(drained.dropped_audio);
    }
    if let Some(reason) = drained.closed {
        if let Some(frame) = close_frame(reason) {
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
        return Ok(Some(reason));
    }
    socket.flush().await.map_err(|_| Broken)?;
    Ok(None)
}
