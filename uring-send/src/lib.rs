//! Many small non-blocking socket sends made with one system call.
//!
//! A fan-out writes the same small frame into thousands of sockets. One `send(2)` each
//! costs a system call per socket; submitting them together through io_uring costs one
//! `io_uring_enter` per batch, and the thread stays on the kernel's TCP path between the
//! sends. Measured with `benches/uring-floor` (1,000 loopback sockets): a fifth less CPU per
//! send.
//!
//! [`SendBatch::send_all`] is safe because it does not return before the kernel has
//! completed every send it submitted: the buffers it lends are borrowed for the call, and
//! the kernel is done with them when it returns. The sends are non-blocking
//! (`MSG_DONTWAIT`), so a socket without room completes at once with `EAGAIN`, never waits.
//!
//! Where io_uring is missing (another OS, an old kernel, `io_uring_disabled`, a seccomp
//! profile that refuses it) [`SendBatch::new`] fails, and the caller keeps its plain sends.

use std::io;
use std::os::fd::RawFd;

/// One send: a socket's descriptor and the bytes to offer it.
///
/// The descriptor is a plain number, not a `BorrowedFd`, so a caller can keep it beside
/// the data it guards instead of reaching through the object that owns the socket (a
/// fan-out reads thousands of them in a row; each reach was a cache miss). The caller keeps
/// the socket open for the call, as it would for `send(2)`: a number closed and reused in
/// between would send to whatever reused it. The kernel checks the number itself, so a
/// wrong one is an error (`EBADF`, `ENOTSOCK`) in its result, never memory unsafety.
pub type Send<'a> = (RawFd, &'a [u8]);

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::SendBatch;

#[cfg(not(target_os = "linux"))]
mod other {
    use super::Send;
    use std::io;

    /// No io_uring here: [`SendBatch::new`] always fails.
    pub struct SendBatch(());

    impl SendBatch {
        pub fn new(_entries: u32) -> io::Result<Self> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub fn capacity(&self) -> usize {
            0
        }

        pub fn send_all(&mut self, _sends: &[Send<'_>], _results: &mut Vec<io::Result<usize>>) {
            unreachable!("a SendBatch is never made here")
        }
    }
}
#[cfg(not(target_os = "linux"))]
pub use other::SendBatch;

/// Whether `error` is what a non-blocking send answers when the socket has no room.
pub fn would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}
