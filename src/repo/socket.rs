//! `GET /stream/{repoId}` with `Upgrade: websocket`: a listen-only WebSocket of a
//! repository, for clients that want the samples as binary instead of base64 or JSON text.
//!
//! The same messages as over SSE, one text frame each. With `?encoding=f32` (the default
//! here) or `i16`, a composition is a text frame with the `audio_buffer` message whose
//! `buffer.channels` is `[]` and `binary` is `"BSA1"`, followed at once by one binary frame
//! in bandsync's audio frame format (`BSA1`: a 28-byte header, then the samples
//! interleaved). `?encoding=json` sends the SSE message as one text frame.
//!
//! Both frames are built once per composition and shared by every listener. The client
//! should send nothing but pings and a close; anything else is read and ignored.

use super::hub::RepoFrame;
use super::listen::Subscription;
use crate::context::AppContext;
use crate::outbox::CloseReason;
use crate::repo::composition::frame_json;
use crate::ws::upgrade::{spawn_upgraded, switching_protocols, ServerSocket};
use bandsync_protocol::repo::Encoding;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Upgrades `req` (already checked: `accept` is its `Sec-WebSocket-Accept`) and serves
/// the subscription on the socket.
pub fn serve_upgrade<B: Send + 'static>(
    mut req: http::Request<B>,
    ctx: Arc<AppContext>,
    accept: &str,
    sub: Subscription,
) -> http::Response<crate::http::errors::Body> {
    spawn_upgraded(&mut req, &ctx, false, move |socket, ctx| async move {
        serve(socket, &ctx, sub).await;
    });
    switching_protocols(accept, None)
}

/// The messages of one queued frame in the listener's encoding.
fn messages(frame: RepoFrame, encoding: Encoding) -> impl Iterator<Item = Message> {
    let text = |bytes| Message::Text(Utf8Bytes::try_from(bytes).expect("frames are JSON text"));
    let (first, second) = match frame {
        RepoFrame::Message(sse) => (text(frame_json(&sse)), None),
        RepoFrame::Composition(c) => match c.ws_frames(encoding) {
            Some((header, samples)) => {
                (text(header.clone()), Some(Message::Binary(samples.clone())))
            }
            None => (text(c.json(encoding)), None),
        },
    };
    std::iter::once(first).chain(second)
}

async fn serve(socket: ServerSocket, ctx: &AppContext, sub: Subscription) {
    let (mut sink, mut incoming) = socket.split();
    let listener = sub.listener.clone();
    let idle = ctx.config.repo.idle_timeout();
    let mut drained = Vec::new();
    loop {
        tokio::select! {
            () = listener.outbox.ready() => {}
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                // Pings are answered by tungstenite; a listener has nothing to say.
                Some(Ok(_)) => continue,
            },
        }
        let state = listener.outbox.drain_into(&mut drained);
        if state.dropped_audio > 0 {
            ctx.metrics.audio_dropped.inc_by(state.dropped_audio);
        }
        let (mut count, mut bytes) = (0u64, 0u64);
        let write = async {
            for frame in drained.drain(..) {
                for message in messages(frame, listener.encoding) {
                    count += 1;
                    bytes += message.len() as u64;
                    sink.feed(message).await?;
                }
            }
            sink.flush().await
        };
        // A listener that cannot take one composition within the idle timeout is gone.
        match tokio::time::timeout(idle, write).await {
            Ok(Ok(())) => listener.touch(),
            _ => return,
        }
        ctx.metrics
            .messages_out
            .with_label_values(&["repo"])
            .inc_by(count);
        ctx.metrics
            .bytes_out
            .with_label_values(&["repo"])
            .inc_by(bytes);
        if let Some(reason) = state.closed {
            if reason == CloseReason::Shutdown {
                if let Some(frame) = crate::ws::close_frame(reason) {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                }
            }
            return;
        }
    }
}
