//! A stream adapter that reports its end one poll late, working around a multer 3.1 bug.
//!
//! multer looks for the first boundary, finds too little, polls the body again within the
//! same call, and if that poll drains the body to its end it answers `IncompleteStream`
//! without looking at what it just read (rwf2/multer pull request 70, unmerged). A whole
//! upload that arrives just after a pending poll, which a small body on a real socket
//! does, would be refused as truncated. Here the end is held back once: the inner
//! stream's `None` becomes `Pending` with an immediate wake-up, so multer parses what it
//! buffered first and sees the end on its next poll.

use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

pub(super) struct LateEnd<S> {
    inner: S,
    ended: bool,
}

impl<S> LateEnd<S> {
    pub(super) fn new(inner: S) -> Self {
        LateEnd {
            inner,
            ended: false,
        }
    }
}

impl<S: Stream + Unpin> Stream for LateEnd<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(None) => {
                self.ended = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[tokio::test]
    async fn items_pass_through_and_the_end_comes_one_poll_later() {
        let mut late = LateEnd::new(stream::iter([1, 2]));
        assert_eq!(late.next().await, Some(1));
        assert_eq!(late.next().await, Some(2));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(late.poll_next_unpin(&mut cx), Poll::Pending);
        assert_eq!(late.poll_next_unpin(&mut cx), Poll::Ready(None));
        assert_eq!(late.poll_next_unpin(&mut cx), Poll::Ready(None));
    }
}
