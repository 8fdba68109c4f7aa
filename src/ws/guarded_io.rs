//! The socket adapter between hyper's upgraded connection and tungstenite: the bytes
//! tungstenite reads pass through the [`FrameGuard`] first (see `guard.rs` for why).
//! Writes pass through untouched: the writer task already produces compressed frames
//! itself (`Message::Frame` with RSV1), which tungstenite writes as is.
//!
//! A refusal (a frame too big, a deflate bomb, corrupt data, a framing violation, the
//! budget spent) is returned as an `io::Error` of kind `InvalidData` wrapping a
//! [`GuardError`] (see [`guard_error`]), after any frames that preceded it were delivered.
//! It is never `WouldBlock`, which tokio-tungstenite would take for "not ready".

use super::guard::{FrameGuard, GuardError};
use bytes::{Buf, BytesMut};
use prometheus::IntCounter;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time, as tungstenite's own read buffer.
const READ_CHUNK: usize = 4 * 1024;

/// An `AsyncRead + AsyncWrite` that checks, assembles and inflates client messages on the
/// way in.
pub struct GuardedStream<S> {
    inner: S,
    guard: FrameGuard,
    /// Read from the socket, not yet through the guard (at most a partial frame header or
    /// control frame plus one read).
    input: BytesMut,
    /// Through the guard, not yet handed to tungstenite.
    output: BytesMut,
    failed: Option<GuardError>,
    eof: bool,
    /// Counts inflated messages, if set.
    counter: Option<IntCounter>,
}

impl<S> GuardedStream<S> {
    pub fn new(inner: S, guard: FrameGuard) -> Self {
        Self {
            inner,
            guard,
            input: BytesMut::new(),
            output: BytesMut::new(),
            failed: None,
            eof: false,
            counter: None,
        }
    }

    /// Bytes read from the socket before this stream took it over (what hyper read past
    /// the handshake): checked first, ahead of everything read after them.
    pub fn with_early(mut self, early: BytesMut) -> Self {
        self.input = early;
        self
    }

    /// Counts every compressed message inflated in `counter`.
    pub fn counting(mut self, counter: IntCounter) -> Self {
        self.counter = Some(counter);
        self
    }

    /// When the message the client is sending now began, if it is partway through one.
    pub fn partial_since(&self) -> Option<Instant> {
        self.guard.partial_since()
    }
}

/// The guard's refusal behind an I/O error from [`GuardedStream`], if that is what it is.
pub fn guard_error(error: &io::Error) -> Option<GuardError> {
    error.get_ref()?.downcast_ref::<GuardError>().copied()
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                if this.output.is_empty() {
                    // Released rather than kept for the next message: idle connections
                    // outnumber busy ones, and an allocation per message read is cheap.
                    this.output = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
            let inflated_before = this.guard.inflated;
            let result = this.guard.process(&mut this.input, &mut this.output);
            if let Some(counter) = &this.counter {
                counter.inc_by(this.guard.inflated - inflated_before);
            }
            if let Err(error) = result {
                // Frames rewritten before the failure (a ping, say) still go first.
                this.failed = Some(error);
                continue;
            }
            if !this.output.is_empty() {
                continue;
            }
            if this.eof {
                // An incomplete frame at EOF is dropped; tungstenite sees the EOF.
                return Poll::Ready(Ok(()));
            }
            if ready!(poll_read_into(&mut this.inner, cx, &mut this.input))? == 0 {
                this.eof = true;
            }
        }
    }
}

/// Reads what the socket has into `input`, the guard's input; `Ready(Ok(0))` at the end of
/// the stream. What the guard consumed whole leaves nothing to keep, so an empty `input`
/// gives its memory back first: an idle connection holds no read buffer at all (this is most
/// of what it would otherwise cost). The read goes into the stack, uninitialized (no memset
/// per wake-up), and only what arrived is kept: the read that waits (and most do) holds no
/// heap memory.
pub(super) fn poll_read_into<S: AsyncRead + Unpin>(
    inner: &mut S,
    cx: &mut Context<'_>,
    input: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if input.is_empty() {
        *input = BytesMut::new();
    }
    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut read = ReadBuf::uninit(&mut chunk);
    ready!(Pin::new(inner).poll_read(cx, &mut read))?;
    input.extend_from_slice(read.filled());
    Poll::Ready(Ok(read.filled().len()))
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::PartialBudget;
    use super::super::guard::tests::{client_frame, deflated};
    use super::super::guard::GuardLimits;
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};
    use tokio_tungstenite::WebSocketStream;

    /// tungstenite (as the server) reading `input` through the adapter.
    async fn read_all(input: Vec<u8>, limit: usize) -> Vec<Result<Message, WsError>> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            // Small writes: frames straddle reads.
            for chunk in input.chunks(5) {
                if client.write_all(chunk).await.is_err() {
                    return;
                }
            }
            let _ = client.shutdown().await;
            // Keep our end open until the reader is done, so EOF is the shutdown.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let limits = GuardLimits {
            text: limit,
            hard: limit,
            deflate: true,
        };
        let guard = FrameGuard::new(limits, Arc::new(PartialBudget::new(usize::MAX)));
        let stream = GuardedStream::new(server, guard);
        let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        let mut seen = Vec::new();
        while let Some(item) = ws.next().await {
            seen.push(item);
        }
        writer.abort();
        seen
    }

    #[tokio::test]
    async fn tungstenite_reads_compressed_fragmented_messages_and_pings() {
        let text = "a compressed broadcast ".repeat(100);
        let payload = deflated(text.as_bytes());
        let (a, b) = payload.split_at(10);
        let mut input = client_frame(false, true, 0x1, a);
        input.extend(client_frame(true, false, 0x9, b"ping"));
        input.extend(client_frame(true, false, 0x0, b));
        input.extend(client_frame(true, false, 0x1, b"plain"));
        input.extend(client_frame(true, true, 0x2, &deflated(&[1, 2, 3])));
        let seen = read_all(input, 1 << 20).await;
        let messages: Vec<Message> = seen.into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            messages,
            vec![
                Message::Ping(b"ping".to_vec().into()),
                Message::Text(text.into()),
                Message::Text("plain".into()),
                Message::Binary(vec![1, 2, 3].into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_bomb_surfaces_as_a_recognisable_io_error_after_earlier_frames() {
        let mut input = client_frame(true, false, 0x1, b"before");
        input.extend(client_frame(
            true,
            true,
            0x1,
            &deflated(&vec![b'x'; 300_000]),
        ));
        let seen = read_all(input, 100_000).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(matches!(&seen[0], Ok(Message::Text(t)) if t.as_str() == "before"));
        let Err(WsError::Io(error)) = &seen[1] else {
            panic!("expected an I/O error, got {:?}", seen[1]);
        };
        assert_eq!(
            guard_error(error),
            Some(GuardError::InflatedTooBig { limit: 100_000 })
        );
    }

    #[tokio::test]
    async fn corrupt_data_is_recognisable_too() {
        let seen = read_all(client_frame(true, true, 0x1, &[0xff; 8]), 1000).await;
        let Some(Err(WsError::Io(error))) = seen.first() else {
            panic!("expected an I/O error, got {seen:?}");
        };
        assert_eq!(guard_error(error), Some(GuardError::Corrupt));
    }

    #[tokio::test]
    async fn without_deflate_rsv1_is_a_recognisable_protocol_error() {
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(&client_frame(true, true, 0x1, &deflated(b"hi")))
            .await
            .unwrap();
        let limits = GuardLimits {
            text: 1024,
            hard: 1024,
            deflate: false,
        };
        let guard = FrameGuard::new(limits, Arc::new(PartialBudget::new(usize::MAX)));
        let stream = GuardedStream::new(server, guard);
        let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        let Some(Err(WsError::Io(error))) = ws.next().await else {
            panic!("expected an I/O error");
        };
        assert!(matches!(guard_error(&error), Some(GuardError::Protocol(_))));
    }
}
