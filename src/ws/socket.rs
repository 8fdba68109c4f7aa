//! A `/ws` connection's socket, shared by the two sides that use it: whoever holds the
//! connection's outbox writes it directly (the engine thread after a batch, the
//! connection's task after a read; see `outbox::write`), and the task reads it through
//! the frame guard (`messages`).
//!
//! hyper hands an upgraded connection over as a boxed stream; `take` gets our own socket
//! back out of it, with the bytes hyper had read past the handshake, and splits it so each
//! side owns its half. A handshake answered without hyper (`net::first_request`) hands the
//! socket over directly: `take_released`.

use crate::net::io::{Activity, HandedOver, SocketSlot};
use crate::outbox::Sink;
use bytes::BytesMut;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, Interest, ReadBuf};
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
    /// One `send`/`sendmsg` system call, made directly (rustix's raw syscall: no libc
    /// cancellation point, no VFS layer), without asking tokio's readiness first. Only a
    /// write the kernel refuses (`WouldBlock`) goes through tokio's `try_io`, which makes
    /// it again and then clears the readiness it saw before the call, so the connection's
    /// task can wait for room without missing the edge that brings it. A socket with room,
    /// nearly every socket of a fan-out, costs the call alone (see BENCHMARKS.md).
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let stream: &tokio::net::TcpStream = self.write.as_ref();
        match send_now(stream, bufs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stream.try_io(Interest::WRITABLE, || send_now(stream, bufs))
            }
            done => done,
        }
    }

    fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let stream: &tokio::net::TcpStream = self.write.as_ref();
        Some(stream.as_fd())
    }
}

/// `send` (one slice) or `sendmsg` (several) without blocking. `NOSIGNAL`: a peer gone
/// is an error to handle, never a SIGPIPE.
fn send_now(stream: &tokio::net::TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags};
    let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
    let sent = match bufs {
        [one] => rustix::net::send(stream, one, flags),
        _ => rustix::net::sendmsg(stream, bufs, &mut SendAncillaryBuffer::default(), flags),
    };
    Ok(sent?)
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
    Some(split(activity.take_socket()?, early))
}

/// Our socket, split, as the connection lets go of it after the handshake's answer went out
/// without hyper (see [`Activity::hand_over_socket_to`]).
pub fn released(handed: HandedOver) -> (WsSource, WsSink) {
    split(handed, BytesMut::new())
}

/// Splits a handed-over socket; `early` (what hyper had buffered) is read first, then what
/// the connection had read and not consumed.
fn split(handed: HandedOver, mut early: BytesMut) -> (WsSource, WsSink) {
    if early.is_empty() {
        early = handed.unread;
    } else {
        early.extend_from_slice(&handed.unread);
    }
    let (read, write) = handed.stream.into_split();
    let source = WsSource { read, early };
    (
        source,
        WsSink {
            write,
            _slot: handed.slot,
        },
    )
}
