//! A `/ws` connection's socket, shared by the two sides that use it: whoever holds the
//! connection's outbox writes it directly (the engine thread after a batch, the
//! connection's task after a read; see `outbox::write`), and the task reads it through
//! tungstenite.
//!
//! hyper hands an upgraded connection over as a boxed stream; `take` gets our own socket
//! back out of it, with the bytes hyper had read past the handshake, and splits it so each
//! side owns its half.

use crate::frames::WsFrame;
use crate::net::io::{Activity, SocketSlot};
use crate::outbox::{Outbox, Sink};
use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The write half, with the socket's slot: it lives as long as anyone may still write
/// (the outbox holds it), so the slot is given back when the socket really closes.
pub struct WsSink {
    write: OwnedWriteHalf,
    _slot: SocketSlot,
}

impl WsSink {
    /// Ready when the socket can take bytes again after a write would have blocked. Only
    /// the connection's task waits for this (tokio keeps one waker for it).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_ref().poll_write_ready(cx)
    }

    /// Writes what the socket takes now, without blocking (the close frame at the end),
    /// the same way as every other write to it.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(bytes)])
    }
}

impl Sink for WsSink {
    /// `send`/`sendmsg` rather than tokio's `write`/`writev`: a socket write that skips the
    /// VFS layer (file position lock, iterator set-up) is measurably cheaper per delivery
    /// (see BENCHMARKS.md). It still goes through tokio's readiness (`try_io`), so a write
    /// that would block clears it and the connection's task can wait for room.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let stream: &tokio::net::TcpStream = self.write.as_ref();
        stream.try_io(Interest::WRITABLE, || {
            let socket = socket2::SockRef::from(stream);
            match bufs {
                [one] => socket.send(one),
                _ => socket.send_vectored(bufs),
            }
        })
    }
}

/// The read half, and what hyper had already read of it (to be read first).
pub struct WsSource {
    pub read: OwnedReadHalf,
    pub early: BytesMut,
}

/// At most this many bytes that arrived before the upgrade completed are taken along at
/// once; the rest stays in the socket and is read in order after them.
const EARLY_BYTES_MAX: usize = 64 * 1024;

/// Our socket back out of hyper's upgraded connection, split, once the route asked for it
/// with [`Activity::hand_over_socket`]. First reads, without waiting, what hyper had read
/// past the handshake (and what the socket already holds), which would be lost with hyper's
/// buffer; then lets hyper drop its side, which hands the socket over.
pub fn take(upgraded: Upgraded, activity: &Activity) -> Option<(WsSource, WsSink)> {
    let mut io = TokioIo::new(upgraded);
    let mut early = BytesMut::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut chunk = [0u8; 4096];
    while early.len() < EARLY_BYTES_MAX {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut io).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                early.extend_from_slice(buf.filled())
            }
            _ => break,
        }
    }
    drop(io);
    let (stream, slot) = activity.take_socket()?;
    let (read, write) = stream.into_split();
    let source = WsSource { read, early };
    Some((source, WsSink { write, _slot: slot }))
}

/// What tungstenite reads from and writes to. It reads the socket. The only frames it
/// writes itself are its automatic replies (a pong to a ping, the close reply); they are
/// queued in the outbox like any frame, so they never cut into a frame written in part,
/// and the task's next write sends them.
pub struct WireIo {
    read: OwnedReadHalf,
    outbox: Arc<Outbox<WsFrame>>,
}

impl WireIo {
    pub fn new(read: OwnedReadHalf, outbox: Arc<Outbox<WsFrame>>) -> Self {
        Self { read, outbox }
    }
}

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A closed outbox means the connection is ending: the reply no longer matters.
        let _ = self
            .outbox
            .push(WsFrame::control(Bytes::copy_from_slice(buf)));
        self.outbox.wake();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
