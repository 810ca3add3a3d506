//! The window of unacknowledged records of one source: the reader `acquire`s a record's stream
//! offset before handing it to its partition writer, the writer `ack`s it once the broker has
//! it (or once it is known never to be written, e.g. too large for the topic).
//!
//! The window is bounded by *stream offset*, not by a count of records: a record at offset `o`
//! is admitted only while `o − lowest unacknowledged offset < W`. Bad records and records a
//! resumed run skips occupy stream offsets but never enter the window, so a count would let
//! the unacknowledged records spread over more than `W` offsets, and `--resume`
//! ([`super::resume`]) relies on exactly this: when the record at offset `H` was admitted,
//! every record at or below `H − W` had been acknowledged (or was never to be sent). Counting
//! good records only once left a gap after a crash when bad records sat between good ones.
//!
//! It also bounds memory: at most `W` records are held at once.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Unacknowledged stream offsets of one source, spanning fewer than `capacity` offsets.
#[derive(Debug)]
pub struct Window {
    capacity: u64,
    state: Mutex<State>,
    freed: Notify,
}

/// Every offset below `base` is settled: acknowledged, or never acquired (a bad record, or
/// one a resumed run skips). `settled[i]` says whether `base + i` is, up to the last offset
/// acquired; the front is always unsettled, so `base` is the lowest pending offset. At most
/// `capacity` entries, one flag each: constant work per record, whatever the window's size.
#[derive(Debug, Default)]
struct State {
    base: u64,
    settled: VecDeque<bool>,
    pending: usize,
}

impl State {
    fn pop_settled(&mut self) -> bool {
        let mut popped = false;
        while self.settled.front() == Some(&true) {
            self.settled.pop_front();
            self.base += 1;
            popped = true;
        }
        popped
    }
}

impl Window {
    /// A window spanning `capacity` stream offsets (`producer.max_pending_records`, ≥ 1).
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        }
    }

    /// Admits `offset` if it lies within `capacity` of the lowest unacknowledged offset (or
    /// nothing is pending). Offsets must be acquired in increasing order.
    pub fn try_acquire(&self, offset: u64) -> bool {
        let mut state = self.state.lock().expect("window lock poisoned");
        if state.pending == 0 {
            state.base = offset;
            state.settled.clear();
        } else if offset - state.base >= self.capacity {
            return false;
        }
        // Offsets skipped since the last one acquired were never sent: settled already.
        let end = state.base + state.settled.len() as u64;
        for _ in end..offset {
            state.settled.push_back(true);
        }
        state.settled.push_back(false);
        state.pending += 1;
        state.pop_settled();
        true
    }

    /// Waits until `offset` fits in the window, then holds it until [`Window::ack`].
    pub async fn acquire(&self, offset: u64) {
        // Most records fit at once: no `Notified` to make (and drop) for them.
        if self.try_acquire(offset) {
            return;
        }
        loop {
            // Created before the check: `notify_waiters` reaches a `Notified` from its
            // creation on, so an ack between the check and the await still wakes us.
            let freed = self.freed.notified();
            if self.try_acquire(offset) {
                return;
            }
            freed.await;
        }
    }

    /// Releases offsets: acknowledged by the broker, or settled without being written.
    pub fn ack(&self, offsets: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock().expect("window lock poisoned");
        for offset in offsets {
            let Some(index) = offset.checked_sub(state.base) else {
                continue;
            };
            if let Some(flag) = state.settled.get_mut(index as usize)
                && !*flag
            {
                *flag = true;
                state.pending -= 1;
            }
        }
        let freed = state.pop_settled();
        drop(state);
        if freed {
            self.freed.notify_waiters();
        }
    }

    /// Offsets currently held.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.state.lock().expect("window lock poisoned").pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_the_span_of_offsets_not_the_count_of_records() {
        let w = Window::new(4);
        assert!(w.try_acquire(0));
        // Offsets 1..=3 were bad records: never acquired, yet they count against the span.
        assert!(!w.try_acquire(4));
        w.ack([0]);
        assert!(w.try_acquire(4));
        assert!(w.try_acquire(7));
        assert!(!w.try_acquire(8));
        assert_eq!(w.pending(), 2);
    }

    #[tokio::test]
    async fn acquire_waits_for_the_lowest_ack() {
        let w = std::sync::Arc::new(Window::new(2));
        w.acquire(0).await;
        w.acquire(1).await;
        let waiting = tokio::spawn({
            let w = std::sync::Arc::clone(&w);
            async move { w.acquire(2).await }
        });
        tokio::task::yield_now().await;
        w.ack([1]); // not the lowest: 2 − 0 is still 2
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        w.ack([0]);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("admitted once 0 was acknowledged")
            .unwrap();
    }
}
