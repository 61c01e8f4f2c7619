//! Where a reader can begin inside a segment: batch starts that readers learn by walking
//! segments written before the shard last opened.
//!
//! The shard notes the batches it seals itself (`shard::batch_index`), but that index
//! lives in memory and covers only this session. A segment written before the last open
//! has no index: a reader that starts inside it walks (reads and checks) every frame from
//! the segment's first one. So a reader that walks such a segment from its start anyway (a
//! replay from the beginning, such as the Raft store's open, a catch-up read, a long scan)
//! teaches the shard as it goes: its [`Learner`] notes one batch start per
//! [`INDEX_STRIDE_BYTES`] (the first LSN after a marker, and the marker's block-aligned
//! file position) and hands them to the shard's [`LearnedStarts`] when it leaves the
//! segment (or is dropped). [`crate::Shard::reader`] looks there when the session's index
//! has nothing at or below its start LSN.
//!
//! Readers are `Send` and may run on any thread, so [`LearnedStarts`] is behind a mutex,
//! taken once when a reader enters an older segment and once when it leaves it: never per
//! record. Bounded: at most [`MAX_LEARNED_SEGMENTS`] segments of at most
//! `segment_bytes / INDEX_STRIDE_BYTES + 1` entries of 16 bytes (1 KiB per 64 MiB
//! segment); the lowest generations are dropped first. A learned entry is only a hint:
//! every frame read from it is verified, so a wrong one ends in `Error::Corruption`,
//! never in a wrong record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::lsn::Lsn;
use crate::segment::BLOCK_BYTES;

/// Minimum distance between two indexed batches of one segment, in bytes.
pub(crate) const INDEX_STRIDE_BYTES: u64 = 1 << 20;

/// Segments whose batch starts the shard's own index keeps (segments written this session);
/// older ones are walked from their start.
pub(crate) const MAX_INDEXED_SEGMENTS: usize = 1024;

/// Segments whose learned batch starts are kept: 1 TiB of 64 MiB segments, at most about
/// 17 MiB of entries; the lowest generations are dropped first.
pub(crate) const MAX_LEARNED_SEGMENTS: usize = 16 * 1024;

/// One segment's learned starts: `(complete, entries)`.
type Learned = (bool, Vec<(Lsn, u64)>);

/// The batch starts readers learned, per segment generation (see the module docs).
pub(crate) struct LearnedStarts {
    /// `generation -> (whether a walk reached the segment's end, [(first LSN of a batch,
    /// its marker's file position)] ascending)`.
    segments: Mutex<BTreeMap<u64, Learned>>,
    /// Entries one segment can need.
    per_segment: usize,
}

impl LearnedStarts {
    /// An empty index for segments of at most `segment_bytes`.
    pub fn new(segment_bytes: u64) -> LearnedStarts {
        LearnedStarts {
            segments: Mutex::new(BTreeMap::new()),
            per_segment: (segment_bytes / INDEX_STRIDE_BYTES) as usize + 1,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Learned>> {
        // A panic while holding the lock leaves a consistent map (every change is one
        // insert or remove), so a poisoned lock is still usable.
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The learned batch of segment `generation` with the highest first LSN at or below
    /// `from`: `(first LSN, marker position)`.
    pub fn hint(&self, generation: u64, from: Lsn) -> Option<(Lsn, u64)> {
        let segments = self.lock();
        let (_, entries) = segments.get(&generation)?;
        let after = entries.partition_point(|&(lsn, _)| lsn <= from);
        entries.get(after.checked_sub(1)?).copied()
    }

    /// Whether a walk of segment `generation` to its end was learned already.
    fn knows(&self, generation: u64) -> bool {
        self.lock()
            .get(&generation)
            .is_some_and(|(complete, _)| *complete)
    }

    /// Keeps `entries` for segment `generation` (`complete`: the walk reached the
    /// segment's end) unless what it has is complete or at least as long.
    pub fn offer(&self, generation: u64, complete: bool, mut entries: Vec<(Lsn, u64)>) {
        entries.truncate(self.per_segment);
        debug_assert!(entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        let mut segments = self.lock();
        let better = segments
            .get(&generation)
            .is_none_or(|(had_all, had)| !had_all && (complete || entries.len() > had.len()));
        if !better {
            return;
        }
        segments.insert(generation, (complete, entries));
        while segments.len() > MAX_LEARNED_SEGMENTS {
            segments.pop_first();
        }
    }

    /// Drops the entries of segments below `generation` (they were retired).
    pub fn retire_below(&self, generation: u64) {
        let mut segments = self.lock();
        *segments = segments.split_off(&generation);
    }

    /// Segments with learned entries (for tests and stats).
    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.lock().len()
    }
}

/// A reader's side of [`LearnedStarts`]: the batch starts of the segment it is walking.
pub(crate) struct Learner {
    sink: Arc<LearnedStarts>,
    /// Segments of a higher generation are indexed by the shard itself.
    upto_generation: u64,
    /// The segment being learned (walked from its first frame), and its entries so far.
    current: Option<(u64, Vec<(Lsn, u64)>)>,
}

impl Learner {
    /// Learns segments of generation at most `upto_generation` into `sink`.
    pub fn new(sink: Arc<LearnedStarts>, upto_generation: u64) -> Learner {
        Learner {
            sink,
            upto_generation,
            current: None,
        }
    }

    /// The reader entered segment `generation`; `from_first_frame`: it walks the segment
    /// from its first frame (not from a hint), so every batch start passes by.
    pub fn enter(&mut self, generation: u64, from_first_frame: bool) {
        self.leave(false);
        if from_first_frame && generation <= self.upto_generation && !self.sink.knows(generation) {
            self.current = Some((generation, Vec::new()));
        }
    }

    /// The walk passed a marker at `marker_pos`; the next record is `next_lsn`.
    pub fn marker(&mut self, marker_pos: u64, next_lsn: Lsn) {
        let Some((_, entries)) = &mut self.current else {
            return;
        };
        let block_aligned = marker_pos.is_multiple_of(BLOCK_BYTES as u64);
        let due = entries
            .last()
            .is_none_or(|&(lsn, pos)| marker_pos >= pos + INDEX_STRIDE_BYTES && next_lsn > lsn);
        if block_aligned && due {
            entries.push((next_lsn, marker_pos));
        }
    }

    /// The reader left the segment (`at_end`: it walked to the segment's end) or stopped:
    /// hands over what it learned.
    pub fn leave(&mut self, at_end: bool) {
        if let Some((generation, entries)) = self.current.take() {
            if !entries.is_empty() {
                self.sink.offer(generation, at_end, entries);
            }
        }
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        self.leave(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_walk_teaches_one_start_per_stride_and_only_for_older_segments() {
        let sink = Arc::new(LearnedStarts::new(4 * MIB));
        let mut l = Learner::new(sink.clone(), 7);
        l.enter(7, true);
        for (i, pos) in [4096, MIB / 2, MIB + 4096, MIB + 4100, 3 * MIB]
            .iter()
            .enumerate()
        {
            l.marker(*pos, Lsn(10 + i as u64));
        }
        assert_eq!(
            sink.hint(7, Lsn(30)),
            None,
            "nothing is handed over mid-segment"
        );
        l.enter(8, true); // the shard's own segment: not learned
        l.marker(4096, Lsn(100));
        drop(l);
        // Kept: 4096 (lsn 10), MIB + 4096 (12), 3 MiB (14); MIB + 4100 is not block-aligned.
        assert_eq!(sink.hint(7, Lsn(9)), None);
        assert_eq!(sink.hint(7, Lsn(11)), Some((Lsn(10), 4096)));
        assert_eq!(sink.hint(7, Lsn(13)), Some((Lsn(12), MIB + 4096)));
        assert_eq!(sink.hint(7, Lsn(99)), Some((Lsn(14), 3 * MIB)));
        assert_eq!(sink.hint(8, Lsn(100)), None);
    }

    #[test]
    fn a_walk_from_a_hint_teaches_nothing_and_shorter_walks_do_not_replace_longer() {
        let sink = Arc::new(LearnedStarts::new(4 * MIB));
        let mut l = Learner::new(sink.clone(), 9);
        l.enter(3, false);
        l.marker(4096, Lsn(5));
        l.leave(true);
        assert_eq!(sink.segment_count(), 0);
        l.enter(3, true);
        l.marker(4096, Lsn(5));
        l.marker(2 * MIB, Lsn(50));
        l.leave(true); // the end of segment 3
        assert_eq!(sink.hint(3, Lsn(60)), Some((Lsn(50), 2 * MIB)));
        assert!(sink.knows(3));
        let mut short = Learner::new(sink.clone(), 9);
        short.enter(3, true);
        short.marker(4096, Lsn(5));
        drop(short);
        assert_eq!(sink.hint(3, Lsn(60)), Some((Lsn(50), 2 * MIB)));
        sink.retire_below(4);
        assert_eq!(sink.hint(3, Lsn(60)), None);
    }

    #[test]
    fn a_longer_partial_walk_replaces_a_shorter_one_until_one_is_complete() {
        let sink = LearnedStarts::new(8 * MIB);
        sink.offer(2, false, vec![(Lsn(1), 4096)]);
        sink.offer(2, false, vec![(Lsn(1), 4096), (Lsn(9), MIB + 4096)]);
        assert_eq!(sink.hint(2, Lsn(20)), Some((Lsn(9), MIB + 4096)));
        assert!(!sink.knows(2));
        sink.offer(2, true, vec![(Lsn(1), 4096)]);
        assert!(sink.knows(2));
        sink.offer(2, false, vec![(Lsn(1), 4096), (Lsn(9), MIB + 4096)]);
        assert_eq!(
            sink.hint(2, Lsn(20)),
            Some((Lsn(1), 4096)),
            "complete stays"
        );
    }

    #[test]
    fn keeps_at_most_the_newest_segments() {
        let sink = LearnedStarts::new(MIB);
        for generation in 0..(MAX_LEARNED_SEGMENTS as u64 + 5) {
            sink.offer(generation, true, vec![(Lsn(generation + 1), 4096)]);
        }
        assert_eq!(sink.segment_count(), MAX_LEARNED_SEGMENTS);
        assert_eq!(sink.hint(4, Lsn(100)), None);
        assert!(sink.hint(5, Lsn(100)).is_some());
    }
}
