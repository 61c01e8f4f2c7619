//! The `Send + Sync` way in for code that does not run on a shard's executor.
//!
//! [`Wal::start`] runs one executor per shard, each serving requests from an `Inbox`.
//! [`Client`] is a cheap, clonable handle any thread or runtime can use: tokio tasks, plain
//! threads with `futures::executor::block_on`, other glommio executors. Its futures complete
//! from the shard's thread through ordinary [`std::task::Waker`]s, so they work anywhere.
//!
//! # How requests travel
//! ```text
//! caller --push--> Inbox (bounded, per shard) --drain all--> server task --append--> Shard
//!                                                               |
//! caller <--oneshot-- completer task <--commit(lowest pending)--+
//! ```
//! * A push wakes the shard only when its server task is parked, so a burst of requests costs
//!   one cross-thread wake-up, and the server takes the whole queue at once (one lock).
//! * The completer waits for the lowest pending LSN, then completes every request the durable
//!   watermark now covers in one pass: one group commit, one batch of completions.
//! * A full inbox makes the caller's future wait (backpressure), never fail.
//!
//! # Cancellation
//! Dropping a future before its request was queued leaves nothing behind. Dropping it after
//! the request was queued changes nothing either: the record is appended whole (or not at
//! all, if the shard fails first), and the reply is discarded. No waiter leaks.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::task::AtomicWaker;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::lsn::{Cut, Lsn, ShardId};
use crate::shard::Shard;

/// Requests an inbox holds before callers wait, per shard.
pub const INBOX_CAPACITY: usize = 4096;

/// How long a group commit waits for the next record from the writers its last completions
/// woke, before it goes out without them (see [`Shard::expect_appends`]; it waits 4 times
/// this at most): a cross-thread wake-up and its way back take 100-450 us on the machine this
/// was tuned on.
pub const RETURN_WINDOW: std::time::Duration = std::time::Duration::from_micros(250);

enum Request {
    Append {
        payload: Bytes,
        durable: bool,
        reply: oneshot::Sender<Result<Lsn>>,
    },
    Wait {
        lsn: Lsn,
        reply: oneshot::Sender<Result<Lsn>>,
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
    /// No more requests are accepted (close was requested).
    closed: bool,
    /// Callers waiting for room.
    space_waiters: Vec<Waker>,
}

/// One shard's request queue, shared by every client and the shard's server task.
pub(crate) struct Inbox {
    shard: ShardId,
    queue: Mutex<Queue>,
    server: AtomicWaker,
    /// The shard's durable LSN, published after every group commit the server sees.
    durable_lsn: AtomicU64,
}

impl Inbox {
    fn new(shard: ShardId) -> Inbox {
        Inbox {
            shard,
            queue: Mutex::new(Queue::default()),
            server: AtomicWaker::new(),
            durable_lsn: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue half-updated (every update
        // is a single push/take), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `req` unless the inbox is full (then registers `cx` and returns Pending) or
    /// closed (then returns `Err`).
    fn poll_push(&self, req: &mut Option<Request>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut q = self.lock();
        if q.closed {
            return Poll::Ready(Err(Error::Closed { shard: self.shard }));
        }
        if q.items.len() >= INBOX_CAPACITY {
            q.space_waiters.push(cx.waker().clone());
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
    fn poll_drain(&self, into: &mut VecDeque<Request>, cx: &mut Context<'_>) -> Poll<bool> {
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
        for w in waiters {
            w.wake();
        }
        Poll::Ready(true)
    }

    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        let waiters = std::mem::take(&mut q.space_waiters);
        drop(q);
        for w in waiters {
            w.wake();
        }
        self.server.wake();
    }

    /// The server is gone (its shard failed to open, closed, or its task panicked): refuse
    /// new requests and drop the queued ones, whose futures then resolve to
    /// [`Error::Closed`] instead of waiting forever.
    fn shut(&self) {
        let orphans = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(orphans);
        self.close();
    }
}

/// Tells [`Wal::start`] whether a shard opened; dropped unsent (a panic), it says "no".
struct OpenSignal(Option<std::sync::mpsc::Sender<bool>>);

impl OpenSignal {
    fn send(&mut self, opened: bool) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(opened);
        }
    }
}

impl Drop for OpenSignal {
    fn drop(&mut self) {
        self.send(false);
    }
}

/// Shuts an inbox when its server's executor stops, however it stops (unwinding included).
struct ShutOnExit(Arc<Inbox>);

impl Drop for ShutOnExit {
    fn drop(&mut self) {
        self.0.shut();
    }
}

/// A `Send + Sync + Clone` handle to a running [`Wal`]. Cloning is one atomic increment.
#[derive(Clone)]
pub struct Client {
    inboxes: Arc<[Arc<Inbox>]>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("shard_count", &self.inboxes.len())
            .finish()
    }
}

/// The future of a client request: resolves once the shard has done what was asked. It is
/// `Send` and runtime-agnostic; dropping it is always safe (see the module docs).
#[must_use = "a request is not sent until its future is polled"]
pub struct ClientFuture<T> {
    inbox: Arc<Inbox>,
    state: RequestState,
    map: fn(Lsn) -> T,
}

enum RequestState {
    Queue(Option<Request>, oneshot::Receiver<Result<Lsn>>),
    Wait(oneshot::Receiver<Result<Lsn>>),
    Done,
}

impl<T> Future for ClientFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                RequestState::Queue(req, _) => {
                    match this.inbox.poll_push(req, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            this.state = RequestState::Done;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let RequestState::Queue(_, rx) =
                        std::mem::replace(&mut this.state, RequestState::Done)
                    else {
                        unreachable!()
                    };
                    this.state = RequestState::Wait(rx);
                }
                RequestState::Wait(rx) => {
                    let out = match Pin::new(rx).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(r)) => r.map(this.map),
                        // The server dropped the reply: the shard stopped (closed or its
                        // executor ended) before answering.
                        Poll::Ready(Err(oneshot::Canceled)) => Err(Error::Closed {
                            shard: this.inbox.shard,
                        }),
                    };
                    this.state = RequestState::Done;
                    return Poll::Ready(out);
                }
                RequestState::Done => panic!("client future polled after it completed"),
            }
        }
    }
}

impl Client {
    fn inbox(&self, shard: ShardId) -> Result<&Arc<Inbox>> {
        self.inboxes.get(shard.index()).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "shard {shard} does not exist; the log has {} shards",
                self.inboxes.len()
            ))
        })
    }

    fn request<T>(
        &self,
        shard: ShardId,
        make: impl FnOnce(oneshot::Sender<Result<Lsn>>) -> Request,
        map: fn(Lsn) -> T,
    ) -> ClientFuture<T> {
        let (tx, rx) = oneshot::channel();
        let (inbox, state) = match self.inbox(shard) {
            Ok(inbox) => (inbox.clone(), RequestState::Queue(Some(make(tx)), rx)),
            Err(e) => {
                // Answer at once through the same channel, so the caller sees one path.
                let _ = tx.send(Err(e));
                (self.inboxes[0].clone(), RequestState::Wait(rx))
            }
        };
        ClientFuture { inbox, state, map }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.inboxes.len() as u32
    }

    /// The shard a key belongs to: `xxh3_64(key) % shard_count` (xxh3 with seed 0). Stable
    /// across processes and shardwal versions for the same shard count, so a service can keep
    /// each key's records in one shard's order. Changing the shard count moves keys.
    pub fn shard_for_key(&self, key: &[u8]) -> ShardId {
        shard_for_key(key, self.shard_count())
    }

    /// Appends `payload` to `shard`; resolves to its LSN once it is in the shard's ring (not
    /// yet durable). `Bytes` payloads travel without a copy until the shard's ring.
    ///
    /// Errors: [`Error::EmptyRecord`], [`Error::RecordTooLarge`], [`Error::ShardFailed`],
    /// [`Error::Closed`], [`Error::InvalidConfig`] for a shard that does not exist.
    pub fn append(&self, shard: ShardId, payload: impl Into<Bytes>) -> ClientFuture<Lsn> {
        let payload = payload.into();
        self.request(
            shard,
            |reply| Request::Append {
                payload,
                durable: false,
                reply,
            },
            |l| l,
        )
    }

    /// Appends `payload` to `shard` and resolves once it is durable. Errors as
    /// [`Client::append`]; after [`Error::ShardFailed`] the outcome is unknown.
    pub fn append_durable(&self, shard: ShardId, payload: impl Into<Bytes>) -> ClientFuture<Lsn> {
        let payload = payload.into();
        self.request(
            shard,
            |reply| Request::Append {
                payload,
                durable: true,
                reply,
            },
            |l| l,
        )
    }

    /// Resolves once `shard` is durable up to `lsn`, to the shard's durable LSN then (at
    /// least `lsn`).
    ///
    /// Errors: [`Error::LsnNotAppended`], [`Error::ShardFailed`], [`Error::Closed`].
    pub fn wait_for(&self, shard: ShardId, lsn: Lsn) -> ClientFuture<Lsn> {
        self.request(shard, |reply| Request::Wait { lsn, reply }, |l| l)
    }

    /// Resolves once every shard is durable up to its entry in `cut`.
    ///
    /// Errors: as [`Client::wait_for`] for the first shard that fails;
    /// [`Error::InvalidConfig`] when the cut covers more shards than the log has.
    pub async fn wait_for_cut(&self, cut: &Cut) -> Result<()> {
        if cut.shard_count() > self.inboxes.len() {
            return Err(Error::InvalidConfig(format!(
                "the cut covers {} shards; the log has {}",
                cut.shard_count(),
                self.inboxes.len()
            )));
        }
        let waits = cut
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, lsn)| **lsn > Lsn::ZERO)
            .map(|(i, lsn)| self.wait_for(ShardId(i as u32), *lsn));
        futures::future::try_join_all(waits).await?;
        Ok(())
    }

    /// The durable LSN of every shard, as last published by each shard's server. Each entry
    /// is durable; the cut may lag the shards by one group commit.
    pub fn durable_cut(&self) -> Cut {
        Cut::new(
            self.inboxes
                .iter()
                .map(|i| Lsn(i.durable_lsn.load(Ordering::Acquire)))
                .collect(),
        )
    }

    /// Stops accepting requests on every shard, lets each shard finish, sync and close
    /// everything it already accepted, and returns the final durable cut. Requests made after
    /// this call get [`Error::Closed`]. Safe to call from any runtime; a second call returns
    /// the same kind of result or [`Error::Closed`].
    ///
    /// Errors: [`Error::ShardFailed`] when a shard failed; the cut is then unknown.
    pub async fn close(&self) -> Result<Cut> {
        let mut replies = Vec::with_capacity(self.inboxes.len());
        for inbox in self.inboxes.iter() {
            let (tx, rx) = oneshot::channel();
            {
                let mut q = inbox.lock();
                if !q.closed {
                    // Queued last, under the same lock that stops further pushes: everything
                    // accepted before it is served first, nothing after it is accepted.
                    q.items.push_back(Request::Close { reply: tx });
                    q.closed = true;
                }
            }
            inbox.close();
            replies.push((inbox.shard, rx));
        }
        let mut lsns = Vec::with_capacity(replies.len());
        for (shard, rx) in replies {
            lsns.push(rx.await.unwrap_or(Err(Error::Closed { shard }))?);
        }
        Ok(Cut::new(lsns))
    }
}

/// The shard `key` belongs to among `shard_count` shards: `xxh3_64(key) % shard_count`
/// (see [`Client::shard_for_key`]).
///
/// # Panics
/// When `shard_count` is 0 (a log always has at least one shard).
pub fn shard_for_key(key: &[u8], shard_count: u32) -> ShardId {
    assert!(shard_count > 0, "shard_count must be above 0");
    ShardId((xxh3_64(key) % shard_count as u64) as u32)
}

/// A request waiting for durability on the server side.
struct PendingReply {
    lsn: Lsn,
    reply: oneshot::Sender<Result<Lsn>>,
}

/// Server-side state shared by one shard's server and completer tasks.
#[derive(Default)]
struct Pending {
    /// Durable appends, in LSN order (appends are served in order).
    appends: VecDeque<PendingReply>,
    /// Waits for arbitrary LSNs.
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

    fn wake_completer(&mut self) {
        if let Some(w) = self.completer.take() {
            w.wake();
        }
    }
}

fn same_error(e: &Error, _shard: ShardId) -> Error {
    e.clone()
}

/// Completes pending requests as the durable watermark passes them.
async fn complete(shard: Shard, inbox: Arc<Inbox>, pending: Rc<std::cell::RefCell<Pending>>) {
    loop {
        let target = poll_fn(|cx| {
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
        .await;
        let Some(target) = target else { return };
        let result = shard.commit(target).await;
        let durable = shard.durable_lsn();
        inbox.durable_lsn.store(durable.0, Ordering::Release);
        let mut guard = pending.borrow_mut();
        let p = &mut *guard;
        match result {
            Ok(()) => {
                let mut answered = 0u32;
                while p.appends.front().is_some_and(|r| r.lsn <= durable) {
                    let r = p.appends.pop_front().expect("front exists");
                    answered += u32::from(r.reply.send(Ok(r.lsn)).is_ok());
                }
                // The writers just answered usually come straight back with their next
                // record, but across threads that takes a wake-up or two: let the next group
                // commit wait briefly for them instead of going out without them.
                if answered > 1 {
                    shard.expect_appends(answered, RETURN_WINDOW);
                }
                let mut i = 0;
                while i < p.waits.len() {
                    if p.waits[i].lsn <= durable {
                        let r = p.waits.swap_remove(i);
                        let _ = r.reply.send(Ok(durable));
                    } else {
                        i += 1;
                    }
                }
            }
            Err(e) => {
                for r in p.appends.drain(..).chain(p.waits.drain(..)) {
                    let _ = r.reply.send(Err(same_error(&e, shard.id())));
                }
            }
        }
    }
}

/// Serves one shard's inbox until the log is closed; returns the final durable LSN.
pub(crate) async fn serve(shard: Shard, inbox: Arc<Inbox>) -> Result<Lsn> {
    let pending = Rc::new(std::cell::RefCell::new(Pending::default()));
    let completer = glommio::spawn_local(complete(shard.clone(), inbox.clone(), pending.clone()));
    let mut batch = VecDeque::with_capacity(INBOX_CAPACITY);
    let mut close_reply = None;
    'serve: loop {
        let more = poll_fn(|cx| inbox.poll_drain(&mut batch, cx)).await;
        if !more {
            break;
        }
        while let Some(req) = batch.pop_front() {
            match req {
                Request::Append {
                    payload,
                    durable,
                    reply,
                } => match shard.append(&payload).await {
                    Ok(lsn) if durable => {
                        let mut p = pending.borrow_mut();
                        p.appends.push_back(PendingReply { lsn, reply });
                        p.wake_completer();
                    }
                    Ok(lsn) => {
                        let _ = reply.send(Ok(lsn));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Request::Wait { lsn, reply } => {
                    if lsn > shard.last_appended_lsn() {
                        let _ = reply.send(Err(Error::LsnNotAppended {
                            shard: shard.id(),
                            requested: lsn,
                            last_appended: shard.last_appended_lsn(),
                        }));
                    } else if lsn <= shard.durable_lsn() && !shard.is_failed() {
                        let _ = reply.send(Ok(shard.durable_lsn()));
                    } else {
                        let mut p = pending.borrow_mut();
                        p.waits.push(PendingReply { lsn, reply });
                        p.wake_completer();
                    }
                }
                Request::Close { reply } => {
                    close_reply = Some(reply);
                    break 'serve;
                }
            }
        }
    }
    // Whatever was accepted is appended; let the completer answer it, then close.
    {
        let mut p = pending.borrow_mut();
        p.done = true;
        p.wake_completer();
    }
    completer.await;
    let result = shard.close().await;
    if let Ok(lsn) = &result {
        inbox.durable_lsn.store(lsn.0, Ordering::Release);
    }
    if let Some(reply) = close_reply {
        let answer = match &result {
            Ok(lsn) => Ok(*lsn),
            Err(e) => Err(same_error(e, shard.id())),
        };
        let _ = reply.send(answer);
    }
    result
}

/// A running log served to [`Client`]s: one executor per shard.
///
/// Dropping a `Wal` without [`Wal::close`] closes it all the same and waits for its
/// executors (errors are discarded). A process that dies without either is safe too:
/// whatever was not yet durable may be lost, and reopening recovers the rest.
pub struct Wal {
    client: Client,
    handles: Option<crate::runtime::WalHandle<Lsn>>,
}

impl Wal {
    /// Starts one executor per shard (see [`crate::spawn`]), each serving a [`Client`], and
    /// waits until every shard has opened (recovery included), so that the log is owned by
    /// this process and its shared header is published when this returns.
    ///
    /// Errors: as [`crate::spawn`]; when a shard fails to open (for example
    /// [`Error::LogLocked`]: another process owns the directory), the shards that did open
    /// are closed and the first shard's error is returned.
    pub fn start(config: WalConfig) -> Result<Wal> {
        let shard_count = config.shard_count();
        let inboxes: Arc<[Arc<Inbox>]> = (0..shard_count)
            .map(|i| Arc::new(Inbox::new(ShardId(i))))
            .collect();
        let served = inboxes.clone();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<bool>();
        let handle = crate::runtime::spawn_executors(config, move |cfg, id| {
            let inbox = served[id.index()].clone();
            let mut opened = OpenSignal(Some(opened_tx.clone()));
            async move {
                let _shut = ShutOnExit(inbox.clone());
                let shard = Shard::open(&cfg, id).await;
                opened.send(shard.is_ok());
                let shard = shard?;
                inbox
                    .durable_lsn
                    .store(shard.durable_lsn().0, Ordering::Release);
                serve(shard, inbox).await
            }
        });
        let wal = Wal {
            client: Client { inboxes },
            handles: Some(handle?),
        };
        // Every executor answers once (a panic before it could counts as a failure).
        let all_opened = (0..shard_count).all(|_| opened_rx.recv().unwrap_or(false));
        if all_opened {
            return Ok(wal);
        }
        match wal.close() {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Executor("a shard did not open".into())),
        }
    }

    /// A new handle for sending requests (clone it freely; it is `Send + Sync`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Closes every shard ([`Client::close`]), waits for their executors to stop, and returns
    /// the final durable cut. Blocks the calling thread: from async code, use
    /// [`Client::close`] and then drop the `Wal` (or call this in a blocking task).
    ///
    /// Errors: the first shard that failed to open, failed, or panicked.
    pub fn close(mut self) -> Result<Cut> {
        let closed = futures::executor::block_on(self.client.close());
        // A shard that failed to open or panicked answers `Closed`; its executor's own
        // error says why, so it comes first.
        self.join()?;
        closed
    }

    fn join(&mut self) -> Result<()> {
        let Some(h) = self.handles.take() else {
            return Ok(());
        };
        h.join()?;
        Ok(())
    }
}

impl Drop for Wal {
    /// Closes every shard and waits for its executor to stop, like [`Wal::close`] but
    /// discarding errors. Waiting matters: a directory must never have two writers, and
    /// starting a new `Wal` on it right after this drop is then safe. Do not drop a `Wal`
    /// on one of its own shard threads.
    fn drop(&mut self) {
        if self.handles.is_some() {
            for inbox in self.client.inboxes.iter() {
                inbox.close();
            }
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn client_is_send_sync_clone_and_futures_are_send() {
        assert_send_sync::<Client>();
        fn is_send<T: Send>(_: &T) {}
        let c = Client {
            inboxes: Arc::from(vec![Arc::new(Inbox::new(ShardId(0)))]),
        };
        is_send(&c.append(ShardId(0), Bytes::from_static(b"x")));
        is_send(&c.wait_for_cut(&Cut::new(vec![Lsn(1)])));
    }

    #[test]
    fn routing_is_stable_and_spreads_keys() {
        // Fixed values: changing them breaks every deployed key-to-shard mapping.
        assert_eq!(shard_for_key(b"", 7), ShardId((xxh3_64(b"") % 7) as u32));
        let a = shard_for_key(b"user:42", 4);
        assert_eq!(a, shard_for_key(b"user:42", 4));
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_for_key(format!("key-{i}").as_bytes(), 4).index()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_full_inbox_makes_callers_wait_and_drain_frees_them() {
        let inbox = Arc::new(Inbox::new(ShardId(0)));
        let c = Client {
            inboxes: Arc::from(vec![inbox.clone()]),
        };
        let mut futs: Vec<_> = (0..INBOX_CAPACITY + 1)
            .map(|_| Box::pin(c.append(ShardId(0), Bytes::from_static(b"x"))))
            .collect();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for f in futs.iter_mut() {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(inbox.lock().items.len(), INBOX_CAPACITY);
        assert_eq!(
            inbox.lock().space_waiters.len(),
            1,
            "the last one waits for room"
        );
        let mut drained = VecDeque::new();
        assert_eq!(inbox.poll_drain(&mut drained, &mut cx), Poll::Ready(true));
        assert_eq!(drained.len(), INBOX_CAPACITY);
        assert!(futs.last_mut().unwrap().as_mut().poll(&mut cx).is_pending());
        assert_eq!(inbox.lock().items.len(), 1, "the waiting request got in");
        // Dropping queued futures does not touch the queue.
        drop(futs);
        assert_eq!(inbox.lock().items.len(), 1);
        inbox.close();
        let mut late = Box::pin(c.append(ShardId(0), Bytes::from_static(b"y")));
        assert!(matches!(
            late.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Closed { .. }))
        ));
    }
}
