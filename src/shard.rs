//! One shard: append, commit, sync, read, truncate, close.
//!
//! A [`Shard`] lives on one glommio executor and is `!Send`: clone the handle to share it
//! between the tasks of that executor. Data flows one way: [`Shard::append`] copies the
//! record into the open flush buffer of the ring and returns its [`Lsn`] at once; the
//! flusher task (`flusher` module) writes sealed buffers, fdatasyncs, and moves the
//! durable watermark, which wakes [`Shard::commit`] waiters.
//!
//! # Failure
//! After any write, fdatasync, create or remove error the shard is **failed**: every pending
//! and later call returns [`Error::ShardFailed`] until the WAL is reopened, which runs
//! recovery. A commit that failed has an unknown outcome. Nothing retries an fdatasync.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::future::LocalBoxFuture;

use crate::arena::Arena;
use crate::batch::BatchLimits;
use crate::commit::Waiters;
use crate::config::WalConfig;
use crate::error::{Error, FailedOp, Result, ShardFailure};
use crate::lsn::{Lsn, ShardId};
use crate::metrics::ShardMetrics;
use crate::reader::LogReader;
use crate::record::{encode_record, frame_bytes, segment_seed, FRAME_HEADER_BYTES};
use crate::recovery::{scan_shard, ChainSegment};
use crate::ring::{BatchTarget, PieceWrite, Ring};
use crate::segment::{
    first_segment_bytes, generation_of, list_spares, prepare_next, shard_dir, spare_path,
    PreparedSegment, SegmentHeader, Spare, BLOCK_BYTES,
};
use crate::shm::owner::{HeaderOwner, ShardHeader};
use crate::storage::{DmaStorage, Storage, StorageFile};
use crate::zero_ahead::{batch_limit_bytes, ZeroPiece};
use crate::Durability;

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

/// A group-commit hint: see [`Shard::expect_appends`].
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
    /// An [`Shard::append_batch`] is copying its records: other appends wait, so that the
    /// batch's LSNs stay contiguous.
    pub batch_hold: bool,
    /// A batch of this session became durable. Until then the flusher neither prepares
    /// the next segment nor zeroes (see `flusher`), so the first commit after opening has
    /// the device and the journal to itself.
    pub session_durable: bool,
    /// Hold sealing a batch for a commit until it holds this many records or the deadline
    /// passes (see [`Shard::expect_appends`]).
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

/// Sets the shard closing when the last user handle is dropped, so the flusher drains what
/// was appended and exits instead of living on.
struct CloseOnDrop(Rc<Core>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut st = self.0.st.borrow_mut();
        st.closing = true;
        st.wake_flusher();
    }
}

/// A handle to one open shard. Cheap to clone; `!Send` (it belongs to its executor).
#[derive(Clone)]
pub struct Shard {
    core: Rc<Core>,
    _guard: Rc<CloseOnDrop>,
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

    fn refusal(&self, shard: ShardId) -> Option<Error> {
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
    fn try_append(&mut self, core: &Core, payload: &[u8]) -> Option<Lsn> {
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

/// Makes sure glommio's process-wide "is this device pollable" probe runs on a non-empty
/// file. glommio 0.9.0 probes with an O_DIRECT read at offset 0 of the first DmaFile opened
/// for reading; on an empty file that read "succeeds" without touching the device, glommio
/// decides the device supports IOPOLL, and every later read fails with EOPNOTSUPP (upstream
/// #670). Opening a 4 KiB file of ours first makes the probe read real data.
async fn iopoll_probe(dir: &std::path::Path) -> Result<()> {
    let path = dir.join("iopoll.probe");
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BLOCK_BYTES as u64);
    if !ok {
        // Not synced: the probe only needs the bytes to be readable now (an O_DIRECT read
        // writes dirty cached pages back first), and a file a crash leaves empty or short
        // is written again here. (An fsync cost a journal commit on every fresh open.)
        std::fs::write(&path, [0xA5u8; BLOCK_BYTES])
            .map_err(|e| Error::io("writing the iopoll probe file", &path, e))?;
    }
    let f = glommio::io::DmaFile::open(&path)
        .await
        .map_err(|e| Error::io("opening the iopoll probe file", &path, e.into()))?;
    let _ = f.close().await;
    Ok(())
}

fn sync_std_dir(path: &std::path::Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", path, e))
}

/// Whether `path` can become a spare: a file of exactly `segment_bytes` (a segment written
/// with another size stays out of the recycling pool).
fn spare_sized(path: &std::path::Path, segment_bytes: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == segment_bytes)
}

/// At open: keeps up to `recycled_segment_count` spares, from the spares on disk and then
/// from the segment files recovery found holding nothing acknowledged (`unused`: prepared
/// but never written, or beyond a torn tail), and removes the rest. Renaming a `.seg` file
/// to its `.spare` name takes it out of every later scan just like removing it; a crash
/// before the directory fsync brings back the `.seg` name, and the next scan judges the file
/// the same way again.
async fn keep_spares(
    config: &WalConfig,
    sdir: &std::path::Path,
    storage: &dyn Storage,
    unused: &[PathBuf],
) -> Result<Vec<Spare>> {
    let keep = config.recycled_segment_count;
    let mut spares = Vec::new();
    let mut changed = false;
    for (generation, path) in list_spares(sdir)? {
        if spares.len() < keep && spare_sized(&path, config.segment_bytes) {
            spares.push(Spare { generation, path });
        } else {
            storage
                .remove(&path)
                .await
                .map_err(|e| Error::io("removing a spare segment", &path, e))?;
            changed = true;
        }
    }
    for path in unused {
        changed = true;
        match generation_of(path) {
            Some(generation) if spares.len() < keep && spare_sized(path, config.segment_bytes) => {
                let to = spare_path(sdir, generation);
                storage
                    .rename(path, &to)
                    .await
                    .map_err(|e| Error::io("keeping an unused segment as a spare", path, e))?;
                spares.push(Spare {
                    generation,
                    path: to,
                });
            }
            _ => storage
                .remove(path)
                .await
                .map_err(|e| Error::io("removing an unused segment", path, e))?,
        }
    }
    if changed {
        storage
            .sync_dir(sdir)
            .await
            .map_err(|e| Error::io("syncing shard directory", sdir, e))?;
    }
    Ok(spares)
}

/// Retires the segments `truncate_before` dropped from the chain (oldest first): keeps up
/// to `recycled_segment_count` spares in all by renaming a segment to its `.spare` name,
/// removes the others, then fsyncs the directory; only then do the new spares become
/// available to the flusher. Returns how many segments were retired. Any error fails the
/// shard.
///
/// Crash points: before the directory fsync each file is, after a crash, either still its
/// `.seg` (then it is back in the chain, as an undone remove would be; oldest first, so a
/// journal that keeps the order leaves a contiguous chain) or already its `.spare` / gone.
/// A spare holds only frames of its own (old) generation and is read by no scan; the next
/// open keeps or removes it.
async fn retire_segments(core: &Core, doomed: Vec<ChainSegment>, before: Lsn) -> Result<usize> {
    if doomed.is_empty() {
        return Ok(0);
    }
    // Fails the shard and hands the same I/O error to the caller of `truncate_before`.
    let fail = |op: FailedOp, what: &'static str, path: &std::path::Path, e: std::io::Error| {
        let e = Arc::new(e);
        let cause = ShardFailure::new(op, path, e.clone());
        core.st.borrow_mut().fail(core.id, cause);
        Error::Io {
            op: what,
            path: path.to_path_buf(),
            source: e,
        }
    };
    let room = {
        let st = core.st.borrow();
        core.config
            .recycled_segment_count
            .saturating_sub(st.spares.len())
    };
    let mut retired = Vec::new();
    for seg in &doomed {
        if retired.len() < room && spare_sized(&seg.path, core.config.segment_bytes) {
            let to = spare_path(&core.shard_dir, seg.generation);
            if let Err(e) = core.storage.rename(&seg.path, &to).await {
                let what = "keeping a segment as a spare";
                return Err(fail(FailedOp::Rename, what, &seg.path, e));
            }
            retired.push(Spare {
                generation: seg.generation,
                path: to,
            });
        } else if let Err(e) = core.storage.remove(&seg.path).await {
            return Err(fail(FailedOp::Remove, "removing segment", &seg.path, e));
        }
    }
    if let Err(e) = core.storage.sync_dir(&core.shard_dir).await {
        let what = "syncing shard directory";
        return Err(fail(FailedOp::SyncDir, what, &core.shard_dir, e));
    }
    let mut st = core.st.borrow_mut();
    st.metrics.segments_retired_as_spares += retired.len() as u64;
    tracing::info!(shard = %core.id, removed = doomed.len() - retired.len(), spares = retired.len(), before = %before, "truncated");
    st.spares.extend(retired);
    Ok(doomed.len())
}

impl Shard {
    /// Opens shard `id` of the log `config` describes, inside the calling glommio executor:
    /// recovers its segments, allocates its buffers, prepares a segment to write into and
    /// starts its flusher task. Use [`crate::spawn`] to run one executor per shard instead.
    ///
    /// Errors: [`Error::InvalidConfig`] when `id` is not below the shard count; recovery's:
    /// [`Error::ForeignFile`] and [`Error::NewerFormat`] for files it must not touch,
    /// [`Error::Corruption`] for damage below the vouched-for durable point, [`Error::Io`]
    /// when a file cannot be read or created; [`Error::LogLocked`] when another process owns the log. Panics when called outside a glommio executor.
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
        if id.0 >= config.shard_count {
            return Err(Error::InvalidConfig(format!(
                "shard id {id} is not below shard_count = {}",
                config.shard_count
            )));
        }
        let dir = config.dir.clone();
        let sdir = shard_dir(&dir, id);
        if !sdir.exists() {
            std::fs::create_dir_all(&sdir)
                .map_err(|e| Error::io("creating shard directory", &sdir, e))?;
            sync_std_dir(&dir)?;
        }
        // The writer lease comes first: recovery may remove files, which only the owner may do.
        let owner = HeaderOwner::acquire(&dir, config.shard_count)?;
        let mut header = owner.attach(id, config.publish_positions)?;
        iopoll_probe(&dir).await?;

        let scan = scan_shard(&sdir, id)?;
        if let Some(t) = &scan.torn_tail {
            tracing::warn!(shard = %id, path = %t.path.display(), offset = t.offset, lsn = %t.lsn, reason = t.reason,
                "recovery cut a torn tail: nothing after it was acknowledged");
        }
        // `scan.next_generation` is above every spare's generation too.
        let mut spares = keep_spares(config, &sdir, &*storage, &scan.remove).await?;

        let arena = Arena::allocate(
            config.flush_buffer_count,
            config.flush_buffer_bytes,
            crate::zero_ahead::piece_bytes(config.flush_buffer_bytes),
        );
        let mut chain = scan.chain;
        let mut next_generation = scan.next_generation;
        let active = match &scan.resume {
            // Recovery found only zeros past `write_pos`, but not whether they are written
            // blocks or unwritten extents: zeroing ahead starts again from the head (it
            // rewrites zeros, never a record).
            Some(r) => ActiveSegment {
                generation: r.generation,
                file: storage
                    .open(&r.path)
                    .await
                    .map_err(|e| Error::io("opening segment", &r.path, e))?,
                write_pos: r.write_pos,
                segment_bytes: r.segment_bytes,
                zeroed_bytes: r.write_pos,
            },
            None => {
                // A spare has the full size; a new file is small, so that the log soon moves
                // on to a segment the flusher zeroed in the background.
                let spare = spares.pop();
                let bytes = match spare {
                    Some(_) => config.segment_bytes,
                    None => first_segment_bytes(config.segment_bytes, config.flush_buffer_bytes),
                };
                let p = prepare_next(
                    &*storage,
                    &sdir,
                    spare,
                    next_generation,
                    bytes,
                    &arena.zero_block,
                )
                .await
                .map_err(|e| Error::io("preparing segment", &sdir, e))?;
                next_generation += 1;
                chain.push(ChainSegment {
                    generation: p.generation,
                    path: p.path,
                    base_lsn: scan.next_lsn,
                });
                ActiveSegment {
                    generation: p.generation,
                    file: p.file,
                    write_pos: 0,
                    segment_bytes: p.segment_bytes,
                    zeroed_bytes: p.zeroed_bytes,
                }
            }
        };
        tracing::info!(shard = %id, dir = %dir.display(), next_lsn = %scan.next_lsn, records = scan.record_count,
            segments = chain.len(), registered_buffers = arena.registered, arena_bytes = arena.total_bytes, "shard open");

        let n = config.flush_buffer_count;
        let durable = Lsn(scan.next_lsn.0 - 1);
        header.reconcile(durable, chain[0].base_lsn, active.generation);
        let st = State {
            ring: Ring::new(arena.ring),
            next_lsn: scan.next_lsn,
            completed_lsn: durable,
            durable_lsn: durable,
            active,
            prepared: None,
            preparing: None,
            chain,
            spares,
            next_generation,
            in_flight: Vec::with_capacity(n * 32),
            piece_scratch: Vec::with_capacity(32),
            dirty: Vec::with_capacity(4),
            sync: None,
            zeroing: None,
            waiters: Waiters::with_capacity(1024),
            append_wakers: Vec::with_capacity(1024),
            flusher_waker: None,
            failed: None,
            closing: false,
            closed: false,
            close_wakers: Vec::new(),
            final_marker_sealed: false,
            appended_since_open: false,
            woke_waiters: false,
            batch_hold: false,
            session_durable: false,
            seal_hold: None,
            hold_timer: None,
            commit_latency_us: crate::metrics::new_latency_histogram(),
            metrics: ShardMetrics::default(),
            header,
        };
        let core = Rc::new(Core {
            id,
            config: config.clone(),
            shard_dir: sdir,
            storage,
            zeros: arena.zeros,
            zero_block: arena.zero_block,
            registered: arena.registered,
            st: RefCell::new(st),
        });
        glommio::spawn_local(crate::flusher::run(core.clone())).detach();
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
    /// nothing.
    ///
    /// Errors: [`Error::EmptyRecord`], [`Error::RecordTooLarge`] (nothing is appended),
    /// [`Error::ShardFailed`], [`Error::Closed`].
    pub async fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.check_len(payload.len())?;
        let core = &*self.core;
        let mut counted_wait = false;
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            if let Some(e) = st.refusal(core.id) {
                return Poll::Ready(Err(e));
            }
            if st.batch_hold {
                // A batch is on its way into the ring; it wakes appenders when done.
                st.append_wakers.push(cx.waker().clone());
                return Poll::Pending;
            }
            match st.try_append(core, payload) {
                Some(lsn) => Poll::Ready(Ok(lsn)),
                None => {
                    if !counted_wait {
                        st.metrics.ring_full_waits += 1;
                        counted_wait = true;
                    }
                    st.append_wakers.push(cx.waker().clone());
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
        Commit {
            core: self.core.clone(),
            lsn,
            waiter: None,
            waiting_since: None,
        }
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
        let first = core.st.borrow().next_lsn;
        let (mut done, mut counted_wait) = (0usize, false);
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            if let Some(e) = st.refusal(core.id) {
                return Poll::Ready(Err(e));
            }
            while let Some(payload) = records.get(done) {
                match st.try_append(core, payload.as_ref()) {
                    Some(lsn) => debug_assert_eq!(lsn.0, first.0 + done as u64),
                    None => {
                        // Counted once per batch, as `append` counts once per record.
                        st.metrics.ring_full_waits += u64::from(!counted_wait);
                        counted_wait = true;
                        st.append_wakers.push(cx.waker().clone());
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
        st.seal_hold = Some(SealHold {
            open_records: seen_records + appends,
            seen_records,
            next_check: now + gap,
            gap,
            give_up: now + gap * 4,
        });
        st.hold_timer = None;
        st.wake_flusher();
    }

    /// The highest LSN known durable (0 when none).
    pub fn durable_lsn(&self) -> Lsn {
        self.core.st.borrow().durable_lsn
    }

    /// The highest LSN handed out by `append` (0 when none).
    pub fn last_appended_lsn(&self) -> Lsn {
        Lsn(self.core.st.borrow().next_lsn.0 - 1)
    }

    /// The lowest LSN still stored (truncation moves it up).
    pub fn first_lsn(&self) -> Lsn {
        self.core.st.borrow().chain[0].base_lsn
    }

    /// Whether the shard failed after an I/O error.
    pub fn is_failed(&self) -> bool {
        self.core.st.borrow().failed.is_some()
    }

    /// Whether every flush buffer lies in io_uring-registered memory (writes go out as
    /// `WRITE_FIXED`). `false` when the memlock limit was too small for glommio to register
    /// its arena, or the arena was too small; the shard works either way.
    pub fn buffers_registered(&self) -> bool {
        self.core.registered
    }

    /// A snapshot of the shard's counters (a copy of a few integers).
    pub fn metrics(&self) -> ShardMetrics {
        self.core.st.borrow().metrics
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
    pub fn reader(&self, from: Lsn) -> Result<LogReader> {
        let st = self.core.st.borrow();
        LogReader::new(self.core.id, st.chain.clone(), from, st.durable_lsn)
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
        let core = &*self.core;
        let doomed: Vec<ChainSegment> = {
            let mut st = core.st.borrow_mut();
            if let Some(e) = st.refusal(core.id) {
                return Err(e);
            }
            if before.0 > st.durable_lsn.0 + 1 {
                return Err(Error::TruncateBeyondDurable {
                    shard: core.id,
                    requested: before,
                    durable_lsn: st.durable_lsn,
                });
            }
            // Live readers' pins hold back what they still need (see `shm`).
            let before = st.header.retention_floor(before);
            let before = keep_from.map_or(before, |keep| before.min(keep));
            let mut k = 0;
            while k + 1 < st.chain.len() && st.chain[k + 1].base_lsn <= before {
                k += 1;
            }
            st.chain.drain(..k).collect()
        };
        let removed = retire_segments(core, doomed, before).await?;
        if removed > 0 {
            let mut st = core.st.borrow_mut();
            let (durable, first, generation) =
                (st.durable_lsn, st.chain[0].base_lsn, st.active.generation);
            st.header.publish(durable, first, generation);
        }
        Ok(removed)
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
            st.closing = true;
            st.wake_flusher();
            st.wake_appenders();
        }
        poll_fn(|cx| {
            let mut st = core.st.borrow_mut();
            if st.closed {
                Poll::Ready(())
            } else {
                st.close_wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let st = core.st.borrow();
        if let Some(cause) = &st.failed {
            return Err(Error::ShardFailed {
                shard: core.id,
                cause: cause.clone(),
            });
        }
        tracing::info!(shard = %core.id, durable_lsn = %st.durable_lsn, "shard closed");
        Ok(st.durable_lsn)
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
            if let Some(e) = st.refusal(core.id) {
                return Poll::Ready(Err(e));
            }
            if st.batch_hold {
                st.append_wakers.push(cx.waker().clone());
                return Poll::Pending;
            }
            st.batch_hold = true;
            Poll::Ready(Ok(BatchHold(core.clone())))
        })
        .await
    }
}

impl Drop for BatchHold {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.st.try_borrow_mut() {
            assert!(st.batch_hold, "a batch hold is released once");
            st.batch_hold = false;
            st.wake_appenders();
        }
    }
}

/// The future [`Shard::commit`] returns. Dropping it before it resolves is safe: the waiter
/// is removed and nothing else changes.
#[must_use = "a commit does nothing unless awaited"]
pub struct Commit {
    core: Rc<Core>,
    lsn: Lsn,
    waiter: Option<u64>,
    /// When the commit first had to wait (for the latency histogram).
    waiting_since: Option<std::time::Instant>,
}

impl Future for Commit {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let core = &*this.core;
        let mut st = core.st.borrow_mut();
        if let Some(cause) = &st.failed {
            let e = Error::ShardFailed {
                shard: core.id,
                cause: cause.clone(),
            };
            if let Some(id) = this.waiter.take() {
                st.waiters.cancel(id);
            }
            return Poll::Ready(Err(e));
        }
        if st.durable_lsn >= this.lsn {
            this.waiter = None;
            if let Some(since) = this.waiting_since.take() {
                let us = since.elapsed().as_micros() as u64;
                st.commit_latency_us.saturating_record(us.max(1));
            }
            return Poll::Ready(Ok(()));
        }
        if this.lsn >= st.next_lsn {
            return Poll::Ready(Err(Error::LsnNotAppended {
                shard: core.id,
                requested: this.lsn,
                last_appended: Lsn(st.next_lsn.0 - 1),
            }));
        }
        let first_time = this.waiter.is_none();
        this.waiter = Some(st.waiters.register(this.waiter, this.lsn, cx.waker()));
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
                st.waiters.cancel(id);
            }
        }
    }
}
