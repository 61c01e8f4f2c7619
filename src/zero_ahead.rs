//! Zeroing segments without putting the zeros in front of a commit: which piece to zero
//! next, and when.
//!
//! # Why zero at all
//! A new segment is reserved with `fallocate` ([`crate::storage::StorageFile::allocate`]),
//! which is quick (metadata only) and makes its blocks read as zeros, but leaves them as
//! *unwritten extents*. The first write into an unwritten extent converts it, and the
//! fdatasync of that file must then commit the conversion to the file system journal; an
//! overwrite of a really written block needs no journal commit. On a shared ext4 a journal
//! commit waits for everyone's metadata, so records should land on written blocks
//! (`docs/writepath.md` has the figures). Zeroing is an optimisation only: recovery reads an
//! unwritten block and a zeroed block alike (zeros).
//!
//! # Two targets, one piece at a time
//! Nothing is zeroed (nor the next segment prepared) until a batch of the session is
//! durable, so the first commit after opening meets no preparation I/O. Then the flusher
//! keeps at most one piece of zeros ([`piece_bytes`], 256 KiB) in flight:
//! * **the prepared segment**, from its start to its end, whether or not commits wait,
//!   paced to the active segment's fill ([`prepared_target_bytes`]: an eighth of a segment
//!   ahead, so it is zeroed through when the active segment is seven eighths full): it
//!   takes no records until the log rotates to it, and it is another file, so converting
//!   its blocks adds nothing to the active file's fdatasync. A commit shares the device
//!   with at most one piece, and only about one commit per 256 KiB of records meets one
//!   (zeroing it all at once, as soon as it was prepared, met 6 % of a short run's
//!   commits and doubled the p99 at one writer per shard). By the time the log rotates to
//!   it, it is zeroed through, like the fully zero-filled segments of the old design,
//!   without their stall (64 MiB of writes and an fdatasync before the first commit, and
//!   in front of every fdatasync while they ran);
//! * **the active segment**, only while the shard is quiet ([`may_issue`]: no commit
//!   waiting for a record that is not durable, no batch sealed, in flight or unsynced, no
//!   fdatasync running), a bounded distance ([`ZERO_AHEAD_BYTES`]) ahead of the write head.
//!   This is for a segment that was not zeroed before it became active: a segment resumed
//!   after reopening, and a first segment larger than the 2 MiB that `Shard::open` zeroes
//!   (`segment::zero_prefix`; two flush buffers above 1 MiB each). Its conversions do cost
//!   the next fdatasync of the active file a journal commit, one per piece instead of one
//!   per commit; under constant load nothing is zeroed there and records go to unwritten
//!   blocks (slower, never stalled).
//!
//! # Only while commits are small
//! Zeroing trades device time for journal commits: each byte of records costs a byte of
//! zeros, and in return the fdatasync after a write commits no extent conversion. For a
//! group commit of 72 KiB (256 records of 256 bytes) that trade pays; for a commit of
//! 1 MiB the zeros cost more device time than the one journal commit they save
//! (`docs/writepath.md`, "Zeroing only while commits are small": 64 KiB records, one
//! writer, 11-13 % more throughput without zeroing at 512 KiB and 1 MiB per fdatasync,
//! 26-32 % with two shards, 2 % less at 256 KiB). So the flusher keeps a running average
//! of the bytes each durability point covers ([`SyncBytes`]) and issues no new piece while
//! it is [`ZEROING_PAYS_BELOW_BYTES`] or more. Records then go to unwritten blocks, which
//! recovery reads as zeros like written ones: only speed depends on this choice.
//!
//! # Never over a record
//! In the active segment a piece starts at or after `write_pos + flush_buffer_bytes` when
//! it is issued: past the end of any batch that is open (a batch opens at the write
//! position and holds at most one flush buffer). While a piece is in flight, no batch may
//! open over it ([`batch_limit_bytes`]; this also covers a prepared segment that becomes
//! active with a piece in flight), so zeros and records are never in flight to the same
//! block, and zeros never land below the write position.

use std::ops::Range;

use crate::segment::BLOCK_BYTES;

/// The largest piece of zeros one write of the zero-ahead covers, in bytes.
pub(crate) const ZERO_PIECE_BYTES: usize = 256 << 10;

/// Bytes zeroed by one write for a shard with flush buffers of `flush_buffer_bytes`:
/// [`ZERO_PIECE_BYTES`], or one flush buffer when that is smaller (small test geometries
/// still zero ahead). A multiple of 4 KiB, since a flush buffer is a power of two >= 8 KiB.
pub(crate) fn piece_bytes(flush_buffer_bytes: usize) -> usize {
    let bytes = ZERO_PIECE_BYTES.min(flush_buffer_bytes);
    debug_assert!(bytes.is_multiple_of(BLOCK_BYTES) && bytes > 0);
    bytes
}
/// How far past the write head zeroing goes, in bytes: it stops once the written-through
/// position is this far ahead.
pub(crate) const ZERO_AHEAD_BYTES: u64 = 8 << 20;

const _: () = assert!(ZERO_PIECE_BYTES.is_multiple_of(BLOCK_BYTES) && ZERO_PIECE_BYTES > 0);
const _: () = assert!(ZERO_AHEAD_BYTES >= 2 * ZERO_PIECE_BYTES as u64);

/// A piece of zeros in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ZeroPiece {
    /// The segment it is written into.
    pub generation: u64,
    /// The byte range of the segment it covers.
    pub range: Range<u64>,
}

/// The next piece of the active segment to zero, or `None` when the zeroed region reaches
/// far enough ahead or the segment has less than a piece left.
///
/// `write_pos` is where the next batch opens, `zeroed_bytes` the end of the region known
/// written (records or zeros), `segment_bytes` the file's size and `open_reach_bytes` how
/// far past `write_pos` an open batch can reach (one flush buffer); a piece is
/// `piece_bytes` long.
pub(crate) fn next_piece(
    write_pos: u64,
    zeroed_bytes: u64,
    segment_bytes: u64,
    open_reach_bytes: u64,
    piece_bytes: u64,
) -> Option<Range<u64>> {
    debug_assert!(write_pos.is_multiple_of(BLOCK_BYTES as u64));
    debug_assert!(zeroed_bytes.is_multiple_of(BLOCK_BYTES as u64));
    debug_assert!(write_pos <= segment_bytes);
    let start = zeroed_bytes.max(write_pos + open_reach_bytes);
    let end = start + piece_bytes;
    if end > segment_bytes || start >= write_pos + ZERO_AHEAD_BYTES {
        return None;
    }
    Some(start..end)
}

/// How far the prepared segment should be zeroed by now, in bytes: in proportion to how far
/// the active segment is written, ahead by [`PREPARED_LEAD_DIVISOR`]ths of it, so that it is
/// zeroed through when the active segment is `(divisor - 1) / divisor` full and the log
/// rotates to written blocks. Paced like this, a piece goes out per
/// `active_segment_bytes / prepared_segment_bytes` pieces' worth of records, spread over
/// the segment, instead of a burst of the whole segment's zeros right after preparing it,
/// which met several percent of a short run's commits (`docs/writepath.md`).
pub(crate) fn prepared_target_bytes(
    active_write_pos: u64,
    active_segment_bytes: u64,
    prepared_segment_bytes: u64,
) -> u64 {
    debug_assert!(active_write_pos <= active_segment_bytes && active_segment_bytes > 0);
    let lead = active_segment_bytes / PREPARED_LEAD_DIVISOR;
    let ahead = u128::from(active_write_pos + lead);
    let target = ahead * u128::from(prepared_segment_bytes) / u128::from(active_segment_bytes);
    target.min(u128::from(prepared_segment_bytes)) as u64
}

/// The prepared segment's zeroing leads the active segment's fill by `1 / divisor` of it.
pub(crate) const PREPARED_LEAD_DIVISOR: u64 = 8;

/// Zeroing ahead is skipped while the average bytes per durability point are at least
/// this many (see the module docs): between the 256 KiB per fdatasync where zeroing still
/// won by 2 % and the 512 KiB where skipping it won by 11 %.
pub(crate) const ZEROING_PAYS_BELOW_BYTES: u64 = 384 << 10;

/// A running average of the bytes each durability point (an fdatasync, or with O_DSYNC a
/// flusher pass that completed writes) made durable: each new sample weighs a quarter, so
/// a change of workload shows within a few commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncBytes {
    avg_bytes: u64,
}

impl SyncBytes {
    /// Adds a durability point that covered `bytes` (4 KiB-padded batch bytes).
    pub fn record(&mut self, bytes: u64) {
        // avg + (bytes - avg) / 4, without overflow or a negative step.
        self.avg_bytes = self.avg_bytes - self.avg_bytes / 4 + bytes / 4;
    }

    /// The current average, in bytes.
    pub fn avg_bytes(&self) -> u64 {
        self.avg_bytes
    }

    /// Whether zero pieces still pay for themselves at this commit size.
    pub fn zeroing_pays(&self) -> bool {
        self.avg_bytes < ZEROING_PAYS_BELOW_BYTES
    }
}

/// What the flusher knows when it decides whether to zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quiet {
    /// A commit waits for a record that is not durable yet.
    pub commit_waiting: bool,
    /// Batches sealed, in flight, or written but not yet synced.
    pub unsynced_batches: bool,
    /// An fdatasync is running.
    pub syncing: bool,
}

/// Whether a zero piece may be issued now: only when nothing waits to become durable (see
/// the module docs).
pub(crate) fn may_issue(q: Quiet) -> bool {
    !q.commit_waiting && !q.unsynced_batches && !q.syncing
}

/// The most bytes a batch opening at `write_pos` may hold when `limit_bytes` would be its
/// limit without zeroing and `zeroing` is in flight in the same segment: it must end at or
/// before the piece.
pub(crate) fn batch_limit_bytes(
    write_pos: u64,
    limit_bytes: u64,
    zeroing: Option<&Range<u64>>,
) -> u64 {
    match zeroing {
        Some(r) => {
            assert!(
                r.start >= write_pos,
                "a zero piece in flight below the write position"
            );
            limit_bytes.min(r.start - write_pos)
        }
        None => limit_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const PIECE: u64 = ZERO_PIECE_BYTES as u64;

    #[test]
    fn pieces_start_past_the_open_batch_and_stop_at_the_window() {
        // Fresh segment: the first piece starts one flush buffer past the head.
        assert_eq!(
            next_piece(0, 0, 64 * MIB, MIB, PIECE),
            Some(MIB..MIB + PIECE)
        );
        // Zeroed region already ahead of the batch reach: continue from it.
        assert_eq!(
            next_piece(0, 2 * MIB, 64 * MIB, MIB, PIECE),
            Some(2 * MIB..2 * MIB + PIECE)
        );
        // The head overtook the zeroed region: start past the batch reach again.
        assert_eq!(
            next_piece(5 * MIB, 2 * MIB, 64 * MIB, MIB, PIECE),
            Some(6 * MIB..6 * MIB + PIECE)
        );
        // Far enough ahead: nothing to do.
        assert_eq!(next_piece(0, ZERO_AHEAD_BYTES, 64 * MIB, MIB, PIECE), None);
        // Less than a piece before the end of the segment: nothing (never grow the file).
        assert_eq!(
            next_piece(60 * MIB, 64 * MIB - PIECE + 4096, 64 * MIB, MIB, PIECE),
            None
        );
        assert_eq!(
            next_piece(60 * MIB, 64 * MIB - PIECE, 64 * MIB, MIB, PIECE),
            Some(64 * MIB - PIECE..64 * MIB)
        );
        // A segment smaller than the batch reach plus a piece is never zeroed.
        assert_eq!(next_piece(0, 0, MIB, MIB, PIECE), None);
        // Small geometry (64 KiB buffers and pieces, 256 KiB segments).
        let k = 1u64 << 10;
        assert_eq!(piece_bytes(64 << 10), 64 << 10);
        assert_eq!(piece_bytes(1 << 20), ZERO_PIECE_BYTES);
        assert_eq!(
            next_piece(0, 0, 256 * k, 64 * k, 64 * k),
            Some(64 * k..128 * k)
        );
        assert_eq!(
            next_piece(128 * k, 128 * k, 256 * k, 64 * k, 64 * k),
            Some(192 * k..256 * k)
        );
        assert_eq!(next_piece(192 * k, 256 * k, 256 * k, 64 * k, 64 * k), None);
    }

    #[test]
    fn the_prepared_segment_is_zeroed_in_step_with_the_active_one() {
        // Equal segments: an eighth ahead, through at seven eighths.
        assert_eq!(prepared_target_bytes(0, 64 * MIB, 64 * MIB), 8 * MIB);
        assert_eq!(
            prepared_target_bytes(32 * MIB, 64 * MIB, 64 * MIB),
            40 * MIB
        );
        assert_eq!(
            prepared_target_bytes(56 * MIB, 64 * MIB, 64 * MIB),
            64 * MIB
        );
        assert_eq!(
            prepared_target_bytes(64 * MIB, 64 * MIB, 64 * MIB),
            64 * MIB
        );
        // A small first segment before a full-size one: eight times the pace.
        assert_eq!(prepared_target_bytes(0, 8 * MIB, 64 * MIB), 8 * MIB);
        assert_eq!(prepared_target_bytes(4 * MIB, 8 * MIB, 64 * MIB), 40 * MIB);
        assert_eq!(prepared_target_bytes(7 * MIB, 8 * MIB, 64 * MIB), 64 * MIB);
        // Never past the prepared segment, however large the numbers.
        assert_eq!(prepared_target_bytes(1 << 40, 1 << 40, 1 << 40), 1 << 40);
    }

    #[test]
    fn zeroing_stops_while_commits_are_large_and_resumes_when_they_shrink() {
        let mut avg = SyncBytes::default();
        assert!(avg.zeroing_pays(), "a fresh shard zeroes");
        // 256 records of 256 bytes per group commit: zeroing pays however long it runs.
        for _ in 0..1000 {
            avg.record(72 << 10);
        }
        assert!(avg.zeroing_pays());
        assert!(avg.avg_bytes() <= 72 << 10);
        // 1 MiB per fdatasync: off from the second commit on.
        let mut commits = 0;
        while avg.zeroing_pays() {
            avg.record(MIB);
            commits += 1;
        }
        assert_eq!(commits, 2, "{avg:?}");
        // Steady at 1 MiB the average approaches it and never exceeds it.
        for _ in 0..1000 {
            avg.record(MIB);
            assert!(avg.avg_bytes() <= MIB);
        }
        assert!(avg.avg_bytes() >= MIB - 8);
        // Back to 4 KiB commits: on again within a few.
        let mut commits = 0;
        while !avg.zeroing_pays() {
            avg.record(4 << 10);
            commits += 1;
        }
        assert!((1..=4).contains(&commits), "{commits}");
        // No overflow at the extremes.
        avg.record(u64::MAX);
        avg.record(u64::MAX);
        assert!(!avg.zeroing_pays());
    }

    #[test]
    fn only_a_quiet_shard_zeroes() {
        let quiet = Quiet {
            commit_waiting: false,
            unsynced_batches: false,
            syncing: false,
        };
        assert!(may_issue(quiet));
        for q in [
            Quiet {
                commit_waiting: true,
                ..quiet
            },
            Quiet {
                unsynced_batches: true,
                ..quiet
            },
            Quiet {
                syncing: true,
                ..quiet
            },
        ] {
            assert!(!may_issue(q), "{q:?}");
        }
    }

    #[test]
    fn a_batch_never_reaches_into_a_piece_in_flight() {
        assert_eq!(batch_limit_bytes(0, MIB, None), MIB);
        assert_eq!(batch_limit_bytes(0, MIB, Some(&(2 * MIB..3 * MIB))), MIB);
        assert_eq!(
            batch_limit_bytes(MIB + 8192, MIB, Some(&(2 * MIB..3 * MIB))),
            MIB - 8192
        );
        assert_eq!(
            batch_limit_bytes(2 * MIB, MIB, Some(&(2 * MIB..3 * MIB))),
            0
        );
    }

    #[test]
    #[should_panic(expected = "below the write position")]
    fn a_piece_below_the_head_is_a_bug() {
        batch_limit_bytes(3 * MIB, MIB, Some(&(2 * MIB..3 * MIB)));
    }
}
