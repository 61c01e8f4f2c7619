//! Replay: iterate a shard's records in LSN order, from any LSN up to a bound.
//!
//! [`LogReader`] uses plain `std::fs` reads: it is `Send`, needs no executor, and works on a
//! closed log directory ([`LogReader::open`]) as well as on a live shard
//! ([`crate::Shard::reader`], bounded by the shard's durable LSN, so it never returns a
//! record that is not durable). It reads a segment in chunks of [`CHUNK_BYTES`](crate::format::CHUNK_BYTES) through a
//! window (see the `walk` module: buffered reads, and why), so its memory does not depend
//! on the segment size, and hands out payloads as [`Bytes`] slices of a chunk, without
//! copying.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::record::FrameKey;
use crate::recovery::{scan_shard, ChainSegment};
use crate::seek::Learner;
use crate::segment::{shard_dir, SegmentHeader, BLOCK_BYTES};
use crate::walk::{SegmentWindow, WalkStep};

/// One record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its payload, exactly as appended.
    pub payload: Bytes,
}

/// An iterator over one shard's records, `from ..= upto`, in order.
///
/// Yields `Err` (and then stops): [`Error::Io`] when a segment cannot be read,
/// [`Error::Corruption`] when a frame that must exist (its LSN is at or below the bound) is
/// damaged. Every record is verified as it is read (its checksum, seeded with the shard and
/// the segment's generation, and its LSN): this is where damage inside a sealed segment,
/// which opening does not read, is found. Memory: one chunk of [`CHUNK_BYTES`](crate::format::CHUNK_BYTES), or one frame when a frame is larger.
pub struct LogReader {
    shard: ShardId,
    chain: Vec<ChainSegment>,
    seg_idx: usize,
    /// The segment being read; `None` between segments.
    window: Option<SegmentWindow>,
    path: PathBuf,
    /// The current segment's checksum key.
    key: FrameKey,
    /// File offset of the next frame in the current segment.
    pos: u64,
    expected: Lsn,
    from: Lsn,
    upto: Lsn,
    done: bool,
    /// Where to begin in the first segment read, instead of its first frame: a batch's
    /// `(generation, first LSN, marker position)` (see [`LogReader::starting_at`]).
    start: Option<(u64, Lsn, u64)>,
    /// Notes the batch starts of older segments it walks from their start, for the shard
    /// it came from (see [`crate::seek`]).
    learner: Option<Learner>,
}

impl LogReader {
    /// Opens shard `shard` of the closed log in `dir` for reading from `from` to the last
    /// valid record (as recovery would find it; the directory is not modified).
    ///
    /// Finding the end reads what opening reads: every segment's header block and the
    /// newest segment or two. The reader then seeks to `from` through the segment headers:
    /// it starts in the last segment whose base LSN is at or below `from` and never reads an
    /// earlier one. Damage inside a sealed segment is reported when the iteration reaches it.
    ///
    /// Errors: recovery's: [`Error::ForeignFile`] and [`Error::NewerFormat`] for files it
    /// must not touch, [`Error::Corruption`] for damage below the vouched-for durable point
    /// in the newest segments or in a segment header, [`Error::Io`] when a file cannot be
    /// read; and [`Error::Truncated`] when `from` is below the first stored record.
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
            window: None,
            path: PathBuf::new(),
            key: FrameKey::from_seed(0),
            pos: 0,
            expected,
            from,
            upto,
            start: None,
            learner: None,
        })
    }

    /// Begins the first segment at a batch instead of its first frame: `start` is the
    /// segment's generation, the batch's first LSN (at or below the reader's start) and the
    /// file position of its marker, as the shard noted them when it sealed the batch. A
    /// hint for another segment, or past the start LSN, is ignored. Every frame read from
    /// there is verified as usual, so a wrong hint ends in [`Error::Corruption`], never in
    /// a wrong record.
    pub(crate) fn starting_at(mut self, start: Option<(u64, Lsn, u64)>) -> LogReader {
        self.start = start.filter(|&(_, lsn, pos)| {
            lsn <= self.from && pos >= BLOCK_BYTES as u64 && pos % BLOCK_BYTES as u64 == 0
        });
        self
    }

    /// Teaches `learner` the batch starts of the segments this reader walks from their
    /// first frame.
    pub(crate) fn learning(mut self, learner: Learner) -> LogReader {
        self.learner = Some(learner);
        self
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
            offset: self.pos,
            expected_lsn: self.expected,
            detail,
        }))
    }

    fn io_error(&mut self, e: std::io::Error) -> Option<Result<Record>> {
        self.done = true;
        Some(Err(Error::io("reading segment", self.path.clone(), e)))
    }

    /// Opens the current segment and checks its header. `Err(Ok(detail))`: the header is
    /// damaged or does not continue the log; `Err(Err(e))`: the file cannot be read.
    fn load_segment(
        &mut self,
    ) -> std::result::Result<(), std::result::Result<String, std::io::Error>> {
        let seg = &self.chain[self.seg_idx];
        self.path = seg.path.clone();
        self.pos = 0;
        let mut window = SegmentWindow::open(&seg.path).map_err(Err)?;
        let header = SegmentHeader::decode(window.header_block().map_err(Err)?)
            .map_err(|e| Ok(format!("segment header does not decode: {e:?}")))?;
        if header.base_lsn != self.expected {
            return Err(Ok(format!(
                "segment starts at lsn {} but lsn {} was expected",
                header.base_lsn, self.expected
            )));
        }
        self.key = FrameKey::new(header.shard.0, header.generation);
        self.pos = BLOCK_BYTES as u64;
        if let Some((generation, lsn, pos)) = self.start.take() {
            if generation == header.generation && lsn >= self.expected {
                self.pos = pos;
                self.expected = lsn;
            }
        }
        if let Some(learner) = &mut self.learner {
            learner.enter(header.generation, self.pos == BLOCK_BYTES as u64);
        }
        debug_assert_eq!(window.path(), self.path);
        self.window = Some(window);
        Ok(())
    }

    /// The segment ended at `expected`: the next one must continue there, or the log ends
    /// early (`damaged` says why, when the end was a bad frame).
    fn segment_ended(&mut self, damaged: Option<&'static str>) -> Option<Option<Result<Record>>> {
        let continues = self
            .chain
            .get(self.seg_idx + 1)
            .is_some_and(|s| s.base_lsn == self.expected);
        if continues {
            if let Some(learner) = &mut self.learner {
                learner.leave(damaged.is_none());
            }
            self.seg_idx += 1;
            self.window = None;
            return None;
        }
        let what = damaged.unwrap_or("the log ends early");
        Some(self.corruption(format!(
            "record {} should exist (bound {}), but {what}",
            self.expected, self.upto
        )))
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
            if self.window.is_none() {
                match self.load_segment() {
                    Ok(()) => {}
                    Err(Ok(detail)) => return self.corruption(detail),
                    Err(Err(e)) => return self.io_error(e),
                }
            }
            let window = self.window.as_mut().expect("a segment is loaded");
            let step = match window.step(self.pos, &self.key, self.expected) {
                Ok(step) => step,
                Err(e) => return self.io_error(e),
            };
            match step {
                WalkStep::Skip { next, vouched } => {
                    if let (Some(learner), Some(_)) = (&mut self.learner, vouched) {
                        learner.marker(self.pos, self.expected);
                    }
                    self.pos = next;
                }
                WalkStep::Record { lsn, payload, next } => {
                    assert_eq!(lsn, self.expected, "the walk yields records in order");
                    self.pos = next;
                    self.expected = lsn.next();
                    if lsn >= self.from {
                        return Some(Ok(Record { lsn, payload }));
                    }
                }
                // The segment ends here (cleanly, or in an abandoned tail): the next one
                // must continue at `expected`.
                WalkStep::Full | WalkStep::ZeroBlock => {
                    if let Some(out) = self.segment_ended(None) {
                        return out;
                    }
                }
                WalkStep::Damaged(reason) => {
                    if let Some(out) = self.segment_ended(Some(reason)) {
                        return out;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CpuPlacement, WalConfig};
    use crate::Shard;

    /// A start hint that is wrong (not where its LSN's batch begins) never yields a wrong
    /// record: the frames read from there fail their checks, and the reader says
    /// `Corruption`.
    #[test]
    fn a_wrong_start_hint_ends_in_corruption_never_in_a_wrong_record() {
        let d = tempfile::tempdir().unwrap();
        let cfg = WalConfig::builder(d.path())
            .shard_count(1)
            .placement(CpuPlacement::Unbound)
            .flush_buffer_bytes(64 << 10)
            .segment_bytes(1 << 20)
            .max_record_bytes(16 << 10)
            .build()
            .unwrap();
        let body = |lsn: u64| vec![lsn as u8; 1000];
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(cfg.io_memory_bytes())
            .make()
            .unwrap();
        ex.run(async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            for n in 1..=200u64 {
                let lsn = s.append(&body(n)).await.unwrap();
                if n % 10 == 0 {
                    s.commit(lsn).await.unwrap();
                }
            }
            s.close().await.unwrap();
        });
        let scan = scan_shard(&shard_dir(d.path(), ShardId(0)), ShardId(0)).unwrap();
        let (generation, upto) = (scan.chain[0].generation, Lsn(scan.next_lsn.0 - 1));
        assert!(upto >= Lsn(60));
        // 4096: the first batch's marker (its records start at LSN 1, not 50); 8192 and
        // 12288: inside the first batches' records, not at LSN 50's batch.
        for pos in [4096u64, 8192, 12288] {
            let reader = LogReader::new(ShardId(0), scan.chain.clone(), Lsn(60), upto)
                .unwrap()
                .starting_at(Some((generation, Lsn(50), pos)));
            let mut corruption = false;
            for item in reader {
                match item {
                    Ok(r) => assert_eq!(r.payload.as_ref(), body(r.lsn.0), "lsn {}", r.lsn),
                    Err(Error::Corruption { .. }) => corruption = true,
                    Err(e) => panic!("hint at {pos}: {e}"),
                }
            }
            assert!(corruption, "a wrong hint at {pos} went unnoticed");
        }
        // The same reader without a hint reads every record from LSN 60.
        let all: Vec<Record> = LogReader::new(ShardId(0), scan.chain, Lsn(60), upto)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(all.len() as u64, upto.0 - 59);
    }
}
