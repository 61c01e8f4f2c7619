//! Everything a shard mutates, and the invariants that hold between flusher passes.
//!
//! Only the shard's own executor touches it: the [`Shard`](super::Shard) handle's methods
//! and the flusher task borrow it through [`Core::st`], one at a time.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Waker;

use futures::future::LocalBoxFuture;

use super::commit::Waiters;
use crate::config::WalConfig;
use crate::error::{Error, ShardFailure};
use crate::lsn::{Lsn, ShardId};
use crate::metrics::ShardMetrics;
use crate::record::{encode_record, frame_bytes, segment_seed, FRAME_HEADER_BYTES};
use crate::recovery::ChainSegment;
use crate::ring::{BatchTarget, PieceWrite, Ring};
use crate::segment::{PreparedSegment, SegmentHeader, Spare, BLOCK_BYTES};
use crate::shm::owner::ShardHeader;
use crate::storage::{Storage, StorageFile};
use crate::zero_ahead::{batch_limit_bytes, ZeroPiece};


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
}

/// A piece of zeros in flight, in the active or the prepared segment (see `zero_ahead`).
pub(crate) struct ZeroInFlight {
    pub piece: ZeroPiece,
    pub fut: LocalBoxFuture<'static, std::io::Result<usize>>,
}

pub(crate) struct PieceInFlight {
    pub slot: usize,
    pub len: usize,
    pub fut: LocalBoxFuture<'static, std::io::Result<usize>>,
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

/// Everything a shard mutates. Only its own executor touches it.
pub(crate) struct State {
    pub ring: Ring,
    pub next_lsn: Lsn,
    pub completed_lsn: Lsn,
    pub durable_lsn: Lsn,
    pub active: ActiveSegment,
    pub prepared: Option<PreparedSegment>,
    pub preparing: Option<LocalBoxFuture<'static, std::io::Result<PreparedSegment>>>,
    pub chain: Vec<ChainSegment>,
    /// Retired segment files waiting to be recycled (see `segment`'s module docs).
    pub spares: Vec<Spare>,
    pub next_generation: u64,
    pub in_flight: Vec<PieceInFlight>,
    pub piece_scratch: Vec<PieceWrite>,
    /// Files with completed writes not yet covered by an fdatasync.
    pub dirty: Vec<(u64, Rc<dyn StorageFile>)>,
    pub sync: Option<(Lsn, LocalBoxFuture<'static, std::io::Result<()>>)>,
    /// The zero piece in flight, if any (at most one).
    pub zeroing: Option<ZeroInFlight>,
    pub waiters: Waiters,
    pub append_wakers: Vec<Waker>,
    pub flusher_waker: Option<Waker>,
    /// The first I/O error, once the shard failed (it then acknowledges nothing more).
    pub failed: Option<ShardFailure>,
    pub closing: bool,
    pub closed: bool,
    pub close_wakers: Vec<Waker>,
    /// A closing shard writes one last marker so recovery can vouch for every record.
    pub final_marker_sealed: bool,
    pub appended_since_open: bool,
    /// The flusher woke commit waiters in its current pass (see `flusher::drive`).
    pub woke_waiters: bool,
    /// An [`Shard::append_batch`](super::Shard::append_batch) is copying its records: other appends wait, so that the
    /// batch's LSNs stay contiguous.
    pub batch_hold: bool,
    /// A batch of this session became durable. Until then the flusher neither prepares
    /// the next segment nor zeroes (see `flusher`), so the first commit after opening has
    /// the device and the journal to itself.
    pub session_durable: bool,
    /// Hold sealing a batch for a commit until it holds this many records or the deadline
    /// passes (see [`Shard::expect_appends`](super::Shard::expect_appends)).
    pub seal_hold: Option<SealHold>,
    pub hold_timer: Option<LocalBoxFuture<'static, ()>>,
    /// Latency of commits that had to wait, first poll to durable, in microseconds.
    pub commit_latency_us: hdrhistogram::Histogram<u64>,
    pub metrics: ShardMetrics,
    /// This shard's block of the shared header (positions, truncation floor, state).
    pub header: ShardHeader,
}

pub(crate) struct Core {
    pub id: ShardId,
    pub config: WalConfig,
    pub shard_dir: PathBuf,
    pub storage: Rc<dyn Storage>,
    pub zeros: Rc<glommio::io::DmaBuffer>,
    pub zero_block: Rc<glommio::io::DmaBuffer>,
    pub registered: bool,
    pub st: RefCell<State>,
}

impl State {
    pub fn wake_flusher(&mut self) {
        if let Some(w) = &self.flusher_waker {
            w.wake_by_ref();
        }
    }

    pub fn wake_appenders(&mut self) {
        for w in self.append_wakers.drain(..) {
            w.wake();
        }
    }

    pub fn refusal(&self, shard: ShardId) -> Option<Error> {
        if let Some(cause) = &self.failed {
            return Some(Error::ShardFailed {
                shard,
                cause: cause.clone(),
            });
        }
        if self.closing {
            return Some(Error::Closed { shard });
        }
        None
    }

    /// The first LSN in the open (unsealed) batch, if it holds any record.
    pub fn open_first_lsn(&self) -> Option<Lsn> {
        match self.ring.open_record_count() {
            0 => None,
            n => Some(Lsn(self.next_lsn.0 - n as u64)),
        }
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
        let a = &self.active;
        if a.segment_bytes - a.write_pos < (header_bytes(a.write_pos) + need_bytes) as u64 {
            let Some(p) = self.prepared.take() else {
                self.wake_flusher();
                return false;
            };
            tracing::info!(shard = %core.id, generation = p.generation, base_lsn = %self.next_lsn, "segment rotation");
            self.chain.push(ChainSegment {
                generation: p.generation,
                path: p.path,
                base_lsn: self.next_lsn,
            });
            self.active = ActiveSegment {
                generation: p.generation,
                file: p.file,
                write_pos: 0,
                segment_bytes: p.segment_bytes,
                zeroed_bytes: p.zeroed_bytes,
            };
            self.metrics.rotations += 1;
            self.wake_flusher(); // prepare the next one
        }
        let a = &self.active;
        let header = (a.write_pos == 0).then_some(SegmentHeader {
            shard: core.id,
            generation: a.generation,
            base_lsn: self.next_lsn,
            segment_bytes: a.segment_bytes,
        });
        let limit = (a.segment_bytes - a.write_pos).min(core.config.flush_buffer_bytes as u64);
        // Never open a batch over zeros in flight; the flusher wakes appenders when the
        // piece completes. (Pieces start a flush buffer past the head, so this rarely binds.)
        let zeroing = self
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
            seed: segment_seed(core.id.0, a.generation),
            file_pos: a.write_pos,
            limit_bytes: limit as usize,
            header,
        };
        self.ring.open(target, Lsn(self.next_lsn.0 - 1));
        true
    }

    /// Seals the open batch and moves the write position past it.
    pub fn seal_open(&mut self) {
        let end = self.ring.seal_open(self.durable_lsn);
        self.active.write_pos = end;
        self.wake_flusher();
    }

    /// Copies one record into the ring. `None` when it must wait (backpressure).
    #[inline]
    pub fn try_append(&mut self, core: &Core, payload: &[u8]) -> Option<Lsn> {
        let frame = frame_bytes(payload.len());
        loop {
            let lsn = self.next_lsn;
            if let Some((dst, seed)) = self.ring.reserve(frame, lsn) {
                encode_record(dst, seed, lsn, payload);
                self.next_lsn = lsn.next();
                self.metrics.appends += 1;
                self.metrics.appended_bytes += payload.len() as u64;
                self.appended_since_open = true;
                if self
                    .seal_hold
                    .as_ref()
                    .is_some_and(|h| self.ring.open_record_count() >= h.open_records)
                {
                    self.wake_flusher();
                }
                return Some(lsn);
            }
            if self.ring.open.is_some() {
                self.seal_open();
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
        assert!(
            self.durable_lsn <= self.completed_lsn && self.completed_lsn < self.next_lsn,
            "watermarks out of order: durable {} completed {} next {}",
            self.durable_lsn,
            self.completed_lsn,
            self.next_lsn
        );
        // The write position stays inside the segment, on a block boundary.
        let a = &self.active;
        assert!(
            a.write_pos <= a.segment_bytes,
            "write position past the segment"
        );
        assert!(a.write_pos.is_multiple_of(BLOCK_BYTES as u64));
        // The segment chain is non-empty, its generations increase, its bases never go
        // down, and it ends with the active segment.
        assert!(!self.chain.is_empty(), "empty segment chain");
        for w in self.chain.windows(2) {
            assert!(w[0].generation < w[1].generation && w[0].base_lsn <= w[1].base_lsn);
        }
        assert_eq!(self.chain.last().map(|c| c.generation), Some(a.generation));
        assert!(self.next_generation > a.generation);
        if let Some(p) = &self.prepared {
            assert!(p.generation > a.generation && p.generation < self.next_generation);
            assert!(p.zeroed_bytes <= p.segment_bytes);
            // Rotating pushes onto the chain inside `append`, which must not allocate.
            assert!(
                self.chain.capacity() > self.chain.len(),
                "no capacity reserved for the rotation"
            );
        }
        // Zeros in flight never reach below the write position of their segment.
        if let Some(z) = self
            .zeroing
            .as_ref()
            .filter(|z| z.piece.generation == a.generation)
        {
            assert!(
                z.piece.range.start >= a.write_pos,
                "zeros in flight below the head"
            );
        }
    }

    /// Fails the shard (first error wins) and wakes everyone so they see it.
    pub fn fail(&mut self, shard: ShardId, cause: ShardFailure) {
        self.metrics.io_errors += 1;
        if self.failed.is_none() {
            self.header.set_failed();
            tracing::error!(shard = %shard, %cause, "shard failed; it acknowledges nothing until reopened");
            self.failed = Some(cause);
        }
        self.waiters.wake_all();
        self.wake_appenders();
        self.wake_flusher();
    }
}
