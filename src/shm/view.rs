//! The reader's side of the header: cuts, pinned snapshots, and `inspect`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex};

use super::layout::*;
use super::map::ShmMap;
use super::protocol::{pin_announce, seqlock_try_read};
use super::sys::{
    boot_id, pid_start_ticks, process_alive, try_lock_byte, unix_micros, unlock_byte,
};
use super::{check_header, payload_check};
use crate::error::{Error, Result};
use crate::lsn::{Cut, Lsn, ShardId};
use crate::reader::LogReader;
use crate::recovery::ChainSegment;
use crate::segment::{list_segments, shard_dir, SegmentHeader, BLOCK_BYTES};

/// Seqlock read attempts per shard before a cut gives up (a publication takes well under a
/// microsecond; only a writer stopped or killed in the middle of one holds a reader off).
const SEQLOCK_TRIES: u32 = 100_000;
/// Attempts at a whole cut while the header generation keeps changing under it.
const CUT_TRIES: u32 = 1_000;
/// Attempts at pinning while truncations keep raising a floor above the pin.
const PIN_TRIES: u32 = 1_000;

/// Whether a shard is open in the owning process, per the header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ShardState {
    /// Not open (or its writer is gone).
    Closed,
    /// Open and publishing.
    Open,
    /// Failed after an I/O error; it acknowledges nothing until the log is reopened.
    Failed,
}

/// One shard's published position.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ShardPosition {
    /// Every record up to this LSN is durable (0: none).
    pub durable_lsn: Lsn,
    /// The lowest LSN still stored (truncation moves it up).
    pub first_lsn: Lsn,
    /// Publications since the header was built (one per group commit, truncation, open).
    pub publishes: u64,
    /// The generation of the segment appends go to.
    pub active_segment_generation: u64,
    /// Whether the shard is open.
    pub state: ShardState,
    /// Truncation may delete segments whose records are all below this LSN.
    pub truncation_floor_lsn: Lsn,
}

/// The process that owns the log for writing, as the header records it (for diagnostics:
/// the lease itself is the OFD lock).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OwnerInfo {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// When it took the lease, microseconds since the Unix epoch.
    pub since_unix_us: u64,
    /// Whether that process (pid and start time) still runs.
    pub alive: bool,
}

/// A reader pin in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PinInfo {
    /// The pin slot.
    pub slot: usize,
    /// The reader's pid.
    pub pid: u32,
    /// Whether that process still runs (a dead reader's pin is reaped at the next
    /// truncation).
    pub alive: bool,
    /// Since when, microseconds since the Unix epoch.
    pub since_unix_us: u64,
    /// Per shard, the lowest LSN the reader needs.
    pub lowest_lsns: Vec<Lsn>,
}

/// A process's view of a log's header: cuts, snapshots, owner, pins.
///
/// `Send + Sync` and cheap to clone. Opening maps the file read-write when the process may
/// write it (needed for [`HeaderView::snapshot`]) and read-only otherwise (cuts only).
#[derive(Clone)]
pub struct HeaderView {
    inner: Arc<ViewInner>,
}

struct ViewInner {
    dir: PathBuf,
    path: PathBuf,
    /// The open file description that holds this view's pin-slot locks.
    file: File,
    map: ShmMap,
    geometry: Geometry,
    /// Slots this view holds: the slot locks of one description do not exclude each other.
    held: Mutex<Vec<bool>>,
}

fn bad(path: &Path, detail: impl Into<String>) -> Error {
    Error::BadHeader {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

impl HeaderView {
    /// Maps the header of the log in `dir`, in any process, while a writer runs or not.
    ///
    /// Errors: [`Error::BadHeader`] when there is no header (no writer ever opened the log
    /// with this version), or it is being rebuilt, of another layout version or byte order,
    /// damaged, or from a previous boot (open the log for writing to rebuild it);
    /// [`Error::Io`] when it cannot be opened or mapped.
    pub fn open(dir: &Path) -> Result<HeaderView> {
        HeaderView::open_with(dir, true)
    }

    /// Like [`HeaderView::open`], but maps the header read-only even when the file is
    /// writable (a monitor that must never write the log's files). Cuts, positions, owner and
    /// pins work; [`HeaderView::snapshot`] does not (pinning writes a slot).
    pub fn open_read_only(dir: &Path) -> Result<HeaderView> {
        HeaderView::open_with(dir, false)
    }

    fn open_with(dir: &Path, want_writable: bool) -> Result<HeaderView> {
        let path = dir.join(FILE_NAME);
        let opened = match want_writable {
            true => File::options().read(true).write(true).open(&path),
            false => File::open(&path),
        };
        let (file, writable) = match opened {
            Ok(f) => (f, want_writable),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && want_writable => (
                File::open(&path).map_err(|e| Error::io("opening the shared header", &path, e))?,
                false,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(&path, "no header: no writer has opened this log yet"))
            }
            Err(e) => return Err(Error::io("opening the shared header", &path, e)),
        };
        let boot = boot_id()
            .map_err(|e| Error::io("reading the boot id", "/proc/sys/kernel/random/boot_id", e))?;
        let (geometry, _) = check_header(&file, boot).map_err(|d| bad(&path, d))?;
        let map = ShmMap::new(&file, geometry.total_words(), writable)
            .map_err(|e| Error::io("mapping the shared header", &path, e))?;
        Ok(HeaderView {
            inner: Arc::new(ViewInner {
                dir: dir.to_path_buf(),
                path,
                file,
                map,
                held: Mutex::new(vec![false; geometry.pin_slot_count]),
                geometry,
            }),
        })
    }

    /// The number of shards of the log.
    pub fn shard_count(&self) -> u32 {
        self.inner.geometry.shard_count as u32
    }

    /// Whether the view may pin snapshots (the file was writable for this process).
    pub fn is_writable(&self) -> bool {
        self.inner.map.writable()
    }

    /// The header generation: it changes when the header is rebuilt or a shard's position
    /// was rewound at reconcile, which voids cuts taken before.
    pub fn generation(&self) -> u64 {
        let g = self.inner.map.word(W_GENERATION).load(Relaxed);
        std::sync::atomic::fence(Acquire);
        g
    }

    /// The durable LSN of every shard, read so that no entry is torn and none is ahead of
    /// what its shard has made durable. Each entry is one shard's latest publication (at
    /// most one group commit behind the shard).
    ///
    /// Errors: [`Error::BadHeader`] when the header was rebuilt under this view (open a new
    /// one), or a shard's seqlock stays odd (its writer died in the middle of a
    /// publication; the next writer to open the log repairs it).
    pub fn cut(&self) -> Result<Cut> {
        Ok(Cut::new(
            self.positions()?.iter().map(|p| p.durable_lsn).collect(),
        ))
    }

    /// Every shard's published position, read as one consistent cut (see [`HeaderView::cut`]).
    pub fn positions(&self) -> Result<Vec<ShardPosition>> {
        Ok(self.positions_with_generation()?.0)
    }

    fn positions_with_generation(&self) -> Result<(Vec<ShardPosition>, u64)> {
        let v = &*self.inner;
        let g = &v.geometry;
        let mut out = Vec::with_capacity(g.shard_count);
        for _ in 0..CUT_TRIES {
            self.check_magic()?;
            let generation = self.generation();
            out.clear();
            for shard in 0..g.shard_count {
                out.push(self.read_shard(shard)?);
            }
            std::sync::atomic::fence(Acquire);
            if v.map.word(W_GENERATION).load(Relaxed) == generation {
                self.check_magic()?;
                return Ok((out, generation));
            }
        }
        Err(bad(
            &v.path,
            "the header generation kept changing while a cut was read",
        ))
    }

    fn check_magic(&self) -> Result<()> {
        let magic = self.inner.map.word(W_MAGIC).load(Relaxed);
        std::sync::atomic::fence(Acquire);
        if magic != MAGIC {
            return Err(bad(
                &self.inner.path,
                "the header was rebuilt; open a new view",
            ));
        }
        Ok(())
    }

    fn read_shard(&self, shard: usize) -> Result<ShardPosition> {
        let v = &*self.inner;
        let w = |f| v.map.word(v.geometry.shard_word(shard, f));
        for attempt in 0..SEQLOCK_TRIES {
            if let Some([durable, first, publishes, generation, check]) =
                seqlock_try_read(w(S_SEQ), SHARD_PAYLOAD.map(w))
            {
                if check != payload_check(durable, first, publishes, generation) {
                    return Err(bad(
                        &v.path,
                        format!(
                            "shard {shard}: a publication read back torn (check word mismatch)"
                        ),
                    ));
                }
                let state = match w(S_STATE).load(Relaxed) {
                    SHARD_OPEN => ShardState::Open,
                    SHARD_FAILED => ShardState::Failed,
                    _ => ShardState::Closed,
                };
                return Ok(ShardPosition {
                    durable_lsn: Lsn(durable),
                    first_lsn: Lsn(first),
                    publishes,
                    active_segment_generation: generation,
                    state,
                    truncation_floor_lsn: Lsn(w(S_FLOOR).load(Relaxed)),
                });
            }
            if attempt % 64 == 63 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        Err(bad(
            &v.path,
            format!("shard {shard}: its seqlock stays odd (its writer stopped mid-publication); reopening the log repairs it"),
        ))
    }

    /// The process holding the writer lease, as recorded in the header (`None`: no owner
    /// recorded, i.e. no writer has the log open).
    pub fn owner(&self) -> Option<OwnerInfo> {
        let m = &self.inner.map;
        let pid = m.word(W_OWNER_PID).load(Relaxed) as u32;
        if pid == 0 {
            return None;
        }
        let start_ticks = m.word(W_OWNER_START_TICKS).load(Relaxed);
        Some(OwnerInfo {
            pid,
            start_ticks,
            since_unix_us: m.word(W_OWNER_SINCE_UNIX_US).load(Relaxed),
            alive: process_alive(pid, start_ticks),
        })
    }

    /// The reader pins currently recorded, live or not yet reaped.
    pub fn pins(&self) -> Vec<PinInfo> {
        let v = &*self.inner;
        let g = &v.geometry;
        let w = |slot, f| v.map.word(g.pin_word(slot, f)).load(Relaxed);
        (0..g.pin_slot_count)
            .filter(|&slot| w(slot, P_STATE) == PIN_HELD)
            .map(|slot| {
                let pid = w(slot, P_PID) as u32;
                PinInfo {
                    slot,
                    pid,
                    alive: process_alive(pid, w(slot, P_START_TICKS)),
                    since_unix_us: w(slot, P_SINCE_UNIX_US),
                    lowest_lsns: (0..g.shard_count)
                        .map(|s| Lsn(w(slot, P_LSNS + s)))
                        .collect(),
                }
            })
            .collect()
    }

    /// Takes a consistent cut and pins it: until the returned [`Snapshot`] is dropped, or
    /// this process dies, truncation keeps every segment from each shard's first stored LSN
    /// (at this call) up to the cut. Read it with [`Snapshot::reader`].
    ///
    /// Errors: as [`HeaderView::cut`]; [`Error::BadHeader`] on a read-only view;
    /// [`Error::TooManyReaders`] when every pin slot is held by a live reader.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let v = &*self.inner;
        let g = &v.geometry;
        if !v.map.writable() {
            return Err(bad(
                &v.path,
                "the view is read-only; a snapshot needs write access to pin",
            ));
        }
        let slot = self.claim_slot()?;
        let mut guard = Snapshot {
            view: self.inner.clone(),
            slot,
            cut: Cut::default(),
            pinned_from: Vec::new(),
            generation: 0,
        };
        let pid = std::process::id();
        let w = |f| v.map.word(g.pin_word(slot, f));
        w(P_PID).store(pid as u64, Relaxed);
        w(P_START_TICKS).store(pid_start_ticks(pid).unwrap_or(0), Relaxed);
        w(P_SINCE_UNIX_US).store(unix_micros(), Relaxed);
        let pin_words: Vec<_> = (0..g.shard_count).map(|s| w(P_LSNS + s)).collect();
        let floors: Vec<_> = (0..g.shard_count)
            .map(|s| v.map.word(g.shard_word(s, S_FLOOR)))
            .collect();
        for _ in 0..PIN_TRIES {
            let (positions, generation) = self.positions_with_generation()?;
            // Below the floor a truncation may be deleting right now, whatever first_lsn says.
            let lowest: Vec<u64> = positions
                .iter()
                .map(|p| p.first_lsn.0.max(p.truncation_floor_lsn.0).max(1))
                .collect();
            w(P_GENERATION).store(generation, Relaxed);
            if pin_announce(&pin_words, &lowest, w(P_STATE), PIN_HELD, &floors).is_ok() {
                guard.cut = Cut::new(positions.iter().map(|p| p.durable_lsn).collect());
                guard.pinned_from = lowest.into_iter().map(Lsn).collect();
                guard.generation = generation;
                return Ok(guard);
            }
        }
        Err(bad(&v.path, "truncation kept overtaking the pin"))
    }

    fn claim_slot(&self) -> Result<usize> {
        let v = &*self.inner;
        let mut held = v.held.lock().unwrap_or_else(|p| p.into_inner());
        for slot in 0..v.geometry.pin_slot_count {
            if held[slot] {
                continue;
            }
            let locked = try_lock_byte(&v.file, PIN_LOCK_BASE + slot as u64, true)
                .map_err(|e| Error::io("locking a pin slot", &v.path, e))?;
            if locked {
                held[slot] = true;
                return Ok(slot);
            }
        }
        Err(Error::TooManyReaders {
            path: v.path.clone(),
            slots: v.geometry.pin_slot_count,
        })
    }
}

/// A pinned, consistent cut of the whole log (see [`HeaderView::snapshot`]). `Send + Sync`;
/// dropping it releases the pin.
pub struct Snapshot {
    view: Arc<ViewInner>,
    slot: usize,
    cut: Cut,
    pinned_from: Vec<Lsn>,
    generation: u64,
}

impl Snapshot {
    /// The cut: per shard, the last durable LSN the snapshot covers.
    pub fn cut(&self) -> &Cut {
        &self.cut
    }

    /// The lowest LSN of `shard` the pin keeps readable.
    pub fn pinned_from(&self, shard: ShardId) -> Option<Lsn> {
        self.pinned_from.get(shard.index()).copied()
    }

    /// The header generation the cut was taken in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A reader over `shard`'s records from `from` up to the cut. It reads segment files
    /// directly (no writer involved) and never returns a record above the cut.
    ///
    /// Errors: [`Error::InvalidConfig`] for a shard the log does not have;
    /// [`Error::Truncated`] when `from` is below [`Snapshot::pinned_from`];
    /// [`Error::Io`] when the shard directory cannot be listed; the reader itself yields
    /// [`Error::Corruption`] for damaged records.
    pub fn reader(&self, shard: ShardId, from: Lsn) -> Result<LogReader> {
        let (Some(upto), Some(pinned)) = (self.cut.get(shard), self.pinned_from(shard)) else {
            return Err(Error::InvalidConfig(format!(
                "shard {shard} is not below the log's shard count {}",
                self.cut.shard_count()
            )));
        };
        let from = from.max(Lsn(1));
        if from < pinned {
            return Err(Error::Truncated {
                shard,
                requested: from,
                first_available: pinned,
            });
        }
        let chain = live_chain(&shard_dir(&self.view.dir, shard), shard, pinned, upto)?;
        LogReader::new(shard, chain, from, upto)
    }

    /// [`Snapshot::reader`] from the first pinned LSN.
    pub fn reader_all(&self, shard: ShardId) -> Result<LogReader> {
        let from = self.pinned_from(shard).unwrap_or(Lsn(1));
        self.reader(shard, from)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let v = &*self.view;
        v.map
            .word(v.geometry.pin_word(self.slot, P_STATE))
            .store(PIN_FREE, Release);
        let _ = unlock_byte(&v.file, PIN_LOCK_BASE + self.slot as u64);
        v.held.lock().unwrap_or_else(|p| p.into_inner())[self.slot] = false;
    }
}

/// The segments of a live shard that hold `from..=upto`, from their header blocks only (no
/// tail scan: the writer may be writing past `upto`). Segments not yet written (a zero or
/// stale header block) are skipped.
fn live_chain(sdir: &Path, shard: ShardId, from: Lsn, upto: Lsn) -> Result<Vec<ChainSegment>> {
    let mut chain: Vec<ChainSegment> = Vec::new();
    for (generation, path) in list_segments(sdir)? {
        let Some(header) = read_segment_header(&path)? else {
            continue;
        };
        if header.generation != generation || header.shard != shard || header.base_lsn > upto {
            continue;
        }
        chain.push(ChainSegment {
            generation,
            path,
            base_lsn: header.base_lsn,
        });
    }
    // Keep the last segment starting at or below `from` and everything after it.
    let start = chain.iter().rposition(|s| s.base_lsn <= from).unwrap_or(0);
    chain.drain(..start);
    Ok(chain)
}

/// The decoded header block of a segment, `None` when the file is gone (truncated meanwhile)
/// or its header block does not decode (prepared, not yet written).
fn read_segment_header(path: &Path) -> Result<Option<SegmentHeader>> {
    use std::io::Read;
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening segment", path, e)),
    };
    match f.read_exact(&mut block) {
        Ok(()) => Ok(SegmentHeader::decode(&block).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io("reading segment header", path, e)),
    }
}

/// The first and last LSN a segment file covers, for `inspect`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SegmentRange {
    /// The shard.
    pub shard: ShardId,
    /// The segment generation (its file name).
    pub generation: u64,
    /// Its first record's LSN (`None`: prepared, not yet written).
    pub base_lsn: Option<Lsn>,
    /// The LSN before the next segment's base (`None` for the last segment, which is still
    /// growing, and for unwritten ones).
    pub last_lsn: Option<Lsn>,
    /// The file size in bytes.
    pub file_bytes: u64,
}

/// A read-only report on a log directory: owner, shard positions, cut, reader pins and
/// segment files (what the `shardwal inspect` command prints).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Inspection {
    /// The log directory.
    pub dir: PathBuf,
    /// `None` when the header can be used; otherwise why not (then the fields below that
    /// come from it are empty).
    pub header_problem: Option<String>,
    /// The header generation.
    pub generation: Option<u64>,
    /// The lease owner, if a writer has the log open.
    pub owner: Option<OwnerInfo>,
    /// Per shard, its published position.
    pub shards: Vec<ShardPosition>,
    /// The current cut (the durable LSN of every shard).
    pub cut: Vec<Lsn>,
    /// Reader pins.
    pub pins: Vec<PinInfo>,
    /// Every segment file, by shard, oldest first.
    pub segments: Vec<SegmentRange>,
}

/// Looks at a log directory without changing it: the header (owner, positions, cut, pins)
/// and the segment files' ranges (from their header blocks). Safe while a writer runs.
///
/// Errors: [`Error::Io`] when a shard directory cannot be listed. A header that cannot be
/// used is reported in [`Inspection::header_problem`], not as an error.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    let mut out = Inspection {
        dir: dir.to_path_buf(),
        header_problem: None,
        generation: None,
        owner: None,
        shards: Vec::new(),
        cut: Vec::new(),
        pins: Vec::new(),
        segments: Vec::new(),
    };
    let shard_count = match HeaderView::open(dir).and_then(|v| Ok((v.positions()?, v))) {
        Ok((positions, view)) => {
            out.generation = Some(view.generation());
            out.owner = view.owner();
            out.cut = positions.iter().map(|p| p.durable_lsn).collect();
            out.shards = positions;
            out.pins = view.pins();
            view.shard_count()
        }
        Err(e) => {
            out.header_problem = Some(e.to_string());
            count_shard_dirs(dir)
        }
    };
    for s in 0..shard_count {
        let shard = ShardId(s);
        let mut ranges: Vec<SegmentRange> = Vec::new();
        for (generation, path) in list_segments(&shard_dir(dir, shard))? {
            let header = read_segment_header(&path)?.filter(|h| h.generation == generation);
            let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            let base_lsn = header.map(|h| h.base_lsn);
            if let (Some(prev), Some(base)) = (ranges.last_mut(), base_lsn) {
                if prev.base_lsn.is_some() {
                    prev.last_lsn = Some(Lsn(base.0.saturating_sub(1)));
                }
            }
            ranges.push(SegmentRange {
                shard,
                generation,
                base_lsn,
                last_lsn: None,
                file_bytes,
            });
        }
        out.segments.extend(ranges);
    }
    Ok(out)
}

fn count_shard_dirs(dir: &Path) -> u32 {
    (0..1024u32)
        .take_while(|s| shard_dir(dir, ShardId(*s)).is_dir())
        .count() as u32
}

// Views and snapshots move between threads (a backup thread, a replica's reader task).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<HeaderView>();
    send_sync::<Snapshot>();
};
