//! Where the batches of this session's segments start, so a reader can begin near its
//! start LSN instead of walking its segment from the first frame.
//!
//! At every seal, a batch that holds records and starts at least [`INDEX_STRIDE_BYTES`]
//! past the last indexed one (in the same segment) is noted as `(first LSN, file position
//! of its marker)`. A segment of `S` bytes gets at most `S / INDEX_STRIDE_BYTES + 1`
//! entries, 16 bytes each (1 KiB for 64 MiB). [`crate::Shard::reader`] looks up the entry
//! at or below its start LSN and begins there: it reads at most about one stride plus one
//! batch before its first record, whatever the segment size.
//!
//! Only segments written in this session are indexed (the index lives in memory). A
//! reopened log's older segments are walked from their start until a reader has walked
//! them once: see [`crate::seek`] for what such a reader teaches the shard. Sealing happens inside
//! `append`, which allocates nothing: the flusher reserves the next segment's entries
//! ([`BatchIndex::reserve_next`]) when it prepares that segment, and a segment that
//! found no reserved room is simply not indexed. At most [`MAX_INDEXED_SEGMENTS`] segments
//! are indexed here; beyond that the oldest one's entries move to the shard's learned
//! starts ([`crate::seek`]) when the next segment is reserved.

use std::collections::VecDeque;

use crate::lsn::Lsn;

pub(crate) use crate::seek::{INDEX_STRIDE_BYTES, MAX_INDEXED_SEGMENTS};

/// Where to begin reading a segment: the first LSN of a batch and its marker's offset.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeekHint {
    pub generation: u64,
    pub lsn: Lsn,
    pub file_pos: u64,
}

/// The batch starts of this session's segments (see the module docs).
pub(crate) struct BatchIndex {
    /// `(generation, entries)`, oldest first; entries ascend in LSN and position.
    segments: VecDeque<(u64, Vec<(Lsn, u64)>)>,
    /// Room for the next segment's entries, reserved by the flusher.
    next: Option<Vec<(Lsn, u64)>>,
    /// Entries one segment can need.
    per_segment: usize,
}

impl BatchIndex {
    /// An empty index for segments of `segment_bytes`.
    pub fn new(segment_bytes: u64) -> BatchIndex {
        let per_segment = (segment_bytes / INDEX_STRIDE_BYTES) as usize + 1;
        BatchIndex {
            segments: VecDeque::with_capacity(MAX_INDEXED_SEGMENTS),
            next: None,
            per_segment,
        }
    }

    /// Reserves the entries of the next segment (off the append path). Idempotent.
    ///
    /// When [`MAX_INDEXED_SEGMENTS`] segments are indexed already, the oldest one's entries
    /// make room and are returned (the caller hands them to the shard's learned starts, see
    /// [`crate::seek`], so that segment stays indexed): `note` then never has to drop one
    /// on the append path.
    pub fn reserve_next(&mut self) -> Option<(u64, Vec<(Lsn, u64)>)> {
        if self.next.is_some() {
            return None;
        }
        let evicted = if self.segments.len() == MAX_INDEXED_SEGMENTS {
            self.segments.pop_front()
        } else {
            None
        };
        self.next = Some(Vec::with_capacity(self.per_segment));
        evicted
    }

    /// Notes a sealed batch of segment `generation` whose first record is `lsn` and whose
    /// marker is at `file_pos`. Allocates nothing.
    pub fn note(&mut self, generation: u64, lsn: Lsn, file_pos: u64) {
        if self.segments.back().is_none_or(|(g, _)| *g != generation) {
            let Some(entries) = self.next.take() else {
                return; // no room reserved: this segment is walked from its start
            };
            debug_assert!(self.segments.back().is_none_or(|(g, _)| *g < generation));
            // `reserve_next` made room when it reserved `entries`.
            assert!(self.segments.len() < MAX_INDEXED_SEGMENTS);
            assert!(self.segments.len() < self.segments.capacity());
            self.segments.push_back((generation, entries));
        }
        let (_, entries) = self.segments.back_mut().expect("just ensured");
        let due = entries
            .last()
            .is_none_or(|&(_, pos)| file_pos >= pos + INDEX_STRIDE_BYTES);
        if due && entries.len() < entries.capacity() {
            debug_assert!(entries.last().is_none_or(|&(l, p)| l < lsn && p < file_pos));
            entries.push((lsn, file_pos));
        }
    }

    /// The indexed batch of segment `generation` with the highest first LSN at or below
    /// `from`, if any.
    pub fn hint(&self, generation: u64, from: Lsn) -> Option<SeekHint> {
        let (_, entries) = self.segments.iter().find(|(g, _)| *g == generation)?;
        let after = entries.partition_point(|&(lsn, _)| lsn <= from);
        let &(lsn, file_pos) = entries.get(after.checked_sub(1)?)?;
        Some(SeekHint {
            generation,
            lsn,
            file_pos,
        })
    }

    /// Drops the entries of segments below `generation` (they were retired).
    pub fn retire_below(&mut self, generation: u64) {
        while self.segments.front().is_some_and(|(g, _)| *g < generation) {
            self.segments.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn notes_one_batch_per_stride_and_finds_the_closest_below() {
        let mut ix = BatchIndex::new(8 * MIB);
        ix.note(3, Lsn(10), 4096); // nothing reserved: segment 3 is not indexed
        assert_eq!(ix.hint(3, Lsn(10)), None);
        ix.reserve_next();
        for (i, pos) in [
            4096,
            MIB / 2,
            MIB + 4096,
            2 * MIB,
            2 * MIB + 8192,
            3 * MIB + 8192,
        ]
        .into_iter()
        .enumerate()
        {
            ix.note(4, Lsn(100 + 10 * i as u64), pos);
        }
        // Kept: 4096 (lsn 100), MIB + 4096 (120), 2 MiB + 8192 (140), 3 MiB + 8192 (150).
        let at = |lsn| ix.hint(4, Lsn(lsn)).map(|h| (h.lsn.0, h.file_pos));
        assert_eq!(at(99), None);
        assert_eq!(at(100), Some((100, 4096)));
        assert_eq!(at(119), Some((100, 4096)));
        assert_eq!(at(135), Some((120, MIB + 4096)));
        assert_eq!(at(10_000), Some((150, 3 * MIB + 8192)));
        assert_eq!(ix.hint(5, Lsn(200)), None);
    }

    #[test]
    fn past_the_limit_the_oldest_segment_is_handed_back_when_the_next_is_reserved() {
        let mut ix = BatchIndex::new(2 * MIB);
        for generation in 0..MAX_INDEXED_SEGMENTS as u64 {
            assert_eq!(ix.reserve_next(), None);
            ix.note(generation, Lsn(10 * generation + 1), 4096);
        }
        let evicted = ix.reserve_next();
        assert_eq!(evicted, Some((0, vec![(Lsn(1), 4096)])));
        assert_eq!(
            ix.reserve_next(),
            None,
            "idempotent until the next segment is noted"
        );
        ix.note(MAX_INDEXED_SEGMENTS as u64, Lsn(100_000), 4096);
        assert_eq!(ix.hint(0, Lsn(5)), None);
        assert!(ix.hint(1, Lsn(11)).is_some());
        assert!(ix.hint(MAX_INDEXED_SEGMENTS as u64, Lsn(100_000)).is_some());
    }

    #[test]
    fn never_grows_past_its_reservation_and_retires_old_segments() {
        let mut ix = BatchIndex::new(2 * MIB);
        ix.reserve_next();
        for i in 0..100u64 {
            ix.note(1, Lsn(1 + i), 4096 + i * MIB);
        }
        let (_, entries) = ix.segments.back().unwrap();
        assert_eq!(entries.len(), 3, "2 MiB / 1 MiB + 1 entries at most");
        assert_eq!(entries.capacity(), 3);
        ix.reserve_next();
        ix.note(2, Lsn(500), 4096);
        ix.retire_below(2);
        assert_eq!(ix.hint(1, Lsn(5)), None);
        assert!(ix.hint(2, Lsn(500)).is_some());
    }
}
