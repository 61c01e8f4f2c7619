//! The `Send + Sync` way in for code that does not run on a shard's executor.
//!
//! [`Wal::start`] runs one executor per shard, each serving requests from an inbox.
//! [`Client`] is a cheap, clonable handle any thread or runtime can use: tokio tasks, plain
//! threads with `futures::executor::block_on`, other glommio executors. Its futures complete
//! from the shard's thread through ordinary [`std::task::Waker`]s, so they work anywhere.
//! Through it a caller can do what code on a shard can: append one record or a batch,
//! wait for durability, sync, truncate, and read the durable records.
//!
//! # How requests travel
//! ```text
//! caller --push--> inbox (bounded, per shard) --drain all--> server task --> Shard
//!                                                               |
//! caller <--oneshot-- completer task <--commit(lowest pending)--+
//! ```
//! * A push wakes the shard only when its server task is parked, so a burst of requests costs
//!   one cross-thread wake-up, and the server takes the whole queue at once (one lock).
//! * A batch ([`Client::append_batch`]) is one request: N records cost one push, one
//!   hop and one reply, and get contiguous LSNs.
//! * The completer waits for the lowest pending LSN, then completes every request the durable
//!   watermark now covers in one pass: one group commit, one batch of completions.
//! * A full inbox makes the caller's future wait (backpressure), never fail.
//! * Bad input (an unknown shard, an empty or oversized record or batch) is refused on the
//!   caller's side, before anything is queued.
//!
//! # Cancellation
//! Dropping a future before its request was queued leaves nothing behind. Dropping it after
//! the request was queued changes nothing either: the record or batch is appended whole (or
//! not at all, if the shard fails first), and the reply is discarded. No waiter leaks.
//!
//! # Files
//! `inbox` (the queue and read pins), `future` ([`ClientFuture`]), `server` (the shard
//! side), `stream` ([`ReadStream`]), `wal` ([`Wal`]).

mod future;
mod inbox;
mod server;
mod stream;
mod wal;

use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;
use xxhash_rust::xxh3::xxh3_64;

use crate::batch::BatchLimits;
use crate::error::{Error, Result};
use crate::lsn::{Cut, Lsn, ShardId};
use crate::reader::LogReader;

pub use future::ClientFuture;
pub use inbox::INBOX_CAPACITY;
use inbox::{Inbox, Request};
pub use server::RETURN_WINDOW;
pub use stream::{ReadStream, READ_BATCH_BYTES};
pub use wal::Wal;

/// A `Send + Sync + Clone` handle to a running [`Wal`]. Cloning is one atomic increment.
#[derive(Clone)]
pub struct Client {
    inboxes: Arc<[Arc<Inbox>]>,
    limits: BatchLimits,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("shard_count", &self.inboxes.len())
            .finish()
    }
}

impl Client {
    pub(crate) fn new(inboxes: Arc<[Arc<Inbox>]>, limits: BatchLimits) -> Client {
        assert!(!inboxes.is_empty(), "a log has at least one shard");
        Client { inboxes, limits }
    }

    fn inbox(&self, shard: ShardId) -> Result<&Arc<Inbox>> {
        self.inboxes.get(shard.index()).ok_or(Error::NoSuchShard {
            shard,
            shard_count: self.shard_count(),
        })
    }

    /// A future for the request `make` builds, or one that resolves to the refusal.
    fn request<T>(
        &self,
        shard: ShardId,
        check: Result<()>,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> ClientFuture<T> {
        match self.inbox(shard).and_then(|inbox| check.map(|()| inbox)) {
            Ok(inbox) => {
                let (tx, rx) = oneshot::channel();
                ClientFuture::queue(inbox.clone(), make(tx), rx)
            }
            Err(e) => ClientFuture::refuse(e),
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.inboxes.len() as u32
    }

    /// The largest batch [`Client::append_batch`] accepts: the sum of its records' frame
    /// lengths (24 header bytes plus the payload, rounded up to 8), in bytes.
    pub fn max_batch_bytes(&self) -> usize {
        self.limits.max_batch_bytes
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
    /// Errors: [`Error::NoSuchShard`], [`Error::EmptyRecord`], [`Error::RecordTooLarge`]
    /// (these three refused before queueing), [`Error::ShardFailed`], [`Error::Closed`].
    pub fn append(&self, shard: ShardId, payload: impl Into<Bytes>) -> ClientFuture<Lsn> {
        self.append_one(shard, payload.into(), false)
    }

    /// Appends `payload` to `shard` and resolves once it is durable. Errors as
    /// [`Client::append`]; after [`Error::ShardFailed`] the outcome is unknown.
    pub fn append_durable(&self, shard: ShardId, payload: impl Into<Bytes>) -> ClientFuture<Lsn> {
        self.append_one(shard, payload.into(), true)
    }

    fn append_one(&self, shard: ShardId, payload: Bytes, durable: bool) -> ClientFuture<Lsn> {
        let check = self.limits.check_record(payload.len());
        self.request(shard, check, |reply| Request::Append {
            payload,
            durable,
            reply,
        })
    }

    /// Appends `records` to `shard` as one request (one inbox slot, one cross-thread hop,
    /// one reply) and resolves to their LSNs, contiguous and in order, once they are in the
    /// shard's ring (not yet durable). No other append of the shard lands between them.
    ///
    /// Errors: [`Error::NoSuchShard`], [`Error::EmptyBatch`], [`Error::EmptyRecord`],
    /// [`Error::RecordTooLarge`], [`Error::BatchTooLarge`] (above
    /// [`Client::max_batch_bytes`]): all refused before queueing, nothing appended;
    /// [`Error::ShardFailed`] (some of the records may have been appended),
    /// [`Error::Closed`].
    pub fn append_batch(
        &self,
        shard: ShardId,
        records: Vec<Bytes>,
    ) -> ClientFuture<RangeInclusive<Lsn>> {
        self.batch(shard, records, false)
    }

    /// [`Client::append_batch`], resolving once every record of the batch is durable.
    /// Errors as [`Client::append_batch`]; after [`Error::ShardFailed`] the outcome is
    /// unknown.
    pub fn append_batch_durable(
        &self,
        shard: ShardId,
        records: Vec<Bytes>,
    ) -> ClientFuture<RangeInclusive<Lsn>> {
        self.batch(shard, records, true)
    }

    fn batch(
        &self,
        shard: ShardId,
        records: Vec<Bytes>,
        durable: bool,
    ) -> ClientFuture<RangeInclusive<Lsn>> {
        let check = self.limits.check_batch(records.iter().map(Bytes::len));
        self.request(shard, check.map(|_| ()), |reply| Request::AppendBatch {
            records,
            durable,
            reply,
        })
    }

    /// Resolves once `shard` is durable up to `lsn`, to the shard's durable LSN then (at
    /// least `lsn`).
    ///
    /// Errors: [`Error::NoSuchShard`], [`Error::LsnNotAppended`], [`Error::ShardFailed`],
    /// [`Error::Closed`].
    pub fn wait_for(&self, shard: ShardId, lsn: Lsn) -> ClientFuture<Lsn> {
        self.request(shard, Ok(()), |reply| Request::Wait { lsn, reply })
    }

    /// Makes every record of `shard` appended before this request durable (one group
    /// commit, shared with whatever else is pending); resolves to the shard's durable LSN,
    /// at or above them.
    ///
    /// Errors: [`Error::NoSuchShard`], [`Error::ShardFailed`], [`Error::Closed`].
    pub fn sync(&self, shard: ShardId) -> ClientFuture<Lsn> {
        self.request(shard, Ok(()), |reply| Request::Sync { reply })
    }

    /// Removes `shard`'s whole segments whose records are all below `before`, as
    /// [`crate::Shard::truncate_before`] does; resolves to how many. The active segment,
    /// segments a reader pin of another process still needs ([`crate::HeaderView::snapshot`])
    /// and segments an open [`ReadStream`] of this log still needs are kept, so some records
    /// below `before` may stay. Requests queued before this one are served first.
    ///
    /// Errors: [`Error::NoSuchShard`]; [`Error::TruncateBeyondDurable`] when `before` is
    /// above the shard's durable LSN + 1 (nothing removed); [`Error::ShardFailed`],
    /// [`Error::Closed`]; a remove, rename or directory-sync error fails the shard.
    pub fn truncate_before(&self, shard: ShardId, before: Lsn) -> ClientFuture<usize> {
        self.request(shard, Ok(()), |reply| Request::Truncate { before, reply })
    }

    /// The durable records of `shard` from `from`, as a stream of batches (see
    /// [`ReadStream`]), up to the shard's durable LSN when the request reaches it. Memory
    /// stays bounded whatever the segment size; the records are pinned against truncation
    /// through any client until the stream is dropped.
    ///
    /// Errors (as the stream's one `Err` item): [`Error::NoSuchShard`],
    /// [`Error::Truncated`] when `from` is below the first stored LSN, and those of
    /// [`ReadStream`].
    pub fn read(&self, shard: ShardId, from: Lsn) -> ReadStream {
        let inbox = match self.inbox(shard) {
            Ok(inbox) => inbox.clone(),
            Err(e) => return ReadStream::refuse(e),
        };
        let (tx, rx) = oneshot::channel::<Result<LogReader>>();
        let open = ClientFuture::queue(inbox.clone(), Request::Read { from, reply: tx }, rx);
        ReadStream::open(inbox, from.max(Lsn(1)), open)
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
        Cut::new(self.inboxes.iter().map(|i| i.durable_lsn()).collect())
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
            inbox.close_with(Request::Close { reply: tx });
            replies.push((inbox.shard(), rx));
        }
        let mut lsns = Vec::with_capacity(replies.len());
        for (shard, rx) in replies {
            lsns.push(rx.await.unwrap_or(Err(Error::Closed { shard }))?);
        }
        Ok(Cut::new(lsns))
    }

    /// Stops every inbox without waiting (for [`Wal`]'s drop).
    fn close_inboxes(&self) {
        for inbox in self.inboxes.iter() {
            inbox.close();
        }
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

#[cfg(test)]
mod tests;
