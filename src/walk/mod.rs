//! The frame walk: one step from a frame position of a segment, on a whole segment in
//! memory ([`step`]) or through a bounded window over its file ([`SegmentWindow`]).
//! Recovery and replay both walk with it, so they judge every frame the same way.

mod window;

use crate::lsn::Lsn;
use crate::record::{decode_with, Frame, FrameKey, FRAME_HEADER_BYTES};
use crate::segment::BLOCK_BYTES;

pub(crate) use window::{SegmentWindow, WalkStep};
pub use window::{CHUNK_BYTES, MAX_FRAME_BYTES};

/// Whether every byte of `bytes` is zero. It ORs 64-byte blocks together, which the
/// compiler turns into vector instructions, and stops at the first block that is not zero; a
/// byte-at-a-time `iter().all(..)` with its early exit is not vectorized, and checking the
/// zeros after the last write of a 64 MiB segment that way took most of a reopen's scan.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    let zero_blocks = blocks.all(|b| b.iter().fold(0u8, |acc, &x| acc | x) == 0);
    zero_blocks && blocks.remainder().iter().all(|&b| b == 0)
}

/// Whether `pos` (a frame position in the segment `bytes`) lies in the zero padding at the end
/// of a write that leaves fewer than [`FRAME_HEADER_BYTES`] before the next 4 KiB boundary.
/// [`decode`] cannot tell on its own: its 24-byte window reaches into the next block, which
/// may hold the marker of the next write. A frame that crosses the boundary does not have
/// those bytes all zero (its kind byte is not zero; with only 8 bytes before the boundary,
/// its checksum is not zero).
pub(crate) fn short_padding(bytes: &[u8], pos: usize) -> bool {
    let boundary = pos.next_multiple_of(BLOCK_BYTES);
    pos != boundary
        && boundary - pos < FRAME_HEADER_BYTES
        && boundary <= bytes.len()
        && bytes[pos..boundary].iter().all(|&b| b == 0)
}

/// One step of the walk over a segment's frames, from a frame position.
pub(crate) enum Step {
    /// The record that was expected; the next frame starts at `next`.
    Record {
        lsn: Lsn,
        payload: std::ops::Range<usize>,
        next: usize,
    },
    /// A marker at a block boundary (`vouched` is the durable LSN it records) or padding;
    /// go on at `next`.
    Skip { next: usize, vouched: Option<Lsn> },
    /// No frame fits before the end of the segment.
    Full,
    /// A zero header at a block boundary: no write started here.
    ZeroBlock,
    /// Not the frame that belongs here.
    Damaged(&'static str),
}

/// Decodes the frame at `pos` of segment `bytes` (checksums seeded with `seed`), where the
/// record with LSN `expected` should come next. The one definition of the frame walk:
/// recovery and replay ([`crate::LogReader`]) both step with it, on a whole segment or
/// through a [`SegmentWindow`].
pub(crate) fn step(bytes: &[u8], pos: usize, key: &FrameKey, expected: Lsn) -> Step {
    let boundary = pos.next_multiple_of(BLOCK_BYTES);
    if short_padding(bytes, pos) {
        return Step::Skip {
            next: boundary,
            vouched: None,
        };
    }
    if pos + FRAME_HEADER_BYTES > bytes.len() {
        return Step::Full;
    }
    match decode_with(&bytes[pos..], key) {
        Frame::Marker { .. } if pos != boundary => Step::Damaged("marker inside a write"),
        Frame::Marker { durable_lsn } => Step::Skip {
            next: pos + FRAME_HEADER_BYTES,
            vouched: Some(durable_lsn),
        },
        Frame::Record { lsn, .. } if lsn != expected => {
            Step::Damaged("record out of sequence (stale or misplaced)")
        }
        Frame::Record {
            lsn,
            payload,
            frame_bytes,
        } => Step::Record {
            lsn,
            payload: pos + payload.start..pos + payload.end,
            next: pos + frame_bytes,
        },
        Frame::Zero if pos != boundary => Step::Skip {
            next: boundary,
            vouched: None,
        },
        Frame::Zero => Step::ZeroBlock,
        Frame::Invalid(reason) => Step::Damaged(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::all_zero;

    #[test]
    fn all_zero_sees_any_byte_that_is_not() {
        for len in [0usize, 1, 63, 64, 65, 200, 4096] {
            let mut bytes = vec![0u8; len];
            assert!(all_zero(&bytes), "len {len}");
            for at in 0..len {
                bytes[at] = 0x10;
                assert!(!all_zero(&bytes), "len {len}, byte {at}");
                bytes[at] = 0;
            }
        }
    }
}
