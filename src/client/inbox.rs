//! One shard's request queue: the only code that touches it.
//!
//! Every [`super::Client`] pushes into the inbox of the shard it addresses; the shard's
//! server task drains it whole. The queue is bounded ([`INBOX_CAPACITY`]): a full inbox
//! makes the caller's future wait for room, never fail. A push wakes the server only when
//! it parked on an empty queue, so a burst of requests costs one cross-thread wake-up.
//!
//! The inbox also holds the shard's **read pins**: the lowest LSN each open
//! [`super::ReadStream`] still needs. The server lowers every truncation to the lowest pin,
//! as the shared header's pins do for readers in other processes.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::task::AtomicWaker;

use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::reader::LogReader;

/// Requests an inbox holds before callers wait, per shard.
pub const INBOX_CAPACITY: usize = 4096;

/// What a client asks of a shard. Each carries the sending end of its reply.
pub(crate) enum Request {
    Append {
        payload: Bytes,
        durable: bool,
        reply: oneshot::Sender<Result<Lsn>>,
    },
    AppendBatch {
        records: Vec<Bytes>,
        durable: bool,
        reply: oneshot::Sender<Result<RangeInclusive<Lsn>>>,
    },
    Wait {
        lsn: Lsn,
        reply: oneshot::Sender<Result<Lsn>>,
    },
    Sync {
        reply: oneshot::Sender<Result<Lsn>>,
    },
    Truncate {
        before: Lsn,
        reply: oneshot::Sender<Result<usize>>,
    },
    Read {
        from: Lsn,
        reply: oneshot::Sender<Result<LogReader>>,
    },
    Close {
        reply: oneshot::Sender<Result<Lsn>>,
    },
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Request>,
    /// The server found the queue empty and parked: the next push must wake it.
    server_parked: bool,
    /// No more requests are accepted (close was requested, or the server is gone).
    closed: bool,
    /// Callers waiting for room, by waiter id (a dropped caller takes its entry out).
    space_waiters: Vec<(u64, Waker)>,
    next_waiter_id: u64,
}

/// Read pins: `(id, lowest LSN still needed)` of every open read stream.
#[derive(Default)]
struct Pins {
    next_id: u64,
    held: Vec<(u64, Lsn)>,
}

/// One shard's request queue, shared by every client and the shard's server task.
pub(crate) struct Inbox {
    shard: ShardId,
    queue: Mutex<Queue>,
    server: AtomicWaker,
    /// The shard's durable LSN, published after every group commit the server sees.
    durable_lsn: AtomicU64,
    pins: Mutex<Pins>,
}

impl Inbox {
    pub fn new(shard: ShardId) -> Inbox {
        Inbox {
            shard,
            queue: Mutex::new(Queue::default()),
            server: AtomicWaker::new(),
            durable_lsn: AtomicU64::new(0),
            pins: Mutex::new(Pins::default()),
        }
    }

    /// The shard this inbox serves.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue half-updated (every update
        // is a single push/take/flag), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pins(&self) -> MutexGuard<'_, Pins> {
        // As for the queue: every update is one push, store or remove.
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The durable LSN the server last published.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable_lsn.load(Ordering::Acquire))
    }

    /// Publishes the shard's durable LSN (server side).
    pub fn publish_durable(&self, lsn: Lsn) {
        self.durable_lsn.store(lsn.0, Ordering::Release);
    }

    /// Queues the request in `req` unless the inbox is full (then registers `cx` as the
    /// space waiter `waiter`, and returns Pending) or closed (then returns `Err`, leaving
    /// `req` as it was).
    pub fn poll_push(
        &self,
        req: &mut Option<Request>,
        waiter: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>> {
        let mut q = self.lock();
        if q.closed {
            return Poll::Ready(Err(Error::Closed { shard: self.shard }));
        }
        if q.items.len() >= INBOX_CAPACITY {
            let known = waiter.and_then(|id| q.space_waiters.iter_mut().find(|(i, _)| *i == id));
            match known {
                Some((_, w)) => w.clone_from(cx.waker()),
                None => {
                    let id = q.next_waiter_id;
                    q.next_waiter_id += 1;
                    q.space_waiters.push((id, cx.waker().clone()));
                    *waiter = Some(id);
                }
            }
            return Poll::Pending;
        }
        q.items.push_back(req.take().expect("pushed twice"));
        let wake = std::mem::take(&mut q.server_parked);
        drop(q);
        if wake {
            self.server.wake();
        }
        Poll::Ready(Ok(()))
    }

    /// Takes every queued request into `into` (the server side), or registers the server's
    /// waker and returns Pending when there are none. `Ready(false)` once closed and empty.
    pub fn poll_drain(&self, into: &mut VecDeque<Request>, cx: &mut Context<'_>) -> Poll<bool> {
        debug_assert!(into.is_empty(), "the server drains into an empty batch");
        self.server.register(cx.waker());
        let mut q = self.lock();
        if q.items.is_empty() {
            if q.closed {
                return Poll::Ready(false);
            }
            q.server_parked = true;
            return Poll::Pending;
        }
        std::mem::swap(&mut q.items, into);
        let waiters = std::mem::take(&mut q.space_waiters);
        drop(q);
        for (_, w) in waiters {
            w.wake();
        }
        Poll::Ready(true)
    }

    /// Queues `close` as the last request and stops accepting more, under one lock: every
    /// request accepted before it is served first, nothing after it is accepted. Returns
    /// `false` (and drops `close`) when the inbox was closed already.
    pub fn close_with(&self, close: Request) -> bool {
        debug_assert!(matches!(close, Request::Close { .. }));
        let queued = {
            let mut q = self.lock();
            let open = !q.closed;
            if open {
                // Past capacity on purpose: a close never waits for room.
                q.items.push_back(close);
                q.closed = true;
            }
            open
        };
        self.close();
        queued
    }

    /// Stops accepting requests and wakes everyone: callers waiting for room (they then
    /// see [`Error::Closed`]) and the server (it serves what is queued, then stops).
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        let waiters = std::mem::take(&mut q.space_waiters);
        drop(q);
        for (_, w) in waiters {
            w.wake();
        }
        self.server.wake();
    }

    /// Forgets space waiter `id` (its caller was dropped before its request got in).
    pub fn cancel_space_waiter(&self, id: u64) {
        self.lock().space_waiters.retain(|(i, _)| *i != id);
    }

    /// The server is gone (its shard failed to open, closed, or its task panicked): refuse
    /// new requests and drop the queued ones, whose futures then resolve to
    /// [`Error::Closed`] instead of waiting forever.
    pub fn shut(&self) {
        let orphans = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(orphans);
        self.close();
    }

    /// Registers a read pin at `lsn`; returns its id for [`Inbox::move_pin`] and
    /// [`Inbox::unpin`].
    pub fn pin(&self, lsn: Lsn) -> u64 {
        let mut p = self.lock_pins();
        let id = p.next_id;
        p.next_id += 1;
        p.held.push((id, lsn));
        id
    }

    /// Raises pin `id` to `lsn` (a reader that moved on needs less).
    pub fn move_pin(&self, id: u64, lsn: Lsn) {
        let mut p = self.lock_pins();
        let pin = p.held.iter_mut().find(|(i, _)| *i == id);
        let pin = pin.expect("moving a pin that is not held");
        assert!(lsn >= pin.1, "a read pin only moves up");
        pin.1 = lsn;
    }

    /// Releases pin `id`.
    pub fn unpin(&self, id: u64) {
        let mut p = self.lock_pins();
        p.held.retain(|(i, _)| *i != id);
    }

    /// The lowest LSN a read pin holds, if any.
    pub fn lowest_pin(&self) -> Option<Lsn> {
        self.lock_pins().held.iter().map(|(_, l)| *l).min()
    }

    /// Queued requests (for tests).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.lock().items.len()
    }

    /// Callers waiting for room (for tests).
    #[cfg(test)]
    pub fn space_waiters(&self) -> usize {
        self.lock().space_waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_report_the_lowest_and_release() {
        let inbox = Inbox::new(ShardId(0));
        assert_eq!(inbox.lowest_pin(), None);
        let a = inbox.pin(Lsn(10));
        let b = inbox.pin(Lsn(5));
        assert_eq!(inbox.lowest_pin(), Some(Lsn(5)));
        inbox.move_pin(b, Lsn(20));
        assert_eq!(inbox.lowest_pin(), Some(Lsn(10)));
        inbox.unpin(a);
        assert_eq!(inbox.lowest_pin(), Some(Lsn(20)));
        inbox.unpin(b);
        assert_eq!(inbox.lowest_pin(), None);
    }

    #[test]
    fn close_with_queues_last_and_only_once() {
        let inbox = Inbox::new(ShardId(0));
        let (tx, _rx) = oneshot::channel();
        assert!(inbox.close_with(Request::Close { reply: tx }));
        let (tx, _rx) = oneshot::channel();
        assert!(!inbox.close_with(Request::Close { reply: tx }));
        assert_eq!(inbox.queued(), 1);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, _rx) = oneshot::channel();
        let mut late = Some(Request::Sync { reply: tx });
        assert!(matches!(
            inbox.poll_push(&mut late, &mut None, &mut cx),
            Poll::Ready(Err(Error::Closed { .. }))
        ));
        assert!(late.is_some(), "a refused request stays with its caller");
    }
}
