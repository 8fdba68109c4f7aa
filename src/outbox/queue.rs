//! The outbox's FIFO: its first entry inline, the rest in a `VecDeque`.
//!
//! Why: a fan-out or a tick queues one frame per connection, written and removed moments
//! later. In a `VecDeque` that entry lives in a buffer of its own, apart from the outbox:
//! either allocated and freed for every recipient (a quarter of a delivery's user-space
//! instructions) or kept, and then a cache line of its own that the push writes and the
//! write reads, cold each time (the store's miss showed up at the lock's release in the
//! profile). Inline, the entry shares the outbox's lines, which a broadcast asks for ahead
//! (see `Outbox::prefetch`), and an outbox holding one frame owns no heap memory at all.
//! Only a connection that falls behind, with several frames waiting, uses the `VecDeque`.
//!
//! Invariant: `front` is `None` only when `rest` is empty, so the order is `front` then
//! `rest`.

use std::collections::VecDeque;

pub(super) struct Queue<T> {
    front: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Queue<T> {
    pub(super) const fn new() -> Self {
        Self {
            front: None,
            rest: VecDeque::new(),
        }
    }

    /// Asks the CPU for the inline entry's lines and the rest's handle (see
    /// `Outbox::prefetch`).
    pub(super) fn prefetch(&self) {
        super::prefetch(&self.front);
        super::prefetch(&self.rest);
    }

    pub(super) fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    pub(super) fn push_back(&mut self, entry: T) {
        match self.front {
            None => self.front = Some(entry),
            Some(_) => self.rest.push_back(entry),
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let entry = self.front.take()?;
        self.front = self.rest.pop_front();
        Some(entry)
    }

    pub(super) fn front(&self) -> Option<&T> {
        self.front.as_ref()
    }

    pub(super) fn front_mut(&mut self) -> Option<&mut T> {
        self.front.as_mut()
    }

    /// The entries, first to last.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.front.iter().chain(self.rest.iter())
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.front.iter_mut().chain(self.rest.iter_mut())
    }

    /// The index of the first entry that `matches`.
    pub(super) fn position(&self, matches: impl FnMut(&T) -> bool) -> Option<usize> {
        self.iter().position(matches)
    }

    /// The index of the last entry that `matches`.
    pub(super) fn rposition(&self, mut matches: impl FnMut(&T) -> bool) -> Option<usize> {
        match self.rest.iter().rposition(&mut matches) {
            Some(index) => Some(index + 1),
            None => self
                .front
                .as_ref()
                .filter(|entry| matches(entry))
                .map(|_| 0),
        }
    }

    pub(super) fn remove(&mut self, index: usize) -> Option<T> {
        match index {
            0 => self.pop_front(),
            _ => self.rest.remove(index - 1),
        }
    }

    pub(super) fn clear(&mut self) {
        self.front = None;
        self.rest.clear();
    }

    /// Removes every entry, first to last.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.front.take().into_iter().chain(self.rest.drain(..))
    }

    /// Gives back the memory of entries beyond the first, once there are none: most
    /// connections are idle most of the time.
    pub(super) fn shrink_when_short(&mut self) {
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    fn contents(queue: &Queue<u32>) -> Vec<u32> {
        queue.iter().copied().collect()
    }

    #[test]
    fn keeps_first_in_first_out_across_the_inline_entry() {
        let mut queue = Queue::new();
        assert!(queue.is_empty());
        for n in 1..=4 {
            queue.push_back(n);
        }
        assert_eq!((queue.len(), contents(&queue)), (4, vec![1, 2, 3, 4]));
        assert_eq!(queue.pop_front(), Some(1));
        queue.push_back(5);
        assert_eq!(contents(&queue), vec![2, 3, 4, 5]);
        assert_eq!(queue.front(), Some(&2));
        let drained: Vec<u32> = queue.drain().collect();
        assert_eq!(drained, vec![2, 3, 4, 5]);
        assert!(queue.is_empty());
        assert_eq!(queue.pop_front(), None);
        queue.push_back(6);
        assert_eq!((queue.len(), contents(&queue)), (1, vec![6]));
    }

    #[test]
    fn removes_and_finds_anywhere() {
        let mut queue = Queue::new();
        for n in [10, 20, 10, 30] {
            queue.push_back(n);
        }
        assert_eq!(queue.rposition(|n| *n == 10), Some(2));
        assert_eq!(queue.rposition(|n| *n == 99), None);
        assert_eq!(queue.position(|n| *n == 10), Some(0));
        assert_eq!(queue.position(|n| *n == 30), Some(3));
        assert_eq!(queue.remove(2), Some(10));
        assert_eq!(queue.rposition(|n| *n == 10), Some(0));
        assert_eq!(queue.remove(0), Some(10));
        assert_eq!(contents(&queue), vec![20, 30]);
        assert_eq!(queue.remove(5), None);
        if let Some(front) = queue.front_mut() {
            *front = 21;
        }
        for n in queue.iter_mut() {
            *n += 1;
        }
        assert_eq!(contents(&queue), vec![22, 31]);
        queue.clear();
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn an_outbox_of_one_frame_owns_no_buffer() {
        let mut queue = Queue::new();
        queue.push_back(1);
        assert_eq!(queue.rest.capacity(), 0);
        queue.push_back(2);
        queue.push_back(3);
        assert!(queue.rest.capacity() > 0);
        queue.pop_front();
        queue.shrink_when_short();
        assert!(queue.rest.capacity() > 0, "3 is still in the buffer");
        queue.pop_front();
        queue.shrink_when_short();
        assert_eq!(queue.rest.capacity(), 0);
        assert_eq!(queue.pop_front(), Some(3));
    }
}
