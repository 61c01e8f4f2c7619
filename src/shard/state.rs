//! Everything a shard mutates, split by concern, and the invariants that hold between
//! flusher passes.
//!
//! Only the shard's own executor touches a [`State`]: the [`Shard`](super::Shard) handle's
//! methods and the flusher task borrow it through [`Core::st`], one at a time, never
//! across an `await`. Who writes what:
//! - [`Watermarks`]: appends move `next_lsn`; the flusher moves `completed_lsn` and
//!   `durable_lsn`.
//! - [`Segments`]: sealing moves the active segment's write position; an append that
//!   does not fit rotates to the prepared segment; the flusher prepares the next one;
//!   truncation takes segments off the chain and adds spares.
//! - [`Io`]: the flusher only (writes, fdatasyncs and zeros in flight).
//! - [`Wakers`]: whoever waits registers; whoever makes progress wakes.
//! - [`Pacing`]: the flusher, and [`Shard::expect_appends`](super::Shard::expect_appends).
//! - [`Lifecycle`]: `close` and dropping the last handle, the flusher when it stops, and
//!   any I/O error.
//!
//! [`State::check_invariants`] asserts what holds between flusher passes; the transitions
//! assert their own pre- and postconditions where they happen.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::future::LocalBoxFuture;

use super::commit::Waiters;
use crate::config::WalConfig;
use crate::error::{Error, ShardFailure};
use crate::lsn::{Lsn, ShardId};
use crate::metrics::ShardMetrics;
use crate::record::{encode_record_with, frame_bytes, segment_seed, FrameKey, FRAME_HEADER_BYTES};
use crate::recovery::ChainSegment;
use crate::ring::{BatchTarget, PieceWrite, Ring};
use crate::seek::LearnedStarts;
use crate::segment::{PreparedSegment, SegmentHeader, Spare, BLOCK_BYTES};
use crate::shm::owner::ShardHeader;
use crate::storage::{Storage, StorageFile};
use crate::zero_ahead::{batch_limit_bytes, SyncBytes, ZeroPiece};

use super::overlap::piece_due;

/// What never changes while a shard is open, and its [`State`].
pub(crate) struct Core {
    pub id: ShardId,
    pub config: WalConfig,
    pub shard_dir: PathBuf,
    pub storage: Rc<dyn Storage>,
    /// One zero piece (see `zero_ahead`), the source of every zero write.
    pub zeros: Rc<glommio::io::DmaBuffer>,
    /// One 4 KiB block of zeros (for preparing segments).
    pub zero_block: Rc<glommio::io::DmaBuffer>,
    /// Whether the arena lies in io_uring-registered memory.
    pub registered: bool,
    /// Batch starts that readers learned in segments written before this session (see
    /// [`crate::seek`]); shared with those readers, on any thread.
    pub learned: Arc<LearnedStarts>,
    /// The active segment's generation at open: readers learn segments up to it (later ones
    /// are in the session's own index).
    pub learn_upto_generation: u64,
    /// Bytes after which an open batch no commit waits for is sealed as a piece (`None`:
    /// never; see `overlap`).
    pub piece_bytes: Option<usize>,
    pub st: RefCell<State>,
}

/// Everything a shard mutates, by concern. Only its own executor touches it.
pub(crate) struct State {
    /// The flush buffers: open -> sealed -> in flight -> written -> free.
    pub ring: Ring,
    pub marks: Watermarks,
    pub segments: Segments,
    pub io: Io,
    pub wakers: Wakers,
    pub pacing: Pacing,
    pub lifecycle: Lifecycle,
    /// An [`Shard::append_batch`](super::Shard::append_batch) is copying its records: other
    /// appends wait, so that the batch's LSNs stay contiguous.
    pub batch_hold: bool,
    /// Latency of commits that had to wait, first poll to durable, in microseconds.
    pub commit_latency_us: hdrhistogram::Histogram<u64>,
    /// When the flusher last moved the durable watermark and woke commits: the end of
    /// their latency, read once per group commit instead of once per commit.
    pub durable_at: std::time::Instant,
    pub metrics: ShardMetrics,
    /// This shard's block of the shared header (positions, truncation floor, state).
    pub header: ShardHeader,
}

/// The shard's LSN watermarks: `durable_lsn <= completed_lsn < next_lsn`.
pub(crate) struct Watermarks {
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// Every record up to here is written (the contiguous prefix of completed batches),
    /// not necessarily synced.
    pub completed_lsn: Lsn,
    /// Every record up to here is durable; commits at or below it resolve.
    pub durable_lsn: Lsn,
    /// `next_lsn` when the shard opened: records from here on were appended in this
    /// session (only appends move `next_lsn`).
    pub session_first_lsn: Lsn,
}

impl Watermarks {
    /// The highest LSN handed out by `append` (0 when none).
    pub fn last_appended_lsn(&self) -> Lsn {
        Lsn(self.next_lsn.0 - 1)
    }

    /// Whether this session appended any record (a closing shard then writes the final
    /// marker).
    pub fn appended_since_open(&self) -> bool {
        self.next_lsn > self.session_first_lsn
    }

    /// Whether every record appended is durable.
    pub fn all_durable(&self) -> bool {
        self.durable_lsn.0 + 1 == self.next_lsn.0
    }
}

/// The segment files: the one appends go to, the next one, the chain recovery and readers
/// see, and the spares truncation left for recycling.
pub(crate) struct Segments {
    pub active: ActiveSegment,
    /// The next segment, ready to rotate to (made by the flusher).
    pub prepared: Option<PreparedSegment>,
    /// The next segment being made (a new reserved file or a recycled spare).
    pub preparing: Option<LocalBoxFuture<'static, std::io::Result<PreparedSegment>>>,
    /// Every segment still stored, oldest first; ends with the active one. Never empty.
    pub chain: Vec<ChainSegment>,
    /// Retired segment files waiting to be recycled (see `segment`'s module docs).
    pub spares: Vec<Spare>,
    /// The generation the next prepared segment gets; above every file's.
    pub next_generation: u64,
    /// Where this session's batches start, for readers (see `batch_index`).
    pub index: super::batch_index::BatchIndex,
}

impl Segments {
    /// Makes the prepared segment `p` the active one, its first record `base_lsn`, its
    /// frames checksummed with `key`. Allocates nothing (it runs inside `append`): the
    /// flusher reserved the chain's room when `p` became prepared.
    fn rotate_to(&mut self, p: PreparedSegment, base_lsn: Lsn, key: FrameKey) {
        let last = self.chain.last().expect("the segment chain is never empty");
        assert!(p.generation > last.generation && base_lsn >= last.base_lsn);
        assert!(
            self.chain.capacity() > self.chain.len(),
            "no capacity reserved for the rotation"
        );
        self.chain.push(ChainSegment {
            generation: p.generation,
            path: p.path,
            base_lsn,
        });
        self.active = ActiveSegment {
            generation: p.generation,
            file: p.file,
            write_pos: 0,
            segment_bytes: p.segment_bytes,
            zeroed_bytes: p.zeroed_bytes,
            key,
        };
    }
}

/// The segment appends currently go to.
pub(crate) struct ActiveSegment {
    pub generation: u64,
    pub file: Rc<dyn StorageFile>,
    /// Where the next batch opens (4 KiB-aligned); every block below it is written.
    pub write_pos: u64,
    pub segment_bytes: u64,
    /// Bytes from the start of the file known to be really written, records or zeros (see
    /// `zero_ahead`); may lag `write_pos`.
    pub zeroed_bytes: u64,
    /// Its frames' checksum key, derived once per segment rather than once per batch.
    pub key: FrameKey,
}

/// The flusher's I/O in flight and what it still owes an fdatasync.
pub(crate) struct Io {
    /// Piece writes of submitted batches. Its capacity covers every piece of every slot,
    /// so submitting allocates nothing.
    pub in_flight: Vec<PieceInFlight>,
    /// The writes of the batch being submitted (kept for its capacity).
    pub piece_scratch: Vec<PieceWrite>,
    /// Files with completed writes not yet covered by an fdatasync, by generation.
    pub dirty: Vec<(u64, Rc<dyn StorageFile>)>,
    /// The fdatasync in flight and the completed LSN it makes durable.
    pub sync: Option<(Lsn, LocalBoxFuture<'static, std::io::Result<()>>)>,
    /// The zero piece in flight, if any (at most one).
    pub zeroing: Option<ZeroInFlight>,
    /// Bytes of batches completed since the last fdatasync started (see `overlap`).
    pub unsynced_bytes: u64,
}

/// One write of a submitted batch.
pub(crate) struct PieceInFlight {
    /// The ring slot the batch is in.
    pub slot: usize,
    pub len: usize,
    pub fut: LocalBoxFuture<'static, std::io::Result<usize>>,
}

/// A piece of zeros in flight, in the active or the prepared segment (see `zero_ahead`).
pub(crate) struct ZeroInFlight {
    pub piece: ZeroPiece,
    pub fut: LocalBoxFuture<'static, std::io::Result<usize>>,
}

/// The tasks waiting on the shard, by what they wait for.
pub(crate) struct Wakers {
    /// Commits waiting for the durable watermark.
    pub commits: Waiters,
    /// Appends waiting for ring space, a prepared segment, a zero piece or the batch hold.
    pub appends: Vec<Waker>,
    /// The flusher task, as last polled.
    pub flusher: Option<Waker>,
    /// `close` calls waiting for the flusher to stop.
    pub close: Vec<Waker>,
}

/// The measured heuristics that decide when the flusher seals a batch, prepares a segment
/// and zeroes (see the `flusher` module's docs).
pub(crate) struct Pacing {
    /// The flusher woke commit waiters in its current pass (see `flusher::end_of_passes`).
    pub woke_waiters: bool,
    /// A batch of this session became durable. Until then the flusher neither prepares
    /// the next segment nor zeroes (see `flusher`), so the first commit after opening has
    /// the device and the journal to itself.
    pub session_durable: bool,
    /// Hold sealing a batch for a commit until it holds this many records or the deadline
    /// passes (see [`Shard::expect_appends`](super::Shard::expect_appends)).
    pub seal_hold: Option<SealHold>,
    /// Wakes the flusher for the seal hold's next check.
    pub hold_timer: Option<LocalBoxFuture<'static, ()>>,
    /// The last batch sealed was a piece (see `overlap`): the open batch continues it,
    /// and the flusher may seal it while the pieces are still being written.
    pub piece_run: bool,
    /// A piece was sealed since an append last let the reactor run: the next append does
    /// that before it copies (see `overlap`).
    pub piece_handoff: bool,
    /// Bytes per durability point, on average: zeroing ahead stops while they are large
    /// (see `zero_ahead`).
    pub sync_bytes: SyncBytes,
}

/// A group-commit hint: see [`Shard::expect_appends`](super::Shard::expect_appends).
pub(crate) struct SealHold {
    /// Records the open batch should hold before a commit seals it.
    pub open_records: u32,
    /// Records the open batch held at the last check.
    pub seen_records: u32,
    /// The next check: the hold ends there unless records arrived since the last one.
    pub next_check: std::time::Instant,
    /// How long a check waits for arrivals.
    pub gap: std::time::Duration,
    /// The hold ends here whatever arrives.
    pub give_up: std::time::Instant,
}

/// Where the shard is in its life.
///
/// `Open -> Closing -> Closed`, and from any of them `-> Failed` on the first I/O error.
/// (It replaces the booleans `closing`, `closed`, `final_marker_sealed` and the
/// `failed` option; `appended_since_open` is [`Watermarks::appended_since_open`].)
pub(crate) enum Lifecycle {
    /// Accepting appends and commits.
    Open,
    /// `close` was called or the last handle dropped: appends are refused; the flusher
    /// seals what is open, makes it durable, ends with a marker-only batch that vouches
    /// for every record (when this session appended any), and stops.
    Closing {
        /// The final marker's batch was sealed (or could not be opened: then the close
        /// ends without it).
        final_marker_sealed: bool,
    },
    /// The flusher stopped after a clean close: everything appended is durable.
    Closed,
    /// An I/O error failed the shard: it acknowledges nothing more until reopened (which
    /// runs recovery).
    Failed {
        /// The first error; later ones only count in the metrics.
        cause: ShardFailure,
        /// A close was requested, before or after the failure.
        close_requested: bool,
        /// The flusher stopped (once no I/O of it was in flight).
        flusher_stopped: bool,
    },
}

impl Lifecycle {
    /// Neither closing nor failed.
    pub fn is_open(&self) -> bool {
        matches!(self, Lifecycle::Open)
    }

    /// The first I/O error, once the shard failed.
    pub fn failure(&self) -> Option<&ShardFailure> {
        match self {
            Lifecycle::Failed { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// Whether `close` was called or the last handle dropped (also after a failure).
    pub fn close_requested(&self) -> bool {
        match self {
            Lifecycle::Open => false,
            Lifecycle::Closing { .. } | Lifecycle::Closed => true,
            Lifecycle::Failed {
                close_requested, ..
            } => *close_requested,
        }
    }

    /// Whether the flusher stopped (a close waits for that).
    pub fn flusher_stopped(&self) -> bool {
        match self {
            Lifecycle::Closed => true,
            Lifecycle::Failed {
                flusher_stopped, ..
            } => *flusher_stopped,
            Lifecycle::Open | Lifecycle::Closing { .. } => false,
        }
    }

    /// Whether a closing shard sealed its final marker.
    pub fn final_marker_sealed(&self) -> bool {
        matches!(
            self,
            Lifecycle::Closing {
                final_marker_sealed: true
            }
        )
    }

    /// `close` was called or the last handle dropped; idempotent.
    pub fn request_close(&mut self) {
        match self {
            Lifecycle::Open => {
                *self = Lifecycle::Closing {
                    final_marker_sealed: false,
                }
            }
            Lifecycle::Failed {
                close_requested, ..
            } => *close_requested = true,
            Lifecycle::Closing { .. } | Lifecycle::Closed => {}
        }
    }

    /// The closing flusher sealed (or tried to seal) the final marker.
    pub fn seal_final_marker(&mut self) {
        match self {
            Lifecycle::Closing {
                final_marker_sealed,
            } => {
                assert!(!*final_marker_sealed, "the final marker is sealed once");
                *final_marker_sealed = true;
            }
            _ => panic!("only a closing shard seals the final marker"),
        }
    }

    /// The flusher stopped: a closing shard is closed; a failed one records it.
    pub fn stop_flusher(&mut self) {
        match self {
            Lifecycle::Closing { .. } => *self = Lifecycle::Closed,
            Lifecycle::Failed {
                flusher_stopped, ..
            } => {
                assert!(!*flusher_stopped, "the flusher stops once");
                *flusher_stopped = true;
            }
            Lifecycle::Open | Lifecycle::Closed => {
                panic!("the flusher stops only after a close or a failure, and once")
            }
        }
    }

    /// Fails the shard with `cause` (only the first error does: see [`State::fail`]); keeps
    /// whether a close was requested and whether the flusher stopped.
    fn fail(&mut self, cause: ShardFailure) {
        assert!(self.failure().is_none(), "a shard fails once");
        *self = Lifecycle::Failed {
            cause,
            close_requested: self.close_requested(),
            flusher_stopped: self.flusher_stopped(),
        };
    }
}

impl Wakers {
    pub fn wake_flusher(&self) {
        if let Some(w) = &self.flusher {
            w.wake_by_ref();
        }
    }

    pub fn wake_appenders(&mut self) {
        for w in self.appends.drain(..) {
            w.wake();
        }
    }
}

impl State {
    pub fn wake_flusher(&mut self) {
        self.wakers.wake_flusher();
    }

    pub fn wake_appenders(&mut self) {
        self.wakers.wake_appenders();
    }

    /// Why an append, a batch or a truncation must be refused now, if it must.
    pub fn refusal(&self, shard: ShardId) -> Option<Error> {
        match &self.lifecycle {
            Lifecycle::Open => None,
            Lifecycle::Failed { cause, .. } => Some(Error::ShardFailed {
                shard,
                cause: cause.clone(),
            }),
            Lifecycle::Closing { .. } | Lifecycle::Closed => Some(Error::Closed { shard }),
        }
    }

    /// Whether an append (or a batch) may go ahead now: `Ready(Err)` when the shard refuses
    /// it ([`State::refusal`]), `Pending` with the caller's waker kept while another batch
    /// is being copied in (it wakes appenders when done), `Ready(Ok)` otherwise.
    pub fn poll_admission(
        &mut self,
        shard: ShardId,
        cx: &mut Context<'_>,
    ) -> Poll<crate::error::Result<()>> {
        if let Some(e) = self.refusal(shard) {
            return Poll::Ready(Err(e));
        }
        if self.batch_hold {
            self.wakers.appends.push(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    /// The first LSN in the open (unsealed) batch, if it holds any record.
    pub fn open_first_lsn(&self) -> Option<Lsn> {
        match self.ring.open_record_count() {
            0 => None,
            n => Some(Lsn(self.marks.next_lsn.0 - n as u64)),
        }
    }

    /// Whether a commit waits for a record of the open batch.
    pub fn commit_waits_for_open(&self) -> bool {
        self.open_first_lsn()
            .is_some_and(|first| self.wakers.commits.max_lsn() >= first)
    }

    /// Opens the next ring slot at the active segment's write position, rotating to the
    /// prepared segment when `need_bytes` (marker + frame) would not fit. `false` when it
    /// must wait: no free slot, no prepared segment yet, or a piece of zeros in flight
    /// where the batch would go.
    pub fn open_batch(&mut self, core: &Core, need_bytes: usize) -> bool {
        if !self.ring.can_open() {
            return false;
        }
        let header_bytes = |wp: u64| if wp == 0 { BLOCK_BYTES } else { 0 };
        let a = &self.segments.active;
        if a.segment_bytes - a.write_pos < (header_bytes(a.write_pos) + need_bytes) as u64
            && !self.rotate(core)
        {
            return false;
        }
        let a = &self.segments.active;
        debug_assert_eq!(a.key.seed(), segment_seed(core.id.0, a.generation));
        let header = (a.write_pos == 0).then_some(SegmentHeader {
            shard: core.id,
            generation: a.generation,
            base_lsn: self.marks.next_lsn,
            segment_bytes: a.segment_bytes,
        });
        let limit = (a.segment_bytes - a.write_pos).min(core.config.flush_buffer_bytes as u64);
        // Never open a batch over zeros in flight; the flusher wakes appenders when the
        // piece completes. (Pieces start a flush buffer past the head, so this rarely binds.)
        let zeroing = self
            .io
            .zeroing
            .as_ref()
            .filter(|z| z.piece.generation == a.generation)
            .map(|z| &z.piece.range);
        let limit = batch_limit_bytes(a.write_pos, limit, zeroing);
        if limit < (header_bytes(a.write_pos) + need_bytes) as u64 {
            return false;
        }
        let target = BatchTarget {
            generation: a.generation,
            file: a.file.clone(),
            key: a.key.clone(),
            file_pos: a.write_pos,
            limit_bytes: limit as usize,
            header,
        };
        self.ring.open(target, self.marks.last_appended_lsn());
        true
    }

    /// Rotates to the prepared segment; `false` (waking the flusher to make one) when
    /// none is ready yet.
    fn rotate(&mut self, core: &Core) -> bool {
        let Some(p) = self.segments.prepared.take() else {
            self.wake_flusher();
            return false;
        };
        let base_lsn = self.marks.next_lsn;
        tracing::info!(shard = %core.id, generation = p.generation, base_lsn = %base_lsn, "segment rotation");
        let key = FrameKey::new(core.id.0, p.generation);
        self.segments.rotate_to(p, base_lsn, key);
        self.metrics.rotations += 1;
        self.wake_flusher(); // prepare the next one
        true
    }

    /// Seals the open batch and moves the write position past it; `piece`: as a piece of a
    /// larger batch that appends go on filling (see `overlap`).
    pub fn seal_open(&mut self, piece: bool) {
        self.pacing.piece_run = piece;
        if let Some((first, marker_pos)) = self.ring.open_batch_start() {
            let generation = self.segments.active.generation;
            self.segments.index.note(generation, first, marker_pos);
        }
        let end = self.ring.seal_open(self.marks.durable_lsn);
        let a = &mut self.segments.active;
        assert!(
            end > a.write_pos && end <= a.segment_bytes,
            "a sealed batch ends inside its segment, past the old write position"
        );
        a.write_pos = end;
        self.wake_flusher();
    }

    /// Copies one record into the ring. `None` when it must wait (backpressure). Seals the
    /// open batch as a piece when that record completed one (see `overlap`).
    #[inline]
    pub fn try_append(&mut self, core: &Core, payload: &[u8]) -> Option<Lsn> {
        let frame = frame_bytes(payload.len());
        loop {
            let lsn = self.marks.next_lsn;
            if let Some((dst, key)) = self.ring.reserve(frame, lsn) {
                encode_record_with(dst, key, lsn, payload);
                self.marks.next_lsn = lsn.next();
                self.metrics.appends += 1;
                self.metrics.appended_bytes += payload.len() as u64;
                if self
                    .pacing
                    .seal_hold
                    .as_ref()
                    .is_some_and(|h| self.ring.open_record_count() >= h.open_records)
                {
                    self.wake_flusher();
                }
                if piece_due(self, core.piece_bytes) {
                    self.metrics.piece_seals += 1;
                    self.seal_open(true);
                    self.pacing.piece_handoff = true;
                }
                return Some(lsn);
            }
            if self.ring.open.is_some() {
                // Full (or at the segment's end): a piece of a larger batch unless a
                // commit waits for it (see `overlap`).
                let piece = !self.commit_waits_for_open();
                self.seal_open(piece);
                continue;
            }
            if !self.open_batch(core, FRAME_HEADER_BYTES + frame) {
                return None;
            }
        }
    }

    /// Asserts the invariants that hold between flusher passes (issue 12, item 5). The
    /// flusher calls it after every pass in debug builds (the simulation runs them in
    /// `cargo test`); panics naming the broken one.
    pub fn check_invariants(&self) {
        // Watermarks: durable <= completed < next.
        let m = &self.marks;
        assert!(
            m.durable_lsn <= m.completed_lsn && m.completed_lsn < m.next_lsn,
            "watermarks out of order: durable {} completed {} next {}",
            m.durable_lsn,
            m.completed_lsn,
            m.next_lsn
        );
        assert!(m.session_first_lsn <= m.next_lsn);
        // The write position stays inside the segment, on a block boundary.
        let s = &self.segments;
        let a = &s.active;
        assert!(
            a.write_pos <= a.segment_bytes,
            "write position past the segment"
        );
        assert!(a.write_pos.is_multiple_of(BLOCK_BYTES as u64));
        // The segment chain is non-empty, its generations increase, its bases never go
        // down, and it ends with the active segment.
        assert!(!s.chain.is_empty(), "empty segment chain");
        for w in s.chain.windows(2) {
            assert!(w[0].generation < w[1].generation && w[0].base_lsn <= w[1].base_lsn);
        }
        assert_eq!(s.chain.last().map(|c| c.generation), Some(a.generation));
        assert!(s.next_generation > a.generation);
        // Preparing may take any spare: each is below the next generation.
        assert!(s.spares.iter().all(|sp| sp.generation < s.next_generation));
        if let Some(p) = &s.prepared {
            assert!(p.generation > a.generation && p.generation < s.next_generation);
            assert!(p.zeroed_bytes <= p.segment_bytes);
            // Rotating pushes onto the chain inside `append`, which must not allocate.
            assert!(
                s.chain.capacity() > s.chain.len(),
                "no capacity reserved for the rotation"
            );
        }
        // Zeros in flight never reach below the write position of their segment.
        if let Some(z) = self
            .io
            .zeroing
            .as_ref()
            .filter(|z| z.piece.generation == a.generation)
        {
            assert!(
                z.piece.range.start >= a.write_pos,
                "zeros in flight below the head"
            );
        }
        assert!(self.io.piece_scratch.is_empty(), "pieces left unsubmitted");
        // Completed, unsynced bytes are counted exactly while a file waits for its sync.
        assert_eq!(self.io.dirty.is_empty(), self.io.unsynced_bytes == 0);
        // A sync in flight makes durable only what was completed when it started.
        if let Some((target, _)) = &self.io.sync {
            assert!(*target <= m.completed_lsn);
        }
    }

    /// Fails the shard (first error wins) and wakes everyone so they see it.
    pub fn fail(&mut self, shard: ShardId, cause: ShardFailure) {
        self.metrics.io_errors += 1;
        if self.lifecycle.failure().is_none() {
            self.header.set_failed();
            tracing::error!(shard = %shard, %cause, "shard failed; it acknowledges nothing until reopened");
            self.lifecycle.fail(cause);
        }
        self.wakers.commits.wake_all();
        self.wake_appenders();
        self.wake_flusher();
    }
}
