//! The on-disk format, for tools that read a log without opening it for writing: the CLI's
//! `inspect` and `verify`, fuzz targets, monitoring scripts. Everything here is pure (no
//! I/O) except the directory listings. To read records, use [`crate::LogReader`]; to watch
//! a live log, [`crate::HeaderView`].
//!
//! # Directory
//! ```text
//! DIR/wal.shm                                the shared header (HEADER_FILE_NAME)
//! DIR/shard-NNNN/                            one directory per shard (shard_dir)
//! DIR/shard-NNNN/GGGGGGGGGGGGGGGGGGGG.seg    a segment of generation G (segment_path)
//! DIR/shard-NNNN/GGGGGGGGGGGGGGGGGGGG.spare  a retired segment kept for reuse (spare_path)
//! ```
//! Generations are written in 20 decimal digits so names sort in order; a generation is
//! never reused within a shard. Every shard creates its directory when it first opens, so
//! [`shard_count`] learns the shard count of a closed log from the directory alone.
//!
//! # Segment header block
//! The first [`BLOCK_BYTES`] of a segment ([`SegmentHeader`], little endian, the rest of
//! the block zero):
//! ```text
//! offset size field
//!      0    8 magic            b"SHARDWAL" (MAGIC)
//!      8    4 format_version   FORMAT_VERSION
//!     12    4 shard_id
//!     16    8 generation       equals the number in the file name
//!     24    8 base_lsn         LSN of the first record in this segment
//!     32    8 segment_bytes    file size when prepared
//!     40   16 reserved         zero
//!     56    8 checksum         xxh3-64 of bytes 0..56
//! ```
//!
//! # Frames
//! Every write starts at a 4 KiB boundary and is a sequence of 8-byte-aligned frames
//! ([`FRAME_ALIGN_BYTES`]): a [`FRAME_HEADER_BYTES`]-byte header, the payload, zero padding.
//! ```text
//! offset  size  field
//!      0     8  checksum  xxh3-64 of bytes 8 .. 24+len, seeded with segment_seed(shard, generation)
//!      8     4  len       payload bytes (u32, little endian)
//!     12     1  kind      1 = record, 2 = marker
//!     13     3  reserved  zero
//!     16     8  lsn       record: its own LSN; marker: the durable LSN when it was sealed
//!     24   len  payload
//! ```
//! A marker starts every write and vouches that every record up to its LSN was durable;
//! twenty-four zero bytes where a frame would start mean the rest of the write, up to the
//! next 4 KiB boundary, is padding. [`decode`] reads one frame; [`scan_segment_bytes`]
//! scans a whole segment the way recovery does.

pub use crate::record::{
    decode, encode_marker, encode_record, frame_bytes, segment_seed, Frame, FRAME_ALIGN_BYTES,
    FRAME_HEADER_BYTES,
};
pub use crate::recovery::{scan_segment_bytes, SegmentEnd, SegmentSummary};
pub use crate::segment::{
    first_segment_bytes, list_segments, list_shards, list_spares, next_segment_bytes, segment_path,
    shard_count, shard_dir, spare_path, HeaderError, SegmentHeader, BLOCK_BYTES,
    FIRST_SEGMENT_MAX_BYTES, FORMAT_VERSION, MAGIC,
};
pub use crate::shm::HEADER_FILE_NAME;
pub use crate::walk::{CHUNK_BYTES, MAX_FRAME_BYTES};
