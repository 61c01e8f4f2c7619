//! Segment files: naming, the header block, and preparing the next segment ahead of need.
//!
//! Each shard keeps its segments in `<dir>/shard-NNNN/`, one file per generation, named
//! `GGGGGGGGGGGGGGGGGGGG.seg` (the generation in 20 decimal digits so names sort in order).
//! A generation is never reused within a shard, and it seeds every frame checksum in the
//! file, so stale bytes of a removed file can never verify in a new one.
//!
//! A new segment is prepared before it is needed by creating it, reserving its blocks with
//! `fallocate` and fsyncing the directory: three metadata operations, a few milliseconds,
//! no data written. Its blocks read as zeros but are *unwritten extents*, whose first write
//! costs the next fdatasync of the file a journal commit; the flusher therefore zeroes the
//! prepared segment in the background, one piece at a time, and the active one ahead of
//! the write head while the shard is quiet (the `zero_ahead` module), so that records land
//! on really written blocks. The small first segment of a fresh shard is zeroed by
//! `Shard::open` itself ([`first_segment_bytes`]), and each new file after it is twice the
//! size of the active one ([`next_segment_bytes`]). (Before issue 12 the whole file was
//! written full of zeros and fdatasynced first: 64 MiB of writes in front of the first
//! commit and in front of every fdatasync while it ran.) Its first 4 KiB block holds the
//! header; it is written together with the segment's first records, so a prepared but
//! unused segment has a zero header block.
//!
//! # Recycling
//! Zeroing ahead costs as many bytes of writes as the segment will hold. So when truncation
//! drops whole segments, up to `WalConfig::recycled_segment_count` of them are kept as
//! **spares**: renamed to `GGGGGGGGGGGGGGGGGGGG.spare` (the generation they had), which no
//! scan ever reads as a segment. Preparing a segment then takes a spare instead
//! (`prepare_recycled`): zero its header block, rename it to the new generation's `.seg`
//! name, fsync the directory. Its blocks are really written already, so the writes into it are
//! overwrites as fast as into a zero-filled file. The rest of the file still holds the old
//! generation's frames: their checksums are seeded with the old generation and never verify
//! under the new one, so recovery sees them exactly like a torn tail (the log ends before
//! them; writing resumes in a fresh segment), never as records and never as corruption.
//!
//! That needs one rule: **a generation is never used twice**, even across crashes, and a
//! file only ever moves to a higher generation. The next generation is above every `.seg`
//! *and* `.spare` name in the directory, and a file's name is always at least the newest
//! generation whose bytes it holds (a segment becomes a spare under its own name; a spare
//! becomes a segment under a new, higher name).
//!
//! Header block layout (little endian; the rest of the block is zero):
//!
//! ```text
//! offset size field
//!      0    8 magic            b"SHARDWAL"
//!      8    4 format_version   1
//!     12    4 shard_id
//!     16    8 generation       equals the number in the file name
//!     24    8 base_lsn         LSN of the first record in this segment
//!     32    8 segment_bytes    file size when prepared
//!     40   16 reserved         zero
//!     56    8 checksum         xxh3-64 of bytes 0..56
//! ```

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaBuffer;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::storage::{Storage, StorageFile};

/// The unit of alignment for every write and every write position: 4 KiB.
pub const BLOCK_BYTES: usize = 4096;
/// The segment format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The magic number at the start of every segment.
pub const MAGIC: [u8; 8] = *b"SHARDWAL";
const HEADER_FIELDS_BYTES: usize = 64;

/// The decoded header block of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The shard that owns the segment.
    pub shard: ShardId,
    /// The segment's generation (also its file name).
    pub generation: u64,
    /// The LSN of the first record the segment holds.
    pub base_lsn: Lsn,
    /// The file size when the segment was prepared, in bytes.
    pub segment_bytes: u64,
}

/// Why a header block did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The block is all zero: the segment was prepared but never written to.
    Unused,
    /// The magic number is wrong: not a shardwal file (or a torn first write).
    Foreign,
    /// Written by a newer format version.
    Newer(u32),
    /// Magic is right but the checksum or a field is not.
    Corrupt(&'static str),
}

impl SegmentHeader {
    /// Writes the header into the first 64 bytes of `dst` and zeroes the rest of the block.
    pub fn encode(&self, dst: &mut [u8]) {
        let dst = &mut dst[..BLOCK_BYTES];
        dst.fill(0);
        dst[0..8].copy_from_slice(&MAGIC);
        dst[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        dst[12..16].copy_from_slice(&self.shard.0.to_le_bytes());
        dst[16..24].copy_from_slice(&self.generation.to_le_bytes());
        dst[24..32].copy_from_slice(&self.base_lsn.0.to_le_bytes());
        dst[32..40].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let sum = xxh3_64(&dst[0..56]);
        dst[56..64].copy_from_slice(&sum.to_le_bytes());
    }

    /// Decodes a header block. Never panics, whatever `src` holds.
    pub fn decode(src: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if src.len() < BLOCK_BYTES {
            return if src.iter().all(|&b| b == 0) {
                Err(HeaderError::Unused)
            } else {
                Err(HeaderError::Corrupt("header block is shorter than 4 KiB"))
            };
        }
        let src = &src[..BLOCK_BYTES];
        if src[..HEADER_FIELDS_BYTES].iter().all(|&b| b == 0) {
            return Err(HeaderError::Unused);
        }
        if src[0..8] != MAGIC {
            return Err(HeaderError::Foreign);
        }
        let u32_at = |o: usize| u32::from_le_bytes(src[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(src[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version > FORMAT_VERSION {
            return Err(HeaderError::Newer(version));
        }
        if xxh3_64(&src[0..56]) != u64_at(56) {
            return Err(HeaderError::Corrupt("header checksum mismatch"));
        }
        if version == 0 {
            return Err(HeaderError::Corrupt("format version 0"));
        }
        if src[40..56].iter().any(|&b| b != 0) {
            return Err(HeaderError::Corrupt("reserved header bytes are not zero"));
        }
        if u64_at(24) == 0 {
            // LSNs start at 1: a base of 0 would make the log's end LSN underflow.
            return Err(HeaderError::Corrupt("base lsn 0"));
        }
        Ok(SegmentHeader {
            shard: ShardId(u32_at(12)),
            generation: u64_at(16),
            base_lsn: Lsn(u64_at(24)),
            segment_bytes: u64_at(32),
        })
    }
}

/// The directory that holds one shard's segments.
pub fn shard_dir(dir: &Path, shard: ShardId) -> PathBuf {
    dir.join(format!("shard-{:04}", shard.0))
}

/// The path of a segment file.
pub fn segment_path(shard_dir: &Path, generation: u64) -> PathBuf {
    shard_dir.join(format!("{generation:020}.seg"))
}

/// The path of a spare (a retired segment kept for recycling) that last held `generation`.
pub fn spare_path(shard_dir: &Path, generation: u64) -> PathBuf {
    shard_dir.join(format!("{generation:020}.spare"))
}

/// Segment files of a shard directory as `(generation, path)`, oldest first. Other files are
/// ignored; a missing directory is an empty list.
pub fn list_segments(shard_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    list_with_suffix(shard_dir, ".seg")
}

/// Spare files (see the module docs) of a shard directory as `(generation, path)`, oldest
/// first; a missing directory is an empty list.
pub fn list_spares(shard_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    list_with_suffix(shard_dir, ".spare")
}

/// The shards of the log in `dir` that have a directory (`shard-NNNN`, exactly as
/// [`shard_dir`] names it), in order; a missing `dir` is an empty list.
///
/// Errors: [`Error::Io`] when `dir` cannot be listed.
pub fn list_shards(dir: &Path) -> Result<Vec<ShardId>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing log directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing log directory", dir, e))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("shard-")) else {
            continue;
        };
        let Ok(id) = n.parse::<u32>() else { continue };
        // `shard-7` or `shard-00007` are not ours: only the exact name counts.
        if shard_dir(dir, ShardId(id)) == entry.path() && entry.path().is_dir() {
            out.push(ShardId(id));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The shard count of the closed log in `dir`, from the directory alone: one more than
/// the highest shard directory (every shard creates its directory when it first opens).
/// For a live log, [`crate::HeaderView::shard_count`] reads it from the shared header.
///
/// Errors: [`Error::Io`] when `dir` cannot be listed; [`Error::BadDirectory`] when it holds
/// no shard directory or does not exist (it is not a shardwal log, or was never opened).
pub fn shard_count(dir: &Path) -> Result<u32> {
    let Some(highest) = list_shards(dir)?.pop() else {
        return Err(Error::BadDirectory {
            path: dir.to_path_buf(),
            detail:
                "it holds no shard directory (shard-NNNN): not a shardwal log, or one never opened"
                    .into(),
        });
    };
    Ok(highest.0 + 1)
}

fn list_with_suffix(shard_dir: &Path, suffix: &str) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(shard_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing shard directory", shard_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing shard directory", shard_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(generation) = stem.parse::<u64>() {
                out.push((generation, entry.path()));
            }
        }
    }
    out.sort_unstable_by_key(|(g, _)| *g);
    Ok(out)
}

/// A segment file whose name is durable and whose blocks are reserved, waiting to become
/// active.
pub(crate) struct PreparedSegment {
    pub generation: u64,
    pub path: PathBuf,
    pub file: Rc<dyn StorageFile>,
    pub segment_bytes: u64,
    /// Bytes from the start of the file known to be really written (zeros or old frames):
    /// 0 for a new file, `segment_bytes` for a recycled one.
    pub zeroed_bytes: u64,
    /// Made from a spare (`prepare_recycled`) rather than a new file.
    pub recycled: bool,
}

/// Creates segment `generation`, reserves `segment_bytes` for it (`fallocate`, so the file
/// has its full size and later writes cannot run out of space) and fsyncs the shard
/// directory, so that the file's name is durable before any record is acknowledged from
/// it. Writes no data and does not fdatasync the file: its length becomes durable with the
/// first fdatasync after a write into it, and until then recovery reads a shorter or empty
/// file (a prepared but unused segment) the same way.
///
/// Crash points: after the create or the allocation, before the directory fsync, the file
/// may vanish or survive, empty or at any length, all zeros: recovery sees an unused
/// segment and keeps it as a spare (when it has its full length) or removes it.
///
/// Errors: any I/O error of the create, the allocation (`ENOSPC` when the file system
/// cannot hold the segment) or the directory fsync; the caller fails the shard.
pub(crate) async fn prepare_segment(
    storage: &dyn Storage,
    shard_dir: &Path,
    generation: u64,
    segment_bytes: u64,
) -> std::io::Result<PreparedSegment> {
    debug_assert!(segment_bytes.is_multiple_of(BLOCK_BYTES as u64));
    let path = segment_path(shard_dir, generation);
    let file = storage.create(&path).await?;
    file.allocate(segment_bytes).await?;
    storage.sync_dir(shard_dir).await?;
    Ok(PreparedSegment {
        generation,
        path,
        file,
        segment_bytes,
        zeroed_bytes: 0,
        recycled: false,
    })
}

/// Zeroes the first `limit_bytes` (at most) of a new segment `p` (a recycled one is written
/// through already) and fdatasyncs it, before any record goes in: `zeros` a piece at a
/// time, all pieces at once, then `zero_block`s for a tail shorter than a piece.
/// `Shard::open` does this to the first segment of a fresh shard (2 MiB by default: eight
/// writes of 256 KiB, 2-3 ms on the project's machine), so that its records neither convert
/// extents (every commit's fdatasync would commit metadata) nor wait behind pieces the
/// flusher zeroes ahead of them.
///
/// Crash points: the file holds zeros only, header block included, whether or not any of
/// these writes reached the disk: recovery sees a prepared, unused segment, as right after
/// [`prepare_segment`].
///
/// Errors: any write that fails or falls short (`WriteZero`), or the fdatasync.
pub(crate) async fn zero_prefix(
    p: &mut PreparedSegment,
    limit_bytes: u64,
    zeros: &Rc<DmaBuffer>,
    zero_block: &Rc<DmaBuffer>,
) -> std::io::Result<()> {
    if p.recycled {
        assert_eq!(
            p.zeroed_bytes, p.segment_bytes,
            "a spare is written through"
        );
        return Ok(());
    }
    let (piece, block) = (zeros.len() as u64, zero_block.len() as u64);
    let bytes = p.segment_bytes.min(limit_bytes);
    let pieces = bytes / piece;
    let tail_blocks = (bytes - pieces * piece) / block;
    assert_eq!(pieces * piece + tail_blocks * block, bytes);
    let writes = (0..pieces)
        .map(|i| (zeros, i * piece))
        .chain((0..tail_blocks).map(|i| (zero_block, pieces * piece + i * block)))
        .map(|(buf, pos)| {
            let file = p.file.clone();
            async move {
                let n = file.write_at(buf.clone(), pos).await?;
                whole_write(n, buf.len(), "zeroing a new segment")
            }
        });
    for result in futures::future::join_all(writes).await {
        result?;
    }
    p.file.fdatasync().await?;
    p.zeroed_bytes = bytes;
    Ok(())
}

/// The most bytes a segment that a shard starts at open is given (see
/// [`first_segment_bytes`]).
pub const FIRST_SEGMENT_MAX_BYTES: u64 = 2 << 20;

/// The size of a new segment that `Shard::open` creates (a fresh shard, or after a torn
/// tail): `segment_bytes`, but at most [`FIRST_SEGMENT_MAX_BYTES`] (and at least two flush
/// buffers). Opening zeroes it whole before it returns (a few milliseconds for 2 MiB), so
/// records land on written blocks from the first commit on; keeping it small keeps that
/// short, and the segments after it grow ([`next_segment_bytes`]).
pub fn first_segment_bytes(segment_bytes: u64, flush_buffer_bytes: usize) -> u64 {
    let floor = 2 * flush_buffer_bytes as u64;
    let bytes = segment_bytes.min(FIRST_SEGMENT_MAX_BYTES.max(floor));
    debug_assert!(bytes.is_multiple_of(BLOCK_BYTES as u64));
    bytes
}

/// The size of a new file prepared while a segment of `active_bytes` is active: twice that,
/// at most `segment_bytes` (a recycled spare always has `segment_bytes`). The flusher zeroes
/// a prepared segment in step with the active one's fill (`zero_ahead`), so a successor
/// twice as large is zeroed at twice the record rate. A full-size successor of an 8 MiB
/// first segment took eight times the record rate, in a burst of zero writes that met the
/// commits of a run's first half second (`docs/writepath.md`).
pub fn next_segment_bytes(active_bytes: u64, segment_bytes: u64) -> u64 {
    let bytes = segment_bytes.min(active_bytes.saturating_mul(2));
    assert!(bytes > 0 && bytes.is_multiple_of(BLOCK_BYTES as u64));
    bytes
}

/// `Ok` when a write wrote all `expected` bytes; a short write is an error (`WriteZero`)
/// that fails the shard like any other.
fn whole_write(written: usize, expected: usize, doing: &str) -> std::io::Result<()> {
    if written == expected {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        format!("short write while {doing}: {written} of {expected} bytes"),
    ))
}

/// A spare file waiting to be recycled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spare {
    /// The generation it last held (its name).
    pub generation: u64,
    /// Its path (`GGGG.spare`).
    pub path: PathBuf,
}

/// Turns `spare` into the prepared segment `generation` (which must be above every name in
/// the directory): zeroes its header block with `zero_block` (a zeroed 4 KiB DMA buffer),
/// fdatasyncs, renames it to the segment's name and fsyncs the directory. The file must be
/// `segment_bytes` long and really written (it was a segment). A crash at any point leaves
/// nothing recovery could read as records:
///
/// 1. before or during the header write: the file is still named `.spare`, which no scan
///    reads; the next open keeps it as a spare or removes it;
/// 2. after the fdatasync, before the rename: a spare with a zero header block (same);
/// 3. after the rename, before the directory fsync: the file is named either way; under the
///    new `.seg` name its header block is zero (made durable in step 2, before the rename),
///    so recovery sees a prepared but unused segment and turns it back into a spare;
/// 4. after the directory fsync: a prepared segment, as if zero-filled, whose blocks past
///    the header hold old-generation frames that never verify under the new generation.
///
/// Errors: any I/O error of the open, write, fdatasync, rename or directory fsync (the
/// caller fails the shard).
pub(crate) async fn prepare_recycled(
    storage: &dyn Storage,
    shard_dir: &Path,
    spare: &Spare,
    generation: u64,
    segment_bytes: u64,
    zero_block: &Rc<DmaBuffer>,
) -> std::io::Result<PreparedSegment> {
    debug_assert!(generation > spare.generation);
    // Crash point 1: nothing changed yet, or a torn header write in a file named `.spare`.
    let file = storage.open(&spare.path).await?;
    let n = file.write_at(zero_block.clone(), 0).await?;
    whole_write(n, zero_block.len(), "clearing a recycled segment's header")?;
    file.fdatasync().await?;
    // Crash point 2: a spare whose header block is durably zero.
    let path = segment_path(shard_dir, generation);
    storage.rename(&spare.path, &path).await?;
    // Crash point 3: either name may survive; both hold a zero header block.
    storage.sync_dir(shard_dir).await?;
    // Crash point 4: a prepared, unused segment of the new generation.
    Ok(PreparedSegment {
        generation,
        path,
        file,
        segment_bytes,
        zeroed_bytes: segment_bytes,
        recycled: true,
    })
}

/// Prepares segment `generation` from `spare` when there is one (`prepare_recycled`),
/// otherwise as a new reserved file ([`prepare_segment`]). Errors: theirs.
pub(crate) async fn prepare_next(
    storage: &dyn Storage,
    shard_dir: &Path,
    spare: Option<Spare>,
    generation: u64,
    segment_bytes: u64,
    zero_block: &Rc<DmaBuffer>,
) -> std::io::Result<PreparedSegment> {
    match spare {
        Some(s) => {
            prepare_recycled(
                storage,
                shard_dir,
                &s,
                generation,
                segment_bytes,
                zero_block,
            )
            .await
        }
        None => prepare_segment(storage, shard_dir, generation, segment_bytes).await,
    }
}

/// The generation a `.seg` or `.spare` file name carries.
pub(crate) fn generation_of(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            shard: ShardId(3),
            generation: 17,
            base_lsn: Lsn(1000),
            segment_bytes: 1 << 20,
        }
    }

    #[test]
    fn header_round_trips() {
        let mut b = vec![0xEEu8; BLOCK_BYTES];
        header().encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(header()));
    }

    #[test]
    fn header_errors_are_distinct() {
        assert_eq!(
            SegmentHeader::decode(&[0u8; BLOCK_BYTES]),
            Err(HeaderError::Unused)
        );
        let mut b = vec![0u8; BLOCK_BYTES];
        header().encode(&mut b);
        let mut foreign = b.clone();
        foreign[0] = b'X';
        assert_eq!(SegmentHeader::decode(&foreign), Err(HeaderError::Foreign));
        let mut newer = b.clone();
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&newer), Err(HeaderError::Newer(2)));
        let mut corrupt = b.clone();
        corrupt[30] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&corrupt),
            Err(HeaderError::Corrupt(_))
        ));
    }

    #[test]
    fn the_first_segment_is_small_but_holds_two_buffers() {
        assert_eq!(first_segment_bytes(64 << 20, 1 << 20), 2 << 20);
        assert_eq!(first_segment_bytes(4 << 20, 1 << 20), 2 << 20);
        assert_eq!(first_segment_bytes(4 << 20, 2 << 20), 4 << 20);
        assert_eq!(first_segment_bytes(1 << 20, 64 << 10), 1 << 20);
        assert_eq!(first_segment_bytes(256 << 10, 64 << 10), 256 << 10);
        assert_eq!(first_segment_bytes(1 << 30, 16 << 20), 32 << 20);
        // Then each new file twice the active one, up to the configured size.
        assert_eq!(next_segment_bytes(2 << 20, 64 << 20), 4 << 20);
        assert_eq!(next_segment_bytes(32 << 20, 64 << 20), 64 << 20);
        assert_eq!(next_segment_bytes(64 << 20, 64 << 20), 64 << 20);
        assert_eq!(next_segment_bytes(48 << 20, 64 << 20), 64 << 20);
        assert_eq!(next_segment_bytes(256 << 10, 256 << 10), 256 << 10);
    }

    #[test]
    fn names_sort_by_generation() {
        let d = tempfile::tempdir().unwrap();
        for g in [10u64, 2, 1_000_000] {
            std::fs::write(segment_path(d.path(), g), b"").unwrap();
        }
        std::fs::write(d.path().join("notes.txt"), b"").unwrap();
        let gens: Vec<u64> = list_segments(d.path())
            .unwrap()
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        assert_eq!(gens, vec![2, 10, 1_000_000]);
    }

    proptest::proptest! {
        #[test]
        fn header_decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..5000)) {
            let _ = SegmentHeader::decode(&bytes);
        }
    }
}
