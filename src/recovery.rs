//! Recovery: scan a shard's segments, verify every frame, and decide where the log ends.
//!
//! The scan is read-only and synchronous (plain `std::fs` reads, a chunk at a time through
//! the `walk` module's window, so it holds one chunk whatever the segment size), and readers
//! of a closed directory use it without an executor. [`scan_shard`] returns a [`ShardScan`]: the chain
//! of segments that hold the log, the next LSN, where writing may resume, and which files
//! hold nothing acknowledged and should be removed. The shard applies it when it opens.
//!
//! # Torn tail or corruption?
//! Several writes may be in flight when the machine dies, and they can land in any order, so
//! after a crash the log can end in a hole followed by more valid-looking data. Those bytes
//! were never acknowledged: a commit is acknowledged only after every write before it
//! completed and an fdatasync covered it. Bit rot in acknowledged data looks the same on its
//! own. What tells them apart is the **marker** that starts every write: it records the
//! durable LSN at the time the write was sealed. So when the scan meets a bad frame where it
//! expected LSN `x`:
//! * if any valid marker anywhere in the shard vouches for a durable LSN `>= x`, record `x`
//!   had been acknowledged: [`Error::Corruption`] is returned and nothing is cut away;
//! * otherwise it is a torn tail: the log ends at `x - 1`, later segments are removed, and
//!   writing resumes in a fresh segment whose base LSN is `x` (the damaged bytes are left
//!   in place, never read again: a segment whose successor starts exactly where its valid
//!   prefix ends has an *abandoned tail*).
//!
//! A clean shutdown writes a final marker that vouches for every record, so only the last
//! group commit before a crash is ever judged without a voucher.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::record::{decode, segment_seed, Frame, FRAME_HEADER_BYTES};
use crate::segment::{
    list_segments, list_spares, HeaderError, SegmentHeader, BLOCK_BYTES, FORMAT_VERSION,
};
use crate::walk::{step, SegmentWindow, Step, WalkStep};

/// A segment in the valid chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSegment {
    /// Generation (file name).
    pub generation: u64,
    /// File path.
    pub path: PathBuf,
    /// LSN of its first record.
    pub base_lsn: Lsn,
}

/// Where writing can go on inside the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Generation of the segment.
    pub generation: u64,
    /// File path.
    pub path: PathBuf,
    /// 4 KiB-aligned offset of the first unwritten block.
    pub write_pos: u64,
    /// Size of the segment file in bytes, rounded down to whole 4 KiB blocks.
    pub segment_bytes: u64,
}

/// A torn tail that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the first bad frame.
    pub offset: u64,
    /// The LSN that frame should have held; the log now ends before it.
    pub lsn: Lsn,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// The result of scanning one shard.
#[derive(Clone, Debug, Default)]
pub struct ShardScan {
    /// The segments that hold the log, oldest first.
    pub chain: Vec<ChainSegment>,
    /// The LSN the next appended record gets.
    pub next_lsn: Lsn,
    /// Continue writing in the last segment, if its tail is clean and has room.
    pub resume: Option<Resume>,
    /// Segment files that hold nothing acknowledged (unused, beyond a torn tail, or with a
    /// damaged header): the shard keeps them as spares for recycling or removes them.
    pub remove: Vec<PathBuf>,
    /// The generation for the next new segment (above every segment and spare file seen).
    pub next_generation: u64,
    /// The torn tail cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Records verified.
    pub record_count: u64,
}

#[derive(Clone, Debug)]
struct Damage {
    path: PathBuf,
    offset: u64,
    lsn: Lsn,
    reason: &'static str,
    chain_len: usize,
}

/// How the contiguous scan of one segment ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// A zero block boundary with only zeros after it: writing may resume at `write_pos`.
    Clean {
        /// 4 KiB-aligned offset of the first unwritten block.
        write_pos: u64,
    },
    /// The segment is full to its last frame.
    Full,
    /// A bad frame at `offset` where the next expected record should have been.
    Damaged {
        /// Byte offset of the bad frame.
        offset: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// What [`scan_segment_bytes`] found in one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentSummary {
    /// The decoded header block.
    pub header: SegmentHeader,
    /// Records verified in the contiguous valid part, from the header's base LSN.
    pub record_count: u64,
    /// The LSN after the last verified record (the base LSN when there is none).
    pub next_lsn: Lsn,
    /// How the contiguous scan ended.
    pub end: SegmentEnd,
    /// The highest durable LSN a valid marker vouches for, including markers at block
    /// boundaries past a damaged frame ([`Lsn::ZERO`] if none).
    pub vouched_lsn: Lsn,
}

/// Scans one segment from `bytes` (the whole file) the way recovery scans each segment, without any I/O: for fuzzing and inspection tools. Never panics, whatever
/// `bytes` holds.
///
/// It judges the segment on its own: the header is not checked against a file name or
/// shard, and a damaged end is reported as [`SegmentEnd::Damaged`] whether or not it is a
/// torn tail (that depends on the other segments; compare with `vouched_lsn`). Errors: the
/// [`HeaderError`] of a header block that does not decode.
pub fn scan_segment_bytes(bytes: &[u8]) -> std::result::Result<SegmentSummary, HeaderError> {
    let header = SegmentHeader::decode(bytes)?;
    let (end, next_lsn, mut vouched_lsn) = scan_frames(bytes, &header, |_, _| true);
    if let SegmentEnd::Damaged { offset, .. } = end {
        let seed = segment_seed(header.shard.0, header.generation);
        vouched_lsn = vouched_lsn.max(markers_after(bytes, seed, offset as usize + 1));
    }
    Ok(SegmentSummary {
        record_count: next_lsn.0 - header.base_lsn.0,
        header,
        next_lsn,
        end,
        vouched_lsn,
    })
}

/// Walks the frames of one segment (`bytes` is the whole file) from its first block,
/// calling `visit` for each record in order. Returns how it ended, the next expected LSN and
/// the highest LSN vouched for by a marker in the contiguous part.
pub(crate) fn scan_frames(
    bytes: &[u8],
    header: &SegmentHeader,
    mut visit: impl FnMut(Lsn, std::ops::Range<usize>) -> bool,
) -> (SegmentEnd, Lsn, Lsn) {
    let seed = segment_seed(header.shard.0, header.generation);
    let mut expected = header.base_lsn;
    let mut vouched = Lsn::ZERO;
    let mut pos = BLOCK_BYTES;
    loop {
        let end = match step(bytes, pos, seed, expected) {
            Step::Record { lsn, payload, next } => {
                expected = lsn.next();
                if !visit(lsn, payload) {
                    return (SegmentEnd::Full, expected, vouched);
                }
                pos = next;
                continue;
            }
            Step::Skip { next, vouched: v } => {
                vouched = vouched.max(v.unwrap_or(Lsn::ZERO));
                pos = next;
                continue;
            }
            Step::Full => SegmentEnd::Full,
            Step::ZeroBlock if bytes[pos..].iter().all(|&b| b == 0) => SegmentEnd::Clean {
                write_pos: pos as u64,
            },
            Step::ZeroBlock => SegmentEnd::Damaged {
                offset: pos as u64,
                reason: "data after a hole (writes landed out of order)",
            },
            Step::Damaged(reason) => SegmentEnd::Damaged {
                offset: pos as u64,
                reason,
            },
        };
        return (end, expected, vouched);
    }
}

/// The highest durable LSN vouched for by any valid marker at a block boundary at or after
/// `from` (used past a damaged frame, where the contiguous scan cannot go).
fn markers_after(bytes: &[u8], seed: u64, from: usize) -> Lsn {
    let mut vouched = Lsn::ZERO;
    let mut pos = from.next_multiple_of(BLOCK_BYTES).max(BLOCK_BYTES);
    while pos + FRAME_HEADER_BYTES <= bytes.len() {
        if let Frame::Marker { durable_lsn } = decode(&bytes[pos..], seed) {
            vouched = vouched.max(durable_lsn);
        }
        pos += BLOCK_BYTES;
    }
    vouched
}

/// [`scan_frames`] through a window over the segment's file: the same walk, reading the
/// file a chunk at a time, so a scan holds one chunk whatever the segment size.
fn scan_window(
    win: &mut SegmentWindow,
    header: &SegmentHeader,
) -> std::io::Result<(SegmentEnd, Lsn, Lsn)> {
    let seed = segment_seed(header.shard.0, header.generation);
    let mut expected = header.base_lsn;
    let mut vouched = Lsn::ZERO;
    let mut pos = BLOCK_BYTES as u64;
    loop {
        let end = match win.step(pos, seed, expected)? {
            WalkStep::Record { lsn, next, .. } => {
                assert_eq!(lsn, expected, "the walk yields records in order");
                expected = lsn.next();
                pos = next;
                continue;
            }
            WalkStep::Skip { next, vouched: v } => {
                vouched = vouched.max(v.unwrap_or(Lsn::ZERO));
                pos = next;
                continue;
            }
            WalkStep::Full => SegmentEnd::Full,
            WalkStep::ZeroBlock if win.zeros_from(pos)? => SegmentEnd::Clean { write_pos: pos },
            WalkStep::ZeroBlock => SegmentEnd::Damaged {
                offset: pos,
                reason: "data after a hole (writes landed out of order)",
            },
            WalkStep::Damaged(reason) => SegmentEnd::Damaged {
                offset: pos,
                reason,
            },
        };
        return Ok((end, expected, vouched));
    }
}

/// Scans every segment of shard `shard` in `shard_dir` (see the module docs). Reads only.
///
/// Errors: [`Error::ForeignFile`] and [`Error::NewerFormat`] for files it must not touch,
/// [`Error::Corruption`] for damage below the vouched-for durable point or a segment that
/// belongs to another shard, [`Error::Io`] when a file cannot be read.
pub fn scan_shard(shard_dir: &Path, shard: ShardId) -> Result<ShardScan> {
    let files = list_segments(shard_dir)?;
    // A generation is never used twice: the next one is above every segment's and every
    // spare's (a spare still holds frames of the generation it is named after).
    let spares = list_spares(shard_dir)?;
    let newest = files.iter().chain(spares.iter()).max_by_key(|(g, _)| *g);
    let mut scan = ShardScan {
        next_lsn: Lsn(1),
        next_generation: match newest {
            None => 1,
            Some((g, path)) => g.checked_add(1).ok_or_else(|| Error::BadDirectory {
                path: path.clone(),
                detail: "segment generation u64::MAX leaves no next generation".into(),
            })?,
        },
        ..ShardScan::default()
    };
    let mut expected: Option<Lsn> = None;
    // A damaged end of the previous segment, forgiven if the next one continues from it.
    let mut pending: Option<Damage> = None;
    let mut damage: Option<Damage> = None;
    let mut vouched = Lsn::ZERO;
    let mut last_end_clean: Option<(u64, PathBuf, u64, u64)> = None;

    for (generation, path) in files {
        let read_error = |e| Error::io("reading segment", &path, e);
        let mut win = SegmentWindow::open(&path).map_err(read_error)?;
        let header = match SegmentHeader::decode(win.header_block().map_err(read_error)?) {
            Ok(h) => Some(h),
            Err(HeaderError::Foreign) => return Err(Error::ForeignFile { path }),
            Err(HeaderError::Newer(found)) => {
                return Err(Error::NewerFormat {
                    path,
                    found,
                    supported: FORMAT_VERSION,
                })
            }
            Err(HeaderError::Unused) => None,
            Err(HeaderError::Corrupt(reason)) => {
                if damage.is_none() {
                    damage = pending.take().or(Some(Damage {
                        path: path.clone(),
                        offset: 0,
                        lsn: expected.unwrap_or(Lsn(1)),
                        reason,
                        chain_len: scan.chain.len(),
                    }));
                }
                // The header cannot be trusted, so neither can a seed derived from it; use
                // the one the file name implies to look for vouching markers.
                let seed = segment_seed(shard.0, generation);
                let marked = win.markers_from(seed, BLOCK_BYTES as u64);
                vouched = vouched.max(marked.map_err(read_error)?);
                scan.remove.push(path);
                continue;
            }
        };
        let Some(header) = header else {
            // Prepared but never written: holds nothing.
            scan.remove.push(path);
            continue;
        };
        if header.shard != shard || header.generation != generation {
            return Err(Error::Corruption {
                shard,
                path,
                offset: 0,
                expected_lsn: expected.unwrap_or(Lsn(1)),
                detail: format!(
                    "segment header says shard {} generation {}, but the file is shard {} generation {}",
                    header.shard, header.generation, shard, generation
                ),
            });
        }
        let seed = segment_seed(shard.0, generation);
        if damage.is_some() {
            // Beyond a torn tail: only look for markers that would prove it was not torn.
            let marked = win.markers_from(seed, BLOCK_BYTES as u64);
            vouched = vouched.max(marked.map_err(read_error)?);
            scan.remove.push(path);
            continue;
        }
        if let Some(e) = expected {
            if header.base_lsn != e {
                let d = pending.take().unwrap_or(Damage {
                    path: path.clone(),
                    offset: 0,
                    lsn: e,
                    reason: "segment does not continue the previous one",
                    chain_len: scan.chain.len(),
                });
                damage = Some(d);
                let marked = win.markers_from(seed, BLOCK_BYTES as u64);
                vouched = vouched.max(marked.map_err(read_error)?);
                scan.remove.push(path);
                continue;
            }
            // The previous segment's damaged end (if any) is an abandoned tail.
            pending = None;
        }
        let (end, next, seg_vouched) = scan_window(&mut win, &header).map_err(read_error)?;
        vouched = vouched.max(seg_vouched);
        scan.record_count += next.0 - header.base_lsn.0;
        scan.chain.push(ChainSegment {
            generation,
            path: path.clone(),
            base_lsn: header.base_lsn,
        });
        expected = Some(next);
        last_end_clean = None;
        match end {
            SegmentEnd::Clean { write_pos } => {
                // Whole blocks only: a file cut to an unaligned length must not let a write
                // run past its end (the write position would overtake the segment size).
                let block = BLOCK_BYTES as u64;
                let whole_blocks = win.file_len() / block * block;
                last_end_clean = Some((generation, path, write_pos, whole_blocks));
            }
            SegmentEnd::Full => {}
            SegmentEnd::Damaged { offset, reason } => {
                let marked = win.markers_from(seed, offset + 1);
                vouched = vouched.max(marked.map_err(read_error)?);
                pending = Some(Damage {
                    path,
                    offset,
                    lsn: next,
                    reason,
                    chain_len: scan.chain.len(),
                });
            }
        }
    }

    let damage = damage.or(pending);
    scan.next_lsn = expected.unwrap_or(Lsn(1));
    if let Some(d) = damage {
        if d.lsn <= vouched {
            return Err(Error::Corruption {
                shard,
                path: d.path,
                offset: d.offset,
                expected_lsn: d.lsn,
                detail: format!(
                    "{}; a later marker shows lsn {} was durable, so this is damage to acknowledged data, not a torn write",
                    d.reason, vouched
                ),
            });
        }
        scan.chain.truncate(d.chain_len);
        scan.next_lsn = d.lsn;
        scan.torn_tail = Some(TornTail {
            path: d.path,
            offset: d.offset,
            lsn: d.lsn,
            reason: d.reason,
        });
        scan.resume = None;
    } else if let Some((generation, path, write_pos, segment_bytes)) = last_end_clean {
        scan.resume = Some(Resume {
            generation,
            path,
            write_pos,
            segment_bytes,
        });
    }
    Ok(scan)
}
