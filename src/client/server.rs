//! The shard side of the client: a server task that serves the inbox, and a completer
//! task that answers requests as the durable watermark passes them.
//!
//! ```text
//! Inbox --drain all--> server --append / sync / truncate / read--> Shard
//!                        | durable requests
//!                        v
//! caller <--oneshot-- completer <--commit(lowest pending)-- Shard
//! ```
//! * The server serves requests in the order they were queued, one at a time: a batch is
//!   appended whole before the next request, a truncation finishes before a later read
//!   sees the chain.
//! * The completer waits for the lowest pending LSN, then answers every request the
//!   durable watermark now covers in one pass: one group commit, one batch of replies.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use futures::channel::oneshot;

use super::inbox::{Inbox, Request, INBOX_CAPACITY};
use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::shard::Shard;

/// How long a group commit waits for the next record from the writers its last completions
/// woke, before it goes out without them (see [`Shard::expect_appends`]; it waits 4 times
/// this at most): a cross-thread wake-up and its way back take 100-450 us on the machine this
/// was tuned on.
pub const RETURN_WINDOW: std::time::Duration = std::time::Duration::from_micros(250);

/// The reply of a request that waits for durability.
enum Reply {
    /// An append: answered with its LSN.
    Lsn(oneshot::Sender<Result<Lsn>>),
    /// A batch: answered with its LSNs, from the first one kept here.
    Range(oneshot::Sender<Result<RangeInclusive<Lsn>>>, Lsn),
    /// A wait or a sync: answered with the durable LSN at completion.
    Durable(oneshot::Sender<Result<Lsn>>),
}

impl Reply {
    /// Answers a request for `at`, now that `durable >= at`. `false` when its future is gone.
    fn answer(self, at: Lsn, durable: Lsn) -> bool {
        debug_assert!(at <= durable, "answered before it was durable");
        match self {
            Reply::Lsn(tx) => tx.send(Ok(at)).is_ok(),
            Reply::Range(tx, first) => tx.send(Ok(first..=at)).is_ok(),
            Reply::Durable(tx) => tx.send(Ok(durable)).is_ok(),
        }
    }

    fn fail(self, e: Error) {
        // A reply nobody waits for any more is dropped: its future was dropped.
        match self {
            Reply::Lsn(tx) | Reply::Durable(tx) => drop(tx.send(Err(e))),
            Reply::Range(tx, _) => drop(tx.send(Err(e))),
        }
    }
}

/// A request waiting for durability on the server side.
struct PendingReply {
    lsn: Lsn,
    reply: Reply,
}

/// Server-side state shared by one shard's server and completer tasks.
#[derive(Default)]
struct Pending {
    /// Durable appends and batches, in LSN order (appends are served in order).
    appends: VecDeque<PendingReply>,
    /// Waits and syncs, for any LSN.
    waits: Vec<PendingReply>,
    completer: Option<Waker>,
    /// The server finished; the completer may stop once nothing is pending.
    done: bool,
}

impl Pending {
    fn lowest(&self) -> Option<Lsn> {
        let a = self.appends.front().map(|p| p.lsn);
        let w = self.waits.iter().map(|p| p.lsn).min();
        match (a, w) {
            (Some(a), Some(w)) => Some(a.min(w)),
            (a, w) => a.or(w),
        }
    }

    fn push_append(&mut self, lsn: Lsn, reply: Reply) {
        debug_assert!(self.appends.back().is_none_or(|p| p.lsn < lsn));
        self.appends.push_back(PendingReply { lsn, reply });
        self.wake_completer();
    }

    fn push_wait(&mut self, lsn: Lsn, reply: Reply) {
        self.waits.push(PendingReply { lsn, reply });
        self.wake_completer();
    }

    fn wake_completer(&mut self) {
        if let Some(w) = self.completer.take() {
            w.wake();
        }
    }

    /// Answers everything at or below `durable`; returns how many appends were answered.
    fn answer_up_to(&mut self, durable: Lsn) -> u32 {
        let mut answered = 0u32;
        while self.appends.front().is_some_and(|r| r.lsn <= durable) {
            let r = self.appends.pop_front().expect("front exists");
            answered += u32::from(r.reply.answer(r.lsn, durable));
        }
        let mut i = 0;
        while i < self.waits.len() {
            if self.waits[i].lsn <= durable {
                let r = self.waits.swap_remove(i);
                r.reply.answer(r.lsn, durable);
            } else {
                i += 1;
            }
        }
        answered
    }
}

/// The one place that turns a shard's error into the error every waiting request gets.
fn same_error(e: &Error, _shard: ShardId) -> Error {
    e.clone()
}

/// Waits until something is pending (`Some(lowest LSN)`) or the server is done (`None`).
async fn next_target(pending: &RefCell<Pending>) -> Option<Lsn> {
    poll_fn(|cx| {
        let mut p = pending.borrow_mut();
        match p.lowest() {
            Some(lsn) => Poll::Ready(Some(lsn)),
            None if p.done => Poll::Ready(None),
            None => {
                p.completer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}

/// Completes pending requests as the durable watermark passes them.
async fn complete(shard: Shard, inbox: Arc<Inbox>, pending: Rc<RefCell<Pending>>) {
    while let Some(target) = next_target(&pending).await {
        let result = shard.commit(target).await;
        let durable = shard.durable_lsn();
        inbox.publish_durable(durable);
        let mut p = pending.borrow_mut();
        match result {
            Ok(()) => {
                assert!(durable >= target, "a commit resolved below its target");
                let answered = p.answer_up_to(durable);
                // The writers just answered usually come straight back with their next
                // record, but across threads that takes a wake-up or two: let the next group
                // commit wait briefly for them instead of going out without them.
                if answered > 1 {
                    shard.expect_appends(answered, RETURN_WINDOW);
                }
            }
            Err(e) => {
                let p = &mut *p;
                for r in p.appends.drain(..).chain(p.waits.drain(..)) {
                    r.reply.fail(same_error(&e, shard.id()));
                }
            }
        }
    }
}

/// One shard's server: the shard, the inbox it serves, and what waits for durability.
struct Server {
    shard: Shard,
    inbox: Arc<Inbox>,
    pending: Rc<RefCell<Pending>>,
}

impl Server {
    /// Serves one request; returns the reply of a close request, which ends serving.
    async fn serve_one(&self, req: Request) -> Option<oneshot::Sender<Result<Lsn>>> {
        let shard = &self.shard;
        match req {
            Request::Append {
                payload,
                durable,
                reply,
            } => match shard.append(&payload).await {
                Ok(lsn) if durable => self
                    .pending
                    .borrow_mut()
                    .push_append(lsn, Reply::Lsn(reply)),
                r => drop(reply.send(r)),
            },
            Request::AppendBatch {
                records,
                durable,
                reply,
            } => match shard.append_batch(&records).await {
                Ok(lsns) if durable => {
                    let (first, last) = lsns.into_inner();
                    let mut p = self.pending.borrow_mut();
                    p.push_append(last, Reply::Range(reply, first));
                }
                r => drop(reply.send(r)),
            },
            Request::Wait { lsn, reply } => self.wait(lsn, Reply::Durable(reply)),
            Request::Sync { reply } => self.wait(shard.last_appended_lsn(), Reply::Durable(reply)),
            Request::Truncate { before, reply } => {
                let keep_from = self.inbox.lowest_pin();
                let r = shard.truncate_before_keeping(before, keep_from).await;
                self.inbox.publish_durable(shard.durable_lsn());
                let _ = reply.send(r);
            }
            Request::Read { from, reply } => drop(reply.send(shard.reader(from))),
            Request::Close { reply } => return Some(reply),
        }
        None
    }

    /// Answers `reply` once `lsn` is durable: at once when it already is.
    fn wait(&self, lsn: Lsn, reply: Reply) {
        let shard = &self.shard;
        let last = shard.last_appended_lsn();
        if lsn > last {
            let e = Error::LsnNotAppended {
                shard: shard.id(),
                requested: lsn,
                last_appended: last,
            };
            reply.fail(e);
        } else if lsn <= shard.durable_lsn() && !shard.is_failed() {
            reply.answer(lsn, shard.durable_lsn());
        } else {
            self.pending.borrow_mut().push_wait(lsn, reply);
        }
    }
}

/// Serves one shard's inbox until the log is closed; returns the final durable LSN.
pub(crate) async fn serve(shard: Shard, inbox: Arc<Inbox>) -> Result<Lsn> {
    inbox.publish_durable(shard.durable_lsn());
    let pending = Rc::new(RefCell::new(Pending::default()));
    let completer = glommio::spawn_local(complete(shard.clone(), inbox.clone(), pending.clone()));
    let server = Server {
        shard,
        inbox,
        pending,
    };
    let mut batch = VecDeque::with_capacity(INBOX_CAPACITY);
    let mut close_reply = None;
    'serve: while poll_fn(|cx| server.inbox.poll_drain(&mut batch, cx)).await {
        while let Some(req) = batch.pop_front() {
            close_reply = server.serve_one(req).await;
            if close_reply.is_some() {
                break 'serve;
            }
        }
    }
    // Whatever was accepted is appended; let the completer answer it, then close.
    {
        let mut p = server.pending.borrow_mut();
        p.done = true;
        p.wake_completer();
    }
    completer.await;
    let Server { shard, inbox, .. } = server;
    let result = shard.close().await;
    if let Ok(lsn) = &result {
        inbox.publish_durable(*lsn);
    }
    if let Some(reply) = close_reply {
        let _ = reply.send(
            result
                .as_ref()
                .map(|l| *l)
                .map_err(|e| same_error(e, shard.id())),
        );
    }
    result
}
