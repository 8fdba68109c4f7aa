//! How an outbox wakes the task that serves its connection: one waker, and a few bits that
//! say why it was woken. A tokio `Notify` would do for one reason, but waiting on it takes
//! a `Notified` future, which borrows the outbox and is 56 bytes in every idle connection's
//! task; this is a poll function instead, so the connection's future can be a plain struct.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

/// Something was queued that its writer could not write at once, or the outbox closed.
pub const WORK: u8 = 1;
/// The connection is due a ping (raised by the engine's ping sweep).
pub const PING: u8 = 2;

#[derive(Default)]
pub struct Signal {
    waker: AtomicWaker,
    raised: AtomicU8,
}

impl Signal {
    /// Raises `bits` and wakes the task. A raise while the task is busy is remembered, so
    /// none is lost.
    pub fn raise(&self, bits: u8) {
        self.raised.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Takes the bits of `mask` raised since they were last taken. With none raised, the
    /// task is woken by the next raise.
    pub fn poll_take(&self, cx: &mut Context<'_>, mask: u8) -> Poll<u8> {
        let taken = self.raised.fetch_and(!mask, Ordering::AcqRel) & mask;
        if taken != 0 {
            return Poll::Ready(taken);
        }
        // Register first, then look again: a raise between the two is not missed.
        self.waker.register(cx.waker());
        match self.raised.fetch_and(!mask, Ordering::AcqRel) & mask {
            0 => Poll::Pending,
            taken => Poll::Ready(taken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_raise_before_the_poll_is_remembered_and_taken_once() {
        let signal = Signal::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(signal.poll_take(&mut cx, WORK | PING), Poll::Pending);
        signal.raise(WORK);
        signal.raise(WORK);
        assert_eq!(signal.poll_take(&mut cx, WORK | PING), Poll::Ready(WORK));
        assert_eq!(signal.poll_take(&mut cx, WORK | PING), Poll::Pending);
    }

    #[test]
    fn bits_outside_the_mask_wait_for_a_poll_that_asks() {
        let signal = Signal::default();
        let mut cx = Context::from_waker(Waker::noop());
        signal.raise(PING | WORK);
        assert_eq!(signal.poll_take(&mut cx, WORK), Poll::Ready(WORK));
        assert_eq!(signal.poll_take(&mut cx, WORK), Poll::Pending);
        assert_eq!(signal.poll_take(&mut cx, PING), Poll::Ready(PING));
    }

    #[tokio::test]
    async fn a_raise_wakes_the_waiting_task() {
        let signal = std::sync::Arc::new(Signal::default());
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { std::future::poll_fn(|cx| signal.poll_take(cx, WORK)).await }
        });
        tokio::task::yield_now().await;
        signal.raise(WORK);
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(taken, WORK);
    }
}
