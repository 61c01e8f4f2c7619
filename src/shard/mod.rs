//! One shard: append, commit, sync, read, truncate, close.
//!
//! A [`Shard`] lives on one glommio executor and is `!Send`: clone the handle to share it
//! between the tasks of that executor.
//!
//! # Data flow
//! One direction: caller -> shard -> ring -> storage -> durable watermark -> waiters.
//! 1. [`Shard::append`] copies the record into the open flush buffer of the ring
//!    (`crate::ring`) and returns its [`Lsn`] at once; a full buffer is sealed on the spot.
//! 2. The flusher task (`flusher`) seals the open batch when a commit waits for it (group
//!    commit), writes sealed batches through the storage seam (`crate::storage`), advances
//!    the completed watermark over the written prefix, and fdatasyncs it.
//! 3. A finished fdatasync moves the durable watermark, publishes it in the shared header
//!    (`crate::shm`), and wakes the [`Commit`] futures it covers (`commit`).
//!
//! # Modules
//! - this file: the [`Shard`] handle and its public API;
//! - `state`: everything a shard mutates, split by concern ([`state::State`]), the
//!   lifecycle, and the invariants checked after every flusher pass;
//! - `flusher`: the task that moves batches to durable storage, one function per phase;
//! - `open`: opening (directory, lease, recovery, spares, first segment, state);
//! - `commit`: the commit waiters and the [`Commit`] future;
//! - `retire`: truncation, which retires segments as spares or removes them.
//!
//! The handle and the flusher share only [`state::Core`]: the flusher never sees a
//! [`Shard`], and nothing here knows about executors beyond spawning the flusher.
//!
//! # Failure
//! After any write, fdatasync, create or remove error the shard is **failed**: every pending
//! and later call returns [`Error::ShardFailed`] until the WAL is reopened, which runs
//! recovery. A commit that failed has an unknown outcome. Nothing retries an fdatasync.

mod batch_index;
mod commit;
mod completion_wait;
mod flusher;
mod open;
mod overlap;
mod retire;
mod state;

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

pub use commit::Commit;
use state::{Core, SealHold};

use crate::batch::BatchLimits;
use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::metrics::ShardMetrics;
use crate::reader::LogReader;
use crate::seek::Learner;
use crate::storage::{DmaStorage, Storage};
use crate::Durability;

/// Sets the shard closing when the last user handle is dropped, so the flusher drains what
/// was appended and exits instead of living on.
struct CloseOnDrop(Rc<Core>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut st = self.0.st.borrow_mut();
        st.lifecycle.request_close();
        st.wake_flusher();
    }
}

/// A handle to one open shard. Cheap to clone; `!Send` (it belongs to its executor).
#[derive(Clone)]
pub struct Shard {
    core: Rc<Core>,
    _guard: Rc<CloseOnDrop>,
}

impl Shard {
    /// Opens shard `id` of the log `config` describes, inside the calling glommio executor:
    /// recovers its segments, allocates its buffers, prepares a segment to write into (a new
    /// one is zeroed, at most its first 2 MiB, and fdatasynced before this returns) and
    /// starts its flusher task. Use [`crate::spawn`] to run one executor per shard instead.
    ///
    /// Recovery reads every segment's header and walks record by record only the newest
    /// segments (back until a marker vouches for everything before them); older, sealed
    /// segments are verified when a reader reaches them.
    ///
    /// Errors: [`Error::InvalidConfig`] when `id` is not below the shard count; recovery's:
    /// [`Error::ForeignFile`] and [`Error::NewerFormat`] for files it must not touch,
    /// [`Error::Corruption`] for damage below the vouched-for durable point in the segments
    /// it walks (damage in older segments is reported by the reader that reaches it),
    /// [`Error::Io`] when a file cannot be read or created; [`Error::LogLocked`] when another
    /// process owns the log. Panics when called outside a glommio executor.
    pub async fn open(config: &WalConfig, id: ShardId) -> Result<Shard> {
        let storage = DmaStorage::new(config.durability == Durability::Dsync);
        Shard::open_on(config, id, Rc::new(storage)).await
    }

    /// Like [`Shard::open`] with another storage backend (for example
    /// [`crate::storage::FaultyStorage`] in tests). Feature `testing` only.
    #[cfg(feature = "testing")]
    pub async fn open_with_storage(
        config: &WalConfig,
        id: ShardId,
        storage: Rc<dyn Storage>,
    ) -> Result<Shard> {
        Shard::open_on(config, id, storage).await
    }

    async fn open_on(config: &WalConfig, id: ShardId, storage: Rc<dyn Storage>) -> Result<Shard> {
        let core = open::open_on(config, id, storage).await?;
        Ok(Shard {
            _guard: Rc::new(CloseOnDrop(core.clone())),
            core,
        })
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.core.id
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len == 0 {
            return Err(Error::EmptyRecord);
        }
        let max = self.core.config.max_record_bytes;
        if len > max {
            return Err(Error::RecordTooLarge {
                len_bytes: len,
                max_record_bytes: max,
            });
        }
        Ok(())
    }

    /// Copies `payload` into the shard's ring and returns its LSN. Does not wait for the
    /// disk; waits only while every flush buffer is in flight (backpressure). Allocates
    /// nothing, with one exception: after an earlier append sealed a 512 KiB piece of a
    /// large batch that no commit waited for (flush buffers of 1 MiB and more), it first
    /// yields once to the executor's reactor, so that piece's write overlaps this copy,
    /// and glommio's timer for that allocates.
    ///
    /// Errors: [`Error::EmptyRecord`], [`Error::RecordTooLarge`] (nothing is appended),
    /// [`Error::ShardFailed`], [`Error::Closed`].
    pub async fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.check_len(payload.len())?;
        let core = &*self.core;
        let handoff = std::mem::take(&mut core.st.borrow_mut().pacing.piece_handoff);
        if handoff {
            // Overlap (see `overlap`): an earlier append sealed a piece of a large batch.
            // Let the flusher submit it and the reactor hand it to the kernel before this
            // record is copied, so its write runs while the rest of the batch is copied.
            // Never after a small append: only a full piece no commit waits for sets it.
            overlap::yield_to_reactor().await;
        }
        let mut counted_wait = false;
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            std::task::ready!(st.poll_admission(core.id, cx))?;
            match st.try_append(core, payload) {
                Some(lsn) => Poll::Ready(Ok(lsn)),
                None => {
                    if !counted_wait {
                        st.metrics.ring_full_waits += 1;
                        counted_wait = true;
                    }
                    st.wakers.appends.push(cx.waker().clone());
                    st.wake_flusher();
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Resolves once every record of this shard up to `lsn` is durable. Many commits share
    /// one write and one fdatasync.
    ///
    /// Errors: [`Error::LsnNotAppended`] when `lsn` was never handed out;
    /// [`Error::ShardFailed`] after an I/O error (the outcome is then unknown).
    pub fn commit(&self, lsn: Lsn) -> Commit {
        Commit::new(self.core.clone(), lsn)
    }

    /// The largest batch [`Shard::append_batch`] accepts: the sum of its records' frame
    /// lengths (24 header bytes plus the payload, rounded up to 8), in bytes.
    pub fn max_batch_bytes(&self) -> usize {
        BatchLimits::of(&self.core.config).max_batch_bytes
    }

    /// Copies `records` into the shard's ring as one batch and returns their LSNs:
    /// contiguous and in order, no other append of this shard lands between them (others
    /// wait meanwhile). Waits only for ring space, like [`Shard::append`]. Dropping the
    /// future part-way leaves the records copied so far appended (a prefix of the batch).
    ///
    /// Errors: [`Error::EmptyBatch`], [`Error::EmptyRecord`], [`Error::RecordTooLarge`],
    /// [`Error::BatchTooLarge`] (above [`Shard::max_batch_bytes`]): nothing is appended;
    /// [`Error::ShardFailed`], [`Error::Closed`] (a prefix may have been appended).
    pub async fn append_batch<R: AsRef<[u8]>>(
        &self,
        records: &[R],
    ) -> Result<std::ops::RangeInclusive<Lsn>> {
        let limits = BatchLimits::of(&self.core.config);
        limits.check_batch(records.iter().map(|r| r.as_ref().len()))?;
        let core = &*self.core;
        let hold = BatchHold::take(self).await?;
        let first = core.st.borrow().marks.next_lsn;
        let (mut done, mut counted_wait) = (0usize, false);
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            if let Some(e) = st.refusal(core.id) {
                return Poll::Ready(Err(e));
            }
            while let Some(payload) = records.get(done) {
                match st.try_append(core, payload.as_ref()) {
                    // A piece sealed here goes out when this batch's task next waits.
                    Some(lsn) => debug_assert_eq!(lsn.0, first.0 + done as u64),
                    None => {
                        // Counted once per batch, as `append` counts once per record.
                        st.metrics.ring_full_waits += u64::from(!counted_wait);
                        counted_wait = true;
                        st.wakers.appends.push(cx.waker().clone());
                        st.wake_flusher();
                        return Poll::Pending;
                    }
                }
                done += 1;
            }
            Poll::Ready(Ok(()))
        })
        .await?;
        drop(hold);
        let last = Lsn(first.0 + records.len() as u64 - 1);
        assert_eq!(
            self.last_appended_lsn(),
            last,
            "a batch's LSNs are contiguous"
        );
        Ok(first..=last)
    }

    /// [`Shard::append`] then [`Shard::commit`]: resolves when the record is durable.
    pub async fn append_durable(&self, payload: &[u8]) -> Result<Lsn> {
        let lsn = self.append(payload).await?;
        self.commit(lsn).await?;
        Ok(lsn)
    }

    /// Makes every record appended so far durable; returns the durable LSN.
    pub async fn sync(&self) -> Result<Lsn> {
        let last = self.last_appended_lsn();
        self.commit(last).await?;
        Ok(self.durable_lsn().max(last))
    }

    /// A group-commit hint: about `appends` more records are on their way (for example from
    /// writers on other threads that were just told their records are durable). Until they
    /// arrived, a waiting commit does not seal a batch on its own, so they share its write
    /// and fdatasync instead of waiting for the next one. The hold ends early when no record
    /// arrived for `gap`, and after `4 × gap` in any case; a full buffer and `close` still
    /// seal at once, and a later call replaces an earlier one. Costs a commit at most
    /// `4 × gap` of latency; no effect on correctness.
    pub fn expect_appends(&self, appends: u32, gap: std::time::Duration) {
        let mut st = self.core.st.borrow_mut();
        let seen_records = st.ring.open_record_count();
        let now = std::time::Instant::now();
        st.pacing.seal_hold = Some(SealHold {
            open_records: seen_records + appends,
            seen_records,
            next_check: now + gap,
            gap,
            give_up: now + gap * 4,
        });
        st.pacing.hold_timer = None;
        st.wake_flusher();
    }

    /// The highest LSN known durable (0 when none).
    pub fn durable_lsn(&self) -> Lsn {
        self.core.st.borrow().marks.durable_lsn
    }

    /// The highest LSN handed out by `append` (0 when none).
    pub fn last_appended_lsn(&self) -> Lsn {
        self.core.st.borrow().marks.last_appended_lsn()
    }

    /// The lowest LSN still stored (truncation moves it up).
    pub fn first_lsn(&self) -> Lsn {
        self.core.st.borrow().segments.chain[0].base_lsn
    }

    /// Whether the shard failed after an I/O error.
    pub fn is_failed(&self) -> bool {
        self.core.st.borrow().lifecycle.failure().is_some()
    }

    /// Whether every flush buffer lies in io_uring-registered memory (writes go out as
    /// `WRITE_FIXED`). `false` when the memlock limit was too small for glommio to register
    /// its arena, or the arena was too small; the shard works either way.
    pub fn buffers_registered(&self) -> bool {
        self.core.registered
    }

    /// A snapshot of the shard's counters (a copy of a few integers).
    pub fn metrics(&self) -> ShardMetrics {
        let st = self.core.st.borrow();
        ShardMetrics {
            // Counted by the ring, which allocates the buffers.
            unregistered_refills: st.ring.unregistered_refills,
            sync_bytes_avg: st.pacing.sync_bytes.avg_bytes(),
            ..st.metrics
        }
    }

    /// A copy of the shard's commit-latency histogram: for every [`Shard::commit`] that had
    /// to wait, the time from its first poll to durability, in microseconds (1 us to 60 s,
    /// 2 significant digits; about 40 KiB to copy). Commits that found their LSN durable
    /// already are not recorded.
    pub fn commit_latency_us(&self) -> hdrhistogram::Histogram<u64> {
        self.core.st.borrow().commit_latency_us.clone()
    }

    /// The configuration the shard was opened with.
    pub fn config(&self) -> &WalConfig {
        &self.core.config
    }

    /// A reader over durable records from `from` (up to the durable LSN at this call).
    /// The reader is `Send` and does blocking file reads: move it to a thread for long
    /// replays.
    ///
    /// Errors: [`Error::Truncated`] when `from` is below [`Shard::first_lsn`].
    ///
    /// The reader begins at the batch nearest below `from` that the shard knows of, and
    /// reads at most about 1 MiB plus one batch before its first record: in a segment
    /// written since the shard opened (see `batch_index`), or in an older one that some
    /// reader already walked from its start (see the `seek` module: such a walk, for example a
    /// replay from the first record, teaches the shard the segment's batch starts).
    /// Otherwise it walks the segment from its first frame.
    pub fn reader(&self, from: Lsn) -> Result<LogReader> {
        let st = self.core.st.borrow();
        let chain = &st.segments.chain;
        let hint = chain
            .iter()
            .rposition(|s| s.base_lsn <= from)
            .and_then(|i| {
                let generation = chain[i].generation;
                let own = st.segments.index.hint(generation, from);
                let own = own.map(|h| (h.generation, h.lsn, h.file_pos));
                own.or_else(|| {
                    let (lsn, pos) = self.core.learned.hint(generation, from)?;
                    Some((generation, lsn, pos))
                })
            });
        let reader = LogReader::new(self.core.id, chain.clone(), from, st.marks.durable_lsn)?;
        let learner = Learner::new(self.core.learned.clone(), self.core.learn_upto_generation);
        Ok(reader.starting_at(hint).learning(learner))
    }

    /// Removes whole segments whose records are all below `before`; returns how many. The
    /// active segment is never removed, and neither is a segment a live reader's pin
    /// ([`crate::HeaderView::snapshot`]) still needs, so some records below `before` may
    /// stay. Up to [`WalConfig::recycled_segment_count`] of the removed files are kept as
    /// spares for later segments instead of being deleted (they no longer hold any readable
    /// record).
    ///
    /// Errors: [`Error::TruncateBeyondDurable`] when `before > durable_lsn + 1`;
    /// [`Error::ShardFailed`] / [`Error::Closed`]; a remove, rename or directory-sync error
    /// fails the shard.
    pub async fn truncate_before(&self, before: Lsn) -> Result<usize> {
        self.truncate_before_keeping(before, None).await
    }

    /// [`Shard::truncate_before`], also keeping every segment that holds `keep_from` or
    /// later records (the client's read pins).
    pub(crate) async fn truncate_before_keeping(
        &self,
        before: Lsn,
        keep_from: Option<Lsn>,
    ) -> Result<usize> {
        retire::truncate(&self.core, before, keep_from).await
    }

    /// Stops accepting appends, writes and syncs everything already appended, writes a final
    /// marker (so recovery can vouch for every record), and waits for the flusher to stop.
    /// Returns the final durable LSN. Other handles of this shard see [`Error::Closed`].
    ///
    /// Errors: [`Error::ShardFailed`] when an I/O error happened before or during close.
    pub async fn close(&self) -> Result<Lsn> {
        let core = &*self.core;
        {
            let mut st = core.st.borrow_mut();
            st.lifecycle.request_close();
            st.wake_flusher();
            st.wake_appenders();
        }
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            if st.lifecycle.flusher_stopped() {
                Poll::Ready(())
            } else {
                st.wakers.close.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let st = core.st.borrow();
        if let Some(cause) = st.lifecycle.failure() {
            return Err(Error::ShardFailed {
                shard: core.id,
                cause: cause.clone(),
            });
        }
        tracing::info!(shard = %core.id, durable_lsn = %st.marks.durable_lsn, "shard closed");
        Ok(st.marks.durable_lsn)
    }
}

/// The shard's batch hold (see [`Shard::append_batch`]): taken when no other batch holds
/// it; released on drop, also when the batch's future is dropped part-way.
struct BatchHold(Rc<Core>);

impl BatchHold {
    async fn take(shard: &Shard) -> Result<BatchHold> {
        let core = &shard.core;
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            std::task::ready!(st.poll_admission(core.id, cx))?;
            st.batch_hold = true;
            Poll::Ready(Ok(BatchHold(core.clone())))
        })
        .await
    }
}

impl Drop for BatchHold {
    fn drop(&mut self) {
        // Not `try_borrow_mut`: a hold that silently stayed would stop every later append
        // of the shard. The state is borrowed only inside a poll or a flusher pass, and a
        // hold is dropped outside both (after its batch's poll returned, or with its future).
        let mut st = self.0.st.borrow_mut();
        assert!(st.batch_hold, "a batch hold is released once");
        st.batch_hold = false;
        st.wake_appenders();
    }
}
