//! Replay: iterate a shard's records in LSN order, from any LSN up to a bound.
//!
//! [`LogReader`] uses plain `std::fs` reads: it is `Send`, needs no executor, and works on a
//! closed log directory ([`LogReader::open`]) as well as on a live shard
//! ([`crate::Shard::reader`], bounded by the shard's durable LSN, so it never returns a
//! record that is not durable). It holds one segment in memory at a time and hands out
//! payloads as [`Bytes`] slices of it, without copying.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::record::segment_seed;
use crate::recovery::{scan_shard, step, ChainSegment, Step};
use crate::segment::{shard_dir, SegmentHeader, BLOCK_BYTES};

/// One record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its payload, exactly as appended.
    pub payload: Bytes,
}

/// Why a segment could not be loaded.
enum LoadError {
    /// The file could not be read: [`Error::Io`] with its path (the data may be fine).
    Io(Error),
    /// The file reads, but does not hold the segment the chain expects: corruption.
    Damaged(String),
}

/// An iterator over one shard's records, `from ..= upto`, in order.
///
/// Yields `Err` (and then stops) when a segment cannot be read ([`Error::Io`], with the
/// file's path) or a frame that must exist (its LSN is at or below the bound) is damaged
/// ([`Error::Corruption`]).
pub struct LogReader {
    shard: ShardId,
    chain: Vec<ChainSegment>,
    seg_idx: usize,
    bytes: Bytes,
    path: PathBuf,
    seed: u64,
    pos: usize,
    expected: Lsn,
    from: Lsn,
    upto: Lsn,
    done: bool,
}

impl LogReader {
    /// Opens shard `shard` of the closed log in `dir` for reading from `from` to the last
    /// valid record (as recovery would find it; the directory is not modified).
    ///
    /// Errors: recovery's: [`Error::ForeignFile`] and [`Error::NewerFormat`] for files it must not touch,
    /// [`Error::Corruption`] for damage below the vouched-for durable point, [`Error::Io`]
    /// when a file cannot be read; and [`Error::Truncated`] when `from` is below
    /// the first stored record.
    pub fn open(dir: &Path, shard: ShardId, from: Lsn) -> Result<LogReader> {
        let scan = scan_shard(&shard_dir(dir, shard), shard)?;
        let upto = Lsn(scan.next_lsn.0 - 1);
        LogReader::new(shard, scan.chain, from, upto)
    }

    /// Opens shard `shard` of the closed log in `dir` for reading every stored record, from
    /// the first one truncation left. Errors as [`LogReader::open`], without
    /// [`Error::Truncated`].
    pub fn open_all(dir: &Path, shard: ShardId) -> Result<LogReader> {
        let scan = scan_shard(&shard_dir(dir, shard), shard)?;
        let first = scan.chain.first().map_or(Lsn(1), |s| s.base_lsn);
        let upto = Lsn(scan.next_lsn.0 - 1);
        LogReader::new(shard, scan.chain, first, upto)
    }

    pub(crate) fn new(
        shard: ShardId,
        chain: Vec<ChainSegment>,
        from: Lsn,
        upto: Lsn,
    ) -> Result<LogReader> {
        let from = from.max(Lsn(1));
        let first = chain.first().map_or(Lsn(1), |s| s.base_lsn);
        if from < first {
            return Err(Error::Truncated {
                shard,
                requested: from,
                first_available: first,
            });
        }
        // Start in the last segment whose base is at or below `from`.
        let seg_idx = chain.iter().rposition(|s| s.base_lsn <= from).unwrap_or(0);
        let expected = chain.get(seg_idx).map_or(Lsn(1), |s| s.base_lsn);
        Ok(LogReader {
            shard,
            done: chain.is_empty() || from > upto,
            chain,
            seg_idx,
            bytes: Bytes::new(),
            path: PathBuf::new(),
            seed: 0,
            pos: 0,
            expected,
            from,
            upto,
        })
    }

    /// The highest LSN this reader will return.
    pub fn upto(&self) -> Lsn {
        self.upto
    }

    fn corruption(&mut self, detail: String) -> Option<Result<Record>> {
        self.done = true;
        Some(Err(Error::Corruption {
            shard: self.shard,
            path: self.path.clone(),
            offset: self.pos as u64,
            expected_lsn: self.expected,
            detail,
        }))
    }

    /// Reads the current segment.
    fn load_segment(&mut self) -> Result<(), LoadError> {
        let seg = &self.chain[self.seg_idx];
        self.path = seg.path.clone();
        let data = std::fs::read(&seg.path)
            .map_err(|e| LoadError::Io(Error::io("reading segment", &seg.path, e)))?;
        let header = SegmentHeader::decode(&data)
            .map_err(|e| LoadError::Damaged(format!("segment header does not decode: {e:?}")))?;
        if header.base_lsn != self.expected {
            return Err(LoadError::Damaged(format!(
                "segment starts at lsn {} but lsn {} was expected",
                header.base_lsn, self.expected
            )));
        }
        self.seed = segment_seed(header.shard.0, header.generation);
        self.bytes = Bytes::from(data);
        self.pos = BLOCK_BYTES;
        Ok(())
    }

    /// Moves to the next segment when the current one ends at `expected`.
    fn next_segment(&mut self) -> bool {
        self.seg_idx += 1;
        self.bytes = Bytes::new();
        self.seg_idx < self.chain.len()
    }
}

impl Iterator for LogReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if self.done || self.expected > self.upto {
                self.done = true;
                return None;
            }
            if self.bytes.is_empty() {
                match self.load_segment() {
                    Ok(()) => {}
                    Err(LoadError::Damaged(detail)) => return self.corruption(detail),
                    Err(LoadError::Io(io)) => {
                        self.done = true;
                        return Some(Err(io));
                    }
                }
            }
            match step(&self.bytes, self.pos, self.seed, self.expected) {
                Step::Skip { next, .. } => self.pos = next,
                Step::Record { lsn, payload, next } => {
                    self.pos = next;
                    self.expected = lsn.next();
                    if lsn >= self.from {
                        let payload = self.bytes.slice(payload);
                        return Some(Ok(Record { lsn, payload }));
                    }
                }
                // The segment ends here (cleanly, or in an abandoned tail): the next one
                // must continue at `expected`.
                end => {
                    let continues = self
                        .chain
                        .get(self.seg_idx + 1)
                        .is_some_and(|s| s.base_lsn == self.expected);
                    if continues {
                        self.next_segment();
                        continue;
                    }
                    let what = match end {
                        Step::Damaged(reason) => reason,
                        _ => "the log ends early",
                    };
                    return self.corruption(format!(
                        "record {} should exist (bound {}), but {what}",
                        self.expected, self.upto
                    ));
                }
            }
        }
    }
}
