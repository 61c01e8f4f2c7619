//! Recovery: scan a shard's segments, verify the frames that may be torn, and decide where
//! the log ends.
//!
//! The scan is read-only and synchronous (plain `std::fs` reads, a chunk at a time through
//! the `walk` module's window, so it holds one chunk whatever the segment size), and readers
//! of a closed directory use it without an executor. [`scan_shard`] returns a
//! [`ShardScan`]: the chain of segments that hold the log, the next LSN, where writing may
//! resume, and which files hold nothing acknowledged and should be removed. The shard
//! applies it when it opens.
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
//!
//! # What opening reads
//! Every segment's header block (4 KiB), and frame by frame only the newest segments: going
//! back from the newest, until the markers of the segments walked so far vouch for every
//! record before the segment just walked (after a clean close the newest segment alone, its
//! final marker vouching for all; after a crash usually one, two when the crash hit a
//! rotation). A torn tail holds only records no marker vouches for, so it always lies in
//! the segments walked; damage in the older, sealed segments can only be
//! [`Error::Corruption`]. Those enter the chain from their headers and are verified by
//! whatever reads them: [`crate::LogReader`], [`crate::Shard::reader`], `shardwal verify`
//! report the damage when they reach it. The marker comparison is unchanged by this: a
//! marker in a sealed segment vouches for no more than the records before the next
//! segment's base LSN, so the markers of the walked segments decide every case the full
//! scan would. Opening therefore costs the headers plus a segment or two, whatever the size
//! of the log ([`ShardScan::bytes_read`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::record::{decode_with, Frame, FrameKey, FRAME_HEADER_BYTES};
use crate::segment::{
    list_segments, list_spares, HeaderError, SegmentHeader, BLOCK_BYTES, FORMAT_VERSION,
};
use crate::walk::{all_zero, step, SegmentWindow, Step, WalkStep};

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
    /// Records verified: those of the segments walked frame by frame (not of the leading
    /// segments a later marker vouches for, which the scan takes from their headers).
    pub record_count: u64,
    /// Bytes read from segment files, in bytes: every header block, and the segments
    /// walked frame by frame (what opening costs; tests check it stays bounded).
    pub bytes_read: u64,
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
        let key = FrameKey::new(header.shard.0, header.generation);
        vouched_lsn = vouched_lsn.max(markers_after(bytes, &key, offset as usize + 1));
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
    let key = FrameKey::new(header.shard.0, header.generation);
    let mut expected = header.base_lsn;
    let mut vouched = Lsn::ZERO;
    let mut pos = BLOCK_BYTES;
    loop {
        let end = match step(bytes, pos, &key, expected) {
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
            Step::ZeroBlock if all_zero(&bytes[pos..]) => SegmentEnd::Clean {
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
fn markers_after(bytes: &[u8], key: &FrameKey, from: usize) -> Lsn {
    let mut vouched = Lsn::ZERO;
    let mut pos = from.next_multiple_of(BLOCK_BYTES).max(BLOCK_BYTES);
    while pos + FRAME_HEADER_BYTES <= bytes.len() {
        if let Frame::Marker { durable_lsn } = decode_with(&bytes[pos..], key) {
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
    let key = FrameKey::new(header.shard.0, header.generation);
    let mut expected = header.base_lsn;
    let mut vouched = Lsn::ZERO;
    let mut pos = BLOCK_BYTES as u64;
    loop {
        let end = match win.step(pos, &key, expected)? {
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

/// One segment walked frame by frame ([`walk_segment`]).
#[derive(Clone, Debug)]
struct Walked {
    /// How its contiguous valid part ended.
    end: SegmentEnd,
    /// The LSN after its last valid record (its base LSN when it holds none).
    next: Lsn,
    /// The highest durable LSN its markers vouch for: in the contiguous part and, past a
    /// damaged frame, at every block boundary ([`Lsn::ZERO`] if none).
    vouched: Lsn,
    /// The file's length in bytes.
    file_len: u64,
}

/// Walks the frames of one segment whose header is `header` (see [`scan_window`]) and, when
/// the walk ends in a damaged frame, looks past it for markers that would prove the damage
/// is not a torn write.
fn walk_segment(win: &mut SegmentWindow, header: &SegmentHeader) -> std::io::Result<Walked> {
    let (end, next, mut vouched) = scan_window(win, header)?;
    assert!(next >= header.base_lsn, "the walk never goes back");
    if let SegmentEnd::Damaged { offset, .. } = end {
        let key = FrameKey::new(header.shard.0, header.generation);
        vouched = vouched.max(win.markers_from(&key, offset + 1)?);
    }
    Ok(Walked {
        end,
        next,
        vouched,
        file_len: win.file_len(),
    })
}

/// The leading segments of a shard that opening takes from their headers alone, and the
/// segments it already walked to learn that (see [`vouched_prefix`]).
#[derive(Default)]
struct Prefix {
    /// The leading segments whose every record a marker vouches for, oldest first.
    chain: Vec<ChainSegment>,
    /// The base LSN of the first segment after them (`None` when `chain` is empty).
    next_base: Option<Lsn>,
    /// Segments walked while looking for the voucher, by generation, oldest first.
    walked: Vec<(u64, SegmentHeader, Walked)>,
    /// Bytes read from segment files, in bytes.
    bytes_read: u64,
}

/// The headers of the leading run of `files` (oldest first) that decode, name `shard` and
/// their own generation, and have rising base LSNs (from 1 up). The first file that breaks
/// the run and every file after it are left to the full scan, which judges them.
///
/// Returns the headers and the bytes read (one block a file). Errors: [`Error::Io`].
fn trusted_headers(files: &[(u64, PathBuf)], shard: ShardId) -> Result<(Vec<SegmentHeader>, u64)> {
    let mut headers: Vec<SegmentHeader> = Vec::with_capacity(files.len());
    let mut bytes_read = 0;
    for (generation, path) in files {
        let read_error = |e| Error::io("reading segment header", path, e);
        let mut win = SegmentWindow::open(path).map_err(read_error)?;
        let decoded = SegmentHeader::decode(win.header_block().map_err(read_error)?);
        bytes_read += win.bytes_read();
        let Ok(h) = decoded else { break };
        let ordered = headers
            .last()
            .map_or(h.base_lsn.0 >= 1, |p| p.base_lsn < h.base_lsn);
        if h.shard != shard || h.generation != *generation || !ordered {
            break;
        }
        headers.push(h);
    }
    debug_assert!(headers.len() <= files.len());
    Ok((headers, bytes_read))
}

/// Finds the leading segments of `files` (oldest first) that opening need not read: those
/// whose every record a marker in a later segment vouches for.
///
/// A torn write holds only records that no marker vouches for (a marker records what was
/// durable when its write was sealed), so a torn tail can only lie after them, and damage
/// inside them can only be corruption, which whoever reads them reports. Segment `k` holds
/// the LSNs from its base LSN up to the next segment's base - 1. Going back from the newest
/// segment of the trusted run ([`trusted_headers`]), each segment is walked frame by frame
/// and adds its markers to the vouched LSN, until that LSN covers every record before the
/// segment just walked: after a clean close the newest segment alone (its final marker
/// vouches for all), after a crash usually one or two. An empty run means the full scan.
///
/// Errors: [`Error::Io`] when a file cannot be read.
fn vouched_prefix(files: &[(u64, PathBuf)], shard: ShardId) -> Result<Prefix> {
    let (headers, mut bytes_read) = trusted_headers(files, shard)?;
    let Some(mut k) = headers.len().checked_sub(1) else {
        return Ok(Prefix {
            bytes_read,
            ..Prefix::default()
        });
    };
    let mut vouched = Lsn::ZERO;
    let mut walked = Vec::new();
    loop {
        let (generation, path) = &files[k];
        let read_error = |e| Error::io("reading segment", path, e);
        let mut win = SegmentWindow::open(path).map_err(read_error)?;
        let w = walk_segment(&mut win, &headers[k]).map_err(read_error)?;
        bytes_read += win.bytes_read();
        vouched = vouched.max(w.vouched);
        walked.push((*generation, headers[k].clone(), w));
        if k == 0 || headers[k].base_lsn.0 - 1 <= vouched.0 {
            break;
        }
        k -= 1;
    }
    walked.reverse();
    let chain: Vec<ChainSegment> = files[..k]
        .iter()
        .zip(&headers)
        .map(|((generation, path), h)| ChainSegment {
            generation: *generation,
            path: path.clone(),
            base_lsn: h.base_lsn,
        })
        .collect();
    assert_eq!(
        chain.len(),
        k,
        "every segment before k has a trusted header"
    );
    Ok(Prefix {
        next_base: (k > 0).then(|| headers[k].base_lsn),
        chain,
        walked,
        bytes_read,
    })
}

/// The oldest-first pass over the segments that [`vouched_prefix`] did not take on trust:
/// it follows the chain frame by frame and decides where the log ends.
struct Pass {
    shard: ShardId,
    scan: ShardScan,
    /// The base LSN the next segment must have (`None` before the first one).
    expected: Option<Lsn>,
    /// A damaged end of the previous segment, forgiven if the next one continues from it.
    pending: Option<Damage>,
    /// The first damage that ends the chain.
    damage: Option<Damage>,
    /// The highest durable LSN any valid marker seen vouches for.
    vouched: Lsn,
    /// The last segment of the chain, when its tail is clean.
    last_end_clean: Option<Resume>,
}

impl Pass {
    /// Judges segment `generation` at `path` (`win` is open on it; `walked`: its header and
    /// walk, when [`vouched_prefix`] already did them).
    ///
    /// Errors: [`Error::ForeignFile`], [`Error::NewerFormat`], [`Error::Corruption`] for a
    /// segment of another shard or generation, [`Error::Io`].
    fn segment(
        &mut self,
        generation: u64,
        path: PathBuf,
        win: &mut SegmentWindow,
        walked: Option<(SegmentHeader, Walked)>,
    ) -> Result<()> {
        let read_error = |e| Error::io("reading segment", &path, e);
        let (header, walked) = match walked {
            Some((h, w)) => (h, Some(w)),
            None => match self.header(generation, &path, win)? {
                Some(h) => (h, None),
                None => {
                    // Prepared but never written, or a damaged header: holds nothing.
                    self.scan.remove.push(path);
                    return Ok(());
                }
            },
        };
        self.check_owner(&header, generation, &path)?;
        let key = FrameKey::new(self.shard.0, generation);
        if self.damage.is_some() {
            // Beyond a torn tail: only look for markers that would prove it was not torn.
            let marked = win.markers_from(&key, BLOCK_BYTES as u64);
            self.vouched = self.vouched.max(marked.map_err(read_error)?);
            self.scan.remove.push(path);
            return Ok(());
        }
        if let Some(e) = self.expected {
            if header.base_lsn != e {
                self.damage = Some(self.pending.take().unwrap_or(Damage {
                    path: path.clone(),
                    offset: 0,
                    lsn: e,
                    reason: "segment does not continue the previous one",
                    chain_len: self.scan.chain.len(),
                }));
                let marked = win.markers_from(&key, BLOCK_BYTES as u64);
                self.vouched = self.vouched.max(marked.map_err(read_error)?);
                self.scan.remove.push(path);
                return Ok(());
            }
            // The previous segment's damaged end (if any) is an abandoned tail.
            self.pending = None;
        }
        let w = match walked {
            Some(w) => w,
            None => walk_segment(win, &header).map_err(read_error)?,
        };
        self.chained(generation, path, &header, w);
        Ok(())
    }

    /// Decodes the header of segment `generation`: `None` when it holds nothing (unused,
    /// or damaged: then the damage, and markers that vouch past it, are noted).
    fn header(
        &mut self,
        generation: u64,
        path: &Path,
        win: &mut SegmentWindow,
    ) -> Result<Option<SegmentHeader>> {
        let read_error = |e| Error::io("reading segment", path, e);
        let path_buf = || path.to_path_buf();
        match SegmentHeader::decode(win.header_block().map_err(read_error)?) {
            Ok(h) => Ok(Some(h)),
            Err(HeaderError::Foreign) => Err(Error::ForeignFile { path: path_buf() }),
            Err(HeaderError::Newer(found)) => Err(Error::NewerFormat {
                path: path_buf(),
                found,
                supported: FORMAT_VERSION,
            }),
            Err(HeaderError::Unused) => Ok(None),
            Err(HeaderError::Corrupt(reason)) => {
                if self.damage.is_none() {
                    self.damage = self.pending.take().or(Some(Damage {
                        path: path_buf(),
                        offset: 0,
                        lsn: self.expected.unwrap_or(Lsn(1)),
                        reason,
                        chain_len: self.scan.chain.len(),
                    }));
                }
                // The header cannot be trusted, so neither can a seed derived from it; use
                // the one the file name implies to look for vouching markers.
                let key = FrameKey::new(self.shard.0, generation);
                let marked = win.markers_from(&key, BLOCK_BYTES as u64);
                self.vouched = self.vouched.max(marked.map_err(read_error)?);
                Ok(None)
            }
        }
    }

    /// [`Error::Corruption`] when `header` names another shard or generation than the file.
    fn check_owner(&self, header: &SegmentHeader, generation: u64, path: &Path) -> Result<()> {
        if header.shard == self.shard && header.generation == generation {
            return Ok(());
        }
        Err(Error::Corruption {
            shard: self.shard,
            path: path.to_path_buf(),
            offset: 0,
            expected_lsn: self.expected.unwrap_or(Lsn(1)),
            detail: format!(
                "segment header says shard {} generation {}, but the file is shard {} generation {}",
                header.shard, header.generation, self.shard, generation
            ),
        })
    }

    /// Adds a segment that continues the chain, walked (`w`), to the chain.
    fn chained(&mut self, generation: u64, path: PathBuf, header: &SegmentHeader, w: Walked) {
        assert!(self.damage.is_none() && w.next >= header.base_lsn);
        self.vouched = self.vouched.max(w.vouched);
        self.scan.record_count += w.next.0 - header.base_lsn.0;
        self.scan.chain.push(ChainSegment {
            generation,
            path: path.clone(),
            base_lsn: header.base_lsn,
        });
        self.expected = Some(w.next);
        self.last_end_clean = None;
        match w.end {
            SegmentEnd::Clean { write_pos } => {
                // Whole blocks only: a file cut to an unaligned length must not let a write
                // run past its end (the write position would overtake the segment size).
                let block = BLOCK_BYTES as u64;
                self.last_end_clean = Some(Resume {
                    generation,
                    path,
                    write_pos,
                    segment_bytes: w.file_len / block * block,
                });
            }
            SegmentEnd::Full => {}
            SegmentEnd::Damaged { offset, reason } => {
                self.pending = Some(Damage {
                    path,
                    offset,
                    lsn: w.next,
                    reason,
                    chain_len: self.scan.chain.len(),
                });
            }
        }
    }

    /// Where the log ends: a torn tail is cut, damage a marker vouches for is
    /// [`Error::Corruption`].
    fn finish(self) -> Result<ShardScan> {
        let mut scan = self.scan;
        let damage = self.damage.or(self.pending);
        scan.next_lsn = self.expected.unwrap_or(Lsn(1));
        let Some(d) = damage else {
            scan.resume = self.last_end_clean;
            return Ok(scan);
        };
        if d.lsn <= self.vouched {
            return Err(Error::Corruption {
                shard: self.shard,
                path: d.path,
                offset: d.offset,
                expected_lsn: d.lsn,
                detail: format!(
                    "{}; a later marker shows lsn {} was durable, so this is damage to acknowledged data, not a torn write",
                    d.reason, self.vouched
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
        Ok(scan)
    }
}

/// The generation for a shard's next new segment: above every segment's and every
/// spare's (a spare still holds frames of the generation it is named after), so a
/// generation is never used twice.
fn next_generation(files: &[(u64, PathBuf)], spares: &[(u64, PathBuf)]) -> Result<u64> {
    let newest = files.iter().chain(spares.iter()).max_by_key(|(g, _)| *g);
    match newest {
        None => Ok(1),
        Some((g, path)) => g.checked_add(1).ok_or_else(|| Error::BadDirectory {
            path: path.clone(),
            detail: "segment generation u64::MAX leaves no next generation".into(),
        }),
    }
}

/// Scans shard `shard` in `shard_dir` (see the module docs). Reads only: every segment's
/// header block, and frame by frame only the segments that can hold records no marker
/// vouches for (see "What opening reads").
///
/// Errors: [`Error::ForeignFile`] and [`Error::NewerFormat`] for files it must not touch,
/// [`Error::Corruption`] for damage below the vouched-for durable point in the segments it
/// walks or a segment that belongs to another shard, [`Error::Io`] when a file cannot be
/// read.
pub fn scan_shard(shard_dir: &Path, shard: ShardId) -> Result<ShardScan> {
    let files = list_segments(shard_dir)?;
    let spares = list_spares(shard_dir)?;
    let prefix = vouched_prefix(&files, shard)?;
    let mut pass = Pass {
        shard,
        scan: ShardScan {
            next_lsn: Lsn(1),
            next_generation: next_generation(&files, &spares)?,
            chain: prefix.chain,
            bytes_read: prefix.bytes_read,
            ..ShardScan::default()
        },
        expected: prefix.next_base,
        pending: None,
        damage: None,
        vouched: Lsn::ZERO,
        last_end_clean: None,
    };
    let mut walked = prefix.walked.into_iter().peekable();
    for (generation, path) in files.into_iter().skip(pass.scan.chain.len()) {
        let read_error = |e| Error::io("reading segment", &path, e);
        let mut win = SegmentWindow::open(&path).map_err(read_error)?;
        let done = walked
            .next_if(|(g, _, _)| *g == generation)
            .map(|(_, h, w)| (h, w));
        pass.segment(generation, path, &mut win, done)?;
        pass.scan.bytes_read += win.bytes_read();
    }
    assert!(walked.next().is_none(), "every walked segment was judged");
    pass.finish()
}
