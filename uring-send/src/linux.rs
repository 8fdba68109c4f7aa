//! The io_uring submission and the wait for its completions.

use super::Send;
use io_uring::{opcode, types, IoUring};
use std::io;

/// `send(2)` flags of every send: never wait for room (`MSG_DONTWAIT`, 0x40), never raise
/// SIGPIPE (`MSG_NOSIGNAL`, 0x4000). The values are Linux's on every architecture.
const FLAGS: i32 = 0x40 | 0x4000;

/// An io_uring instance for sends, owned by one thread at a time.
pub struct SendBatch {
    ring: IoUring,
    /// Sends per submission: the submission queue's size.
    entries: usize,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("entries", &self.entries)
            .finish()
    }
}

impl SendBatch {
    /// A ring for up to `entries` sends a submission (rounded up to a power of two by the
    /// kernel; larger batches go in several submissions). Fails where io_uring is missing
    /// or refused.
    pub fn new(entries: u32) -> io::Result<Self> {
        // Twice as many completion entries: a full submission's completions always fit.
        let ring = IoUring::builder()
            .setup_cqsize(entries.saturating_mul(2))
            .build(entries)?;
        let entries = ring.params().sq_entries() as usize;
        Ok(Self { ring, entries })
    }

    /// Sends a submission takes; [`SendBatch::send_all`] submits more in several.
    pub fn capacity(&self) -> usize {
        self.entries
    }

    /// Sends each buffer on its socket without blocking and puts each outcome in `results`
    /// (cleared first), in the order of `sends`: the bytes the socket took (possibly fewer
    /// than offered), or the error, `WouldBlock` when it had no room.
    ///
    /// Returns only once the kernel has completed every send it was given (see the
    /// crate's doc), so the borrowed buffers are never read after it returns.
    pub fn send_all(&mut self, sends: &[Send<'_>], results: &mut Vec<io::Result<usize>>) {
        results.clear();
        for chunk in sends.chunks(self.entries) {
            let first = results.len();
            results.extend(chunk.iter().map(|_| Err(io::ErrorKind::WouldBlock.into())));
            self.run(chunk, &mut results[first..]);
        }
    }

    /// Submits `chunk` (at most `self.entries` sends; the queues are empty) and records each
    /// completion in `outcomes`, by index, before returning.
    fn run(&mut self, chunk: &[Send<'_>], outcomes: &mut [io::Result<usize>]) {
        let mut queued = 0;
        {
            let mut queue = self.ring.submission();
            for (index, (fd, buf)) in chunk.iter().enumerate() {
                let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
                let entry = opcode::Send::new(types::Fd(*fd), buf.as_ptr(), len)
                    .flags(FLAGS)
                    .build()
                    .user_data(index as u64);
                // SAFETY: the entry points at `buf`, borrowed for the whole of `send_all`,
                // and this function does not return before every queued entry's completion
                // is reaped below, so the kernel never reads it after the borrow ends. (The
                // descriptor is a number the kernel checks; see `Send`.)
                #[allow(unsafe_code)]
                let pushed = unsafe { queue.push(&entry) };
                if pushed.is_err() {
                    break;
                }
                queued += 1;
            }
        }
        for outcome in &mut outcomes[queued..] {
            *outcome = Err(io::Error::other("the io_uring submission queue was full"));
        }
        let mut reaped = 0;
        while reaped < queued {
            // Submits what is queued and waits for one completion at least. Non-blocking
            // sends complete during the submission, so this rarely waits at all.
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(EINTR | EAGAIN | EBUSY)) => {}
                Err(e) => {
                    // Sends may be in flight and the ring cannot be waited on: returning
                    // would let their buffers be freed under the kernel. Nothing safe is
                    // left to do.
                    eprintln!("uring-send: io_uring_enter failed with sends in flight: {e}");
                    std::process::abort();
                }
            }
            for completion in self.ring.completion() {
                let result = completion.result();
                outcomes[completion.user_data() as usize] = if result >= 0 {
                    Ok(result as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-result))
                };
                reaped += 1;
            }
        }
    }
}

const EINTR: i32 = 4;
const EAGAIN: i32 = 11;
const EBUSY: i32 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// A ring, or none where the kernel refuses io_uring (then there is nothing to test).
    fn ring(entries: u32) -> Option<SendBatch> {
        let ring = SendBatch::new(entries).ok();
        if ring.is_none() {
            eprintln!("io_uring unavailable here; nothing to test");
        }
        ring
    }

    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    #[test]
    fn sends_reach_each_socket_in_order_across_several_submissions() {
        let Some(mut batch) = ring(4) else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let pairs: Vec<_> = (0..10).map(|_| pair(&listener)).collect();
        let messages: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let sends: Vec<Send<'_>> = pairs
            .iter()
            .zip(&messages)
            .map(|((server, _), m)| (server.as_raw_fd(), m.as_slice()))
            .collect();
        let mut results = Vec::new();
        batch.send_all(&sends, &mut results);
        assert_eq!(results.len(), 10);
        for (((_, client), message), result) in pairs.iter().zip(&messages).zip(&results) {
            assert_eq!(*result.as_ref().unwrap(), message.len());
            let mut got = vec![0; message.len()];
            (&*client).read_exact(&mut got).unwrap();
            assert_eq!(&got, message);
        }
    }

    #[test]
    fn a_full_socket_answers_would_block_at_once() {
        let Some(mut batch) = ring(8) else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut server, _client) = pair(&listener);
        let chunk = vec![7u8; 64 * 1024];
        while server.write(&chunk).is_ok() {}
        let (room, _reader) = pair(&listener);
        let sends = [
            (server.as_raw_fd(), &chunk[..]),
            (room.as_raw_fd(), &b"fits"[..]),
        ];
        let mut results = Vec::new();
        let started = std::time::Instant::now();
        batch.send_all(&sends, &mut results);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            crate::would_block(results[0].as_ref().unwrap_err()),
            "{:?}",
            results[0]
        );
        assert_eq!(*results[1].as_ref().unwrap(), 4);
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let Some(mut batch) = ring(2) else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (server, client) = pair(&listener);
        drop(client);
        let mut results = Vec::new();
        // The first send may still be taken (the peer's reset arrives in answer to it).
        for _ in 0..10 {
            batch.send_all(&[(server.as_raw_fd(), &b"hello"[..])], &mut results);
            if results[0].is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let error = results[0].as_ref().unwrap_err();
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{error}"
        );
    }
}
