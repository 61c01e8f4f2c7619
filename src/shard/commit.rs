//! The durable watermark and the tasks waiting on it (group commit).
//!
//! A waiter is a task that awaits "everything up to LSN `n` is durable". When a flush's
//! fdatasync completes, `Waiters::advance` wakes every waiter at or below the new
//! watermark at once; all waiters of one group commit see the same outcome. After an I/O
//! error, `Waiters::wake_all` wakes everyone so they observe the failure.
//!
//! The list keeps its capacity, so steady-state commits allocate nothing. [`Commit`] is
//! the future a caller awaits: it registers a waiter and resolves once the watermark
//! covers its LSN, or the shard failed.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::state::Core;
use crate::error::{Error, Result};
use crate::lsn::Lsn;

struct Waiter {
    lsn: Lsn,
    id: u64,
    waker: Waker,
}

/// Tasks waiting for their LSN to become durable.
pub(crate) struct Waiters {
    list: Vec<Waiter>,
    next_id: u64,
    /// The highest LSN any registered waiter waits for (not lowered on cancellation: a
    /// stale value only makes the flusher seal a batch early, never late).
    max_lsn: Lsn,
}

impl Waiters {
    pub fn with_capacity(n: usize) -> Waiters {
        Waiters {
            list: Vec::with_capacity(n),
            next_id: 1,
            max_lsn: Lsn::ZERO,
        }
    }

    /// Registers a waiter for `lsn` (or refreshes its waker when `id` is already
    /// registered) and returns its id.
    pub fn register(&mut self, id: Option<u64>, lsn: Lsn, waker: &Waker) -> u64 {
        if let Some(id) = id {
            if let Some(w) = self.list.iter_mut().find(|w| w.id == id) {
                if !w.waker.will_wake(waker) {
                    w.waker = waker.clone();
                }
                return id;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.list.push(Waiter {
            lsn,
            id,
            waker: waker.clone(),
        });
        self.max_lsn = self.max_lsn.max(lsn);
        id
    }

    /// Forgets waiter `id` (its future was dropped).
    pub fn cancel(&mut self, id: u64) {
        if let Some(pos) = self.list.iter().position(|w| w.id == id) {
            self.list.swap_remove(pos);
        }
    }

    /// The highest LSN anyone waits for.
    pub fn max_lsn(&self) -> Lsn {
        if self.list.is_empty() {
            Lsn::ZERO
        } else {
            self.max_lsn
        }
    }

    /// The lowest LSN anyone waits for (`u64::MAX` when no one waits). Walks the list:
    /// called once per flusher pass that could start an fdatasync.
    pub fn min_lsn(&self) -> Lsn {
        self.list
            .iter()
            .map(|w| w.lsn)
            .min()
            .unwrap_or(Lsn(u64::MAX))
    }

    /// Number of registered waiters.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Wakes and removes every waiter at or below `durable`; returns how many.
    pub fn advance(&mut self, durable: Lsn) -> usize {
        let before = self.list.len();
        let mut i = 0;
        while i < self.list.len() {
            if self.list[i].lsn <= durable {
                self.list.swap_remove(i).waker.wake();
            } else {
                i += 1;
            }
        }
        if self.list.is_empty() {
            self.max_lsn = Lsn::ZERO;
        }
        before - self.list.len()
    }

    /// Wakes and removes every waiter (the shard failed or closed).
    pub fn wake_all(&mut self) {
        for w in self.list.drain(..) {
            w.waker.wake();
        }
        self.max_lsn = Lsn::ZERO;
    }
}

/// The future [`Shard::commit`](crate::Shard::commit) returns. Dropping it before it
/// resolves is safe: the waiter is removed and nothing else changes.
#[must_use = "a commit does nothing unless awaited"]
pub struct Commit {
    core: Rc<Core>,
    lsn: Lsn,
    waiter: Option<u64>,
    /// When the commit first had to wait (for the latency histogram).
    waiting_since: Option<std::time::Instant>,
}

impl Commit {
    /// A commit of `lsn` on the shard of `core`; it does nothing until polled.
    pub(super) fn new(core: Rc<Core>, lsn: Lsn) -> Commit {
        Commit {
            core,
            lsn,
            waiter: None,
            waiting_since: None,
        }
    }
}

impl Future for Commit {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let core = &*this.core;
        let mut st = core.st.borrow_mut();
        if let Some(cause) = st.lifecycle.failure() {
            let e = Error::ShardFailed {
                shard: core.id,
                cause: cause.clone(),
            };
            if let Some(id) = this.waiter.take() {
                st.wakers.commits.cancel(id);
            }
            return Poll::Ready(Err(e));
        }
        if st.marks.durable_lsn >= this.lsn {
            this.waiter = None;
            if let Some(since) = this.waiting_since.take() {
                // Ends when the flusher woke this commit (not when it ran again): one
                // clock read per group commit, not one per waiter.
                let us = st.durable_at.saturating_duration_since(since).as_micros() as u64;
                st.commit_latency_us.saturating_record(us.max(1));
            }
            return Poll::Ready(Ok(()));
        }
        if this.lsn >= st.marks.next_lsn {
            return Poll::Ready(Err(Error::LsnNotAppended {
                shard: core.id,
                requested: this.lsn,
                last_appended: st.marks.last_appended_lsn(),
            }));
        }
        let first_time = this.waiter.is_none();
        this.waiter = Some(
            st.wakers
                .commits
                .register(this.waiter, this.lsn, cx.waker()),
        );
        if first_time {
            this.waiting_since = Some(std::time::Instant::now());
            st.wake_flusher();
        }
        Poll::Pending
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        if let Some(id) = self.waiter.take() {
            if let Ok(mut st) = self.core.st.try_borrow_mut() {
                st.wakers.commits.cancel(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn advance_wakes_exactly_the_covered_waiters() {
        let counts: Vec<Arc<Count>> = (0..4)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let wakers: Vec<Waker> = counts.iter().map(|c| Waker::from(c.clone())).collect();
        let mut w = Waiters::with_capacity(4);
        for (i, waker) in wakers.iter().enumerate() {
            w.register(None, Lsn(10 * (i as u64 + 1)), waker);
        }
        assert_eq!(w.max_lsn(), Lsn(40));
        assert_eq!(w.advance(Lsn(25)), 2);
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, vec![1, 1, 0, 0]);
        assert_eq!(w.len(), 2);
        w.wake_all();
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, vec![1, 1, 1, 1]);
        assert_eq!(w.max_lsn(), Lsn::ZERO);
    }

    #[test]
    fn reregistering_does_not_duplicate_and_cancel_removes() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(c.clone());
        let mut w = Waiters::with_capacity(1);
        let id = w.register(None, Lsn(5), &waker);
        assert_eq!(w.register(Some(id), Lsn(5), &waker), id);
        assert_eq!(w.len(), 1);
        w.cancel(id);
        assert_eq!(w.len(), 0);
        w.advance(Lsn(100));
        assert_eq!(c.0.load(Ordering::SeqCst), 0);
    }
}
