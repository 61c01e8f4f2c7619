//! A bounded window over one segment file: the frame walk of [`super::step`] without
//! holding the segment in memory.
//!
//! The window holds one chunk of the file ([`CHUNK_BYTES`], 4 KiB-aligned), or one frame
//! when a frame is larger. Before each step it makes sure the window covers the frame
//! header at the position and, when the header announces a payload, the whole frame (at
//! most [`MAX_FRAME_BYTES`]: a length beyond that cannot be a valid frame, and the step
//! then finds the frame running past the data, as it would on the whole file). The step
//! itself runs on the window's bytes, so replay and recovery judge every frame the same way.
//!
//! # Buffered, not O_DIRECT
//! Reads are plain buffered `pread`s through `std::fs`:
//! * the reader stays `Send` and needs no executor (glommio's `DmaFile` is `!Send`), so it
//!   works on a closed directory, in another process, or on a thread of a tokio service;
//! * the kernel's readahead streams a sequential replay without us keeping several reads
//!   in flight, which O_DIRECT would need to reach the same throughput;
//! * the writer's O_DIRECT writes invalidate the page-cache ranges they cover, so a
//!   buffered read of a live segment sees what was written.
//!
//! Each refill allocates a fresh chunk, so records handed out earlier (slices of an old
//! chunk) stay valid and the old chunk is freed when the last of them is dropped.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{all_zero, step, Step};
use crate::lsn::Lsn;
use crate::record::{decode_with, frame_bytes, Frame, FrameKey, FRAME_HEADER_BYTES};
use crate::segment::BLOCK_BYTES;

/// Bytes a segment window reads at a time.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The largest frame a window grows to hold, in bytes: a frame never exceeds a flush
/// buffer, and the largest flush buffer is 64 MiB.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

const _: () = assert!(CHUNK_BYTES.is_multiple_of(BLOCK_BYTES) && CHUNK_BYTES <= MAX_FRAME_BYTES);

/// One step of the walk, at file offsets (see [`super::Step`]).
pub(crate) enum WalkStep {
    /// The expected record; its payload, and where the next frame starts.
    Record { lsn: Lsn, payload: Bytes, next: u64 },
    /// A marker (`vouched`: the durable LSN it records) or padding: go on at `next`.
    Skip { next: u64, vouched: Option<Lsn> },
    /// No frame fits before the end of the segment.
    Full,
    /// A zero header at a block boundary: no write started here.
    ZeroBlock,
    /// Not the frame that belongs here.
    Damaged(&'static str),
}

/// A chunk-sized window over one segment file.
pub(crate) struct SegmentWindow {
    file: File,
    path: PathBuf,
    file_len: u64,
    /// File offset of `bytes[0]`; a multiple of [`BLOCK_BYTES`].
    base: u64,
    bytes: Bytes,
    /// Bytes read from the file so far (every refill counts in full).
    bytes_read: u64,
}

impl SegmentWindow {
    /// Opens `path` for reading; the window is empty until the first read.
    pub fn open(path: &Path) -> std::io::Result<SegmentWindow> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        Ok(SegmentWindow {
            file,
            path: path.to_path_buf(),
            file_len,
            base: 0,
            bytes: Bytes::new(),
            bytes_read: 0,
        })
    }

    /// Bytes read from the file since it was opened, in bytes (what opening a log costs,
    /// for tests and the scan's report).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The segment's first block (its header), or fewer bytes if the file is shorter.
    /// Reads that one block only, so that looking at every segment's header costs 4 KiB a
    /// segment (the frame walk after it reads on in chunks).
    pub fn header_block(&mut self) -> std::io::Result<&[u8]> {
        self.fill(0, BLOCK_BYTES, BLOCK_BYTES)?;
        let n = self.bytes.len().min(BLOCK_BYTES);
        Ok(&self.bytes[..n])
    }

    /// Makes the window hold `[pos, pos + len)`, cut at the end of the file.
    fn cover(&mut self, pos: u64, len: usize) -> std::io::Result<()> {
        self.fill(pos, len, CHUNK_BYTES)
    }

    /// Makes the window hold `[pos, pos + len)`, cut at the end of the file, reading at
    /// least `min_read` bytes (cut at the end of the file) when it must read.
    fn fill(&mut self, pos: u64, len: usize, min_read: usize) -> std::io::Result<()> {
        let end = (pos + len as u64).min(self.file_len);
        let window_end = self.base + self.bytes.len() as u64;
        if pos >= self.base && end <= window_end {
            return Ok(());
        }
        let base = pos / BLOCK_BYTES as u64 * BLOCK_BYTES as u64;
        let want = ((end - base) as usize).max(min_read);
        let read = want.min(self.file_len.saturating_sub(base) as usize);
        let mut chunk = vec![0u8; read];
        self.file.read_exact_at(&mut chunk, base)?;
        self.bytes_read += read as u64;
        self.base = base;
        self.bytes = Bytes::from(chunk);
        debug_assert!(self.base <= pos && end <= self.base + self.bytes.len() as u64);
        Ok(())
    }

    /// Whether every byte from `pos` to the end of the file is zero (reads the rest of the
    /// file, a chunk at a time).
    pub fn zeros_from(&mut self, mut pos: u64) -> std::io::Result<bool> {
        while pos < self.file_len {
            self.cover(pos, CHUNK_BYTES)?;
            let off = (pos - self.base) as usize;
            if !all_zero(&self.bytes[off..]) {
                return Ok(false);
            }
            pos = self.base + self.bytes.len() as u64;
        }
        Ok(true)
    }

    /// The highest durable LSN vouched for by a valid marker at any block boundary at or
    /// after `from` ([`Lsn::ZERO`] if none). Reads the rest of the file, a chunk at a time.
    pub fn markers_from(&mut self, key: &FrameKey, from: u64) -> std::io::Result<Lsn> {
        let block = BLOCK_BYTES as u64;
        let mut vouched = Lsn::ZERO;
        let mut pos = from.next_multiple_of(block).max(block);
        while pos + FRAME_HEADER_BYTES as u64 <= self.file_len {
            self.cover(pos, CHUNK_BYTES)?;
            let off = (pos - self.base) as usize;
            if let Frame::Marker { durable_lsn } = decode_with(&self.bytes[off..], key) {
                vouched = vouched.max(durable_lsn);
            }
            pos += block;
        }
        Ok(vouched)
    }

    /// Decodes the frame at file offset `pos` (checksums seeded with `seed`), where the
    /// record `expected` should come next.
    ///
    /// Errors: a read of the file failed.
    pub fn step(&mut self, pos: u64, key: &FrameKey, expected: Lsn) -> std::io::Result<WalkStep> {
        assert!(
            pos >= BLOCK_BYTES as u64,
            "frames start after the header block"
        );
        self.cover(pos, FRAME_HEADER_BYTES)?;
        let off = (pos - self.base) as usize;
        if let Some(h) = self.bytes.get(off..off + FRAME_HEADER_BYTES) {
            let len = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) as usize;
            let frame = frame_bytes(len);
            if frame <= MAX_FRAME_BYTES {
                self.cover(pos, frame)?;
            }
        }
        let off = (pos - self.base) as usize;
        let base = self.base;
        Ok(match step(&self.bytes, off, key, expected) {
            Step::Record { lsn, payload, next } => WalkStep::Record {
                lsn,
                payload: self.bytes.slice(payload),
                next: base + next as u64,
            },
            Step::Skip { next, vouched } => WalkStep::Skip {
                next: base + next as u64,
                vouched,
            },
            Step::Full => WalkStep::Full,
            Step::ZeroBlock => WalkStep::ZeroBlock,
            Step::Damaged(reason) => WalkStep::Damaged(reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_marker, encode_record, segment_seed};

    /// A segment file: a header block, then `records` (LSN 1, 2, ...) in writes that each
    /// start with a marker at a 4 KiB boundary.
    fn segment(records: &[Vec<u8>], seed: u64) -> Vec<u8> {
        let mut out = vec![0xEEu8; BLOCK_BYTES];
        for (lsn, r) in (1u64..).zip(records) {
            let start = out.len();
            out.resize(start + FRAME_HEADER_BYTES, 0);
            encode_marker(&mut out[start..], seed, Lsn(lsn - 1));
            let at = out.len();
            out.resize(at + frame_bytes(r.len()), 0);
            encode_record(&mut out[at..], seed, Lsn(lsn), r);
            out.resize(out.len().next_multiple_of(BLOCK_BYTES), 0);
        }
        out.resize(out.len() + BLOCK_BYTES, 0);
        out
    }

    /// Walks a file through a window; returns the records and how it ended.
    fn walk(path: &Path, seed: u64) -> (Vec<(Lsn, Vec<u8>)>, Option<&'static str>) {
        let mut w = SegmentWindow::open(path).unwrap();
        let (mut pos, mut expected, mut out) = (BLOCK_BYTES as u64, Lsn(1), Vec::new());
        loop {
            match w.step(pos, &FrameKey::from_seed(seed), expected).unwrap() {
                WalkStep::Record { lsn, payload, next } => {
                    out.push((lsn, payload.to_vec()));
                    expected = lsn.next();
                    pos = next;
                }
                WalkStep::Skip { next, .. } => pos = next,
                WalkStep::Full | WalkStep::ZeroBlock => return (out, None),
                WalkStep::Damaged(reason) => return (out, Some(reason)),
            }
            // A chunk, or the largest frame (3 MiB) from the block it starts in.
            let bound = CHUNK_BYTES.max((3 << 20) + 2 * BLOCK_BYTES);
            assert!(w.bytes.len() <= bound, "the window stays bounded");
        }
    }

    #[test]
    fn records_across_chunk_boundaries_and_larger_than_a_chunk_read_back() {
        let seed = segment_seed(0, 1);
        // Small records, then one of 3 MiB (larger than a chunk), then small ones again:
        // frames straddle chunk boundaries.
        let mut records: Vec<Vec<u8>> =
            (0..600).map(|i| vec![i as u8; 1 + i * 13 % 5000]).collect();
        records.insert(300, vec![0x5A; 3 << 20]);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("seg");
        std::fs::write(&path, segment(&records, seed)).unwrap();
        let (read, end) = walk(&path, seed);
        assert_eq!(end, None);
        assert_eq!(read.len(), records.len());
        for (i, (lsn, p)) in read.iter().enumerate() {
            assert_eq!(*lsn, Lsn(i as u64 + 1));
            assert_eq!(p, &records[i]);
        }
    }

    #[test]
    fn damage_past_a_chunk_is_reported_like_on_the_whole_file() {
        let seed = segment_seed(0, 1);
        let records: Vec<Vec<u8>> = (0..400).map(|i| vec![i as u8; 3000]).collect();
        let mut bytes = segment(&records, seed);
        // Flip a payload byte of record 300 (each record's write is 4 KiB past the header).
        let at = BLOCK_BYTES * 300 + 2 * FRAME_HEADER_BYTES + 10;
        bytes[at] ^= 1;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("seg");
        std::fs::write(&path, &bytes).unwrap();
        let (read, end) = walk(&path, seed);
        assert_eq!(read.len(), 299);
        assert_eq!(end, Some("record checksum mismatch"));
        // A header that claims a payload far beyond any frame: damaged, nothing huge read.
        let mut bytes = segment(&records[..2], seed);
        let at = BLOCK_BYTES * 2 + FRAME_HEADER_BYTES + 8;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (read, end) = walk(&path, seed);
        assert_eq!(read.len(), 1);
        assert!(end.is_some());
    }
}
