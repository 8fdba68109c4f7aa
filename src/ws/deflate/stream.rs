//! The socket adapter between hyper's upgraded connection and tungstenite.
//!
//! tungstenite 0.29 has no extension support: it refuses any frame with RSV1 set. So the
//! bytes it reads pass through [`Rewriter`] first, which inflates compressed messages
//! into plain frames. Writes pass through untouched: the writer task already produces
//! compressed frames itself (`Message::Frame` with RSV1), which tungstenite writes as is.
//!
//! A failure (deflate bomb, corrupt data, RSV1 where it is not allowed) is returned as an
//! `io::Error` of kind `InvalidData` wrapping an [`InflateError`] (see [`inflate_error`]),
//! after any frames that preceded it were delivered. It is never `WouldBlock`, which
//! tokio-tungstenite would take for "not ready".

use super::codec::InflateError;
use super::rewrite::Rewriter;
use bytes::{Buf, BytesMut};
use prometheus::IntCounter;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time, as tungstenite's own read buffer.
const READ_CHUNK: usize = 4 * 1024;
/// An emptied output buffer larger than this is released: one big inflated message must
/// not pin its size in memory for the rest of the connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// An `AsyncRead + AsyncWrite` that inflates permessage-deflate messages on the way in.
/// Without deflate it is a plain pass-through, so every WebSocket has the same type.
pub struct InflateStream<S> {
    inner: S,
    /// `None` when deflate was not negotiated.
    rewriter: Option<Rewriter>,
    /// Read from the socket, not yet rewritten (at most a partial frame header plus one
    /// read).
    input: BytesMut,
    /// Rewritten, not yet handed to tungstenite.
    output: BytesMut,
    failed: Option<InflateError>,
    eof: bool,
    /// Counts inflated messages, if set.
    counter: Option<IntCounter>,
}

impl<S> InflateStream<S> {
    /// Wraps `inner`; with `inflate_limit` set, compressed messages are inflated up to
    /// that many bytes.
    pub fn new(inner: S, inflate_limit: Option<usize>) -> Self {
        Self {
            inner,
            rewriter: inflate_limit.map(Rewriter::new),
            input: BytesMut::new(),
            output: BytesMut::new(),
            failed: None,
            eof: false,
            counter: None,
        }
    }

    /// Counts every compressed message inflated in `counter`.
    pub fn counting(mut self, counter: IntCounter) -> Self {
        self.counter = Some(counter);
        self
    }
}

/// The inflate failure behind an I/O error from [`InflateStream`], if that is what it is.
pub fn inflate_error(error: &io::Error) -> Option<InflateError> {
    error.get_ref()?.downcast_ref::<InflateError>().copied()
}

impl<S: AsyncRead + Unpin> AsyncRead for InflateStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(rewriter) = this.rewriter.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                if this.output.is_empty() && this.output.capacity() > KEEP_CAPACITY {
                    this.output = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
            let inflated_before = rewriter.inflated;
            let result = rewriter.process(&mut this.input, &mut this.output);
            if let Some(counter) = &this.counter {
                counter.inc_by(rewriter.inflated - inflated_before);
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
            let filled = this.input.len();
            this.input.resize(filled + READ_CHUNK, 0);
            let mut read = ReadBuf::new(&mut this.input[filled..]);
            let result = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let got = read.filled().len();
            this.input.truncate(filled + got);
            ready!(result)?;
            if got == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for InflateStream<S> {
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
    use super::super::rewrite::tests::{client_frame, deflated};
    use super::*;
    use futures_util::StreamExt;
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
        let stream = InflateStream::new(server, Some(limit));
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
            inflate_error(error),
            Some(InflateError::TooBig { limit: 100_000 })
        );
    }

    #[tokio::test]
    async fn corrupt_data_is_recognisable_too() {
        let seen = read_all(client_frame(true, true, 0x1, &[0xff; 8]), 1000).await;
        let Some(Err(WsError::Io(error))) = seen.first() else {
            panic!("expected an I/O error, got {seen:?}");
        };
        assert_eq!(inflate_error(error), Some(InflateError::Corrupt));
    }

    #[tokio::test]
    async fn without_deflate_rsv1_is_left_for_tungstenite_to_refuse() {
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(&client_frame(true, true, 0x1, &deflated(b"hi")))
            .await
            .unwrap();
        let stream = InflateStream::new(server, None);
        let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        let first = ws.next().await.unwrap();
        assert!(matches!(first, Err(WsError::Protocol(_))), "{first:?}");
    }
}
