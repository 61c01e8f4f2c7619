//! The flush ring: a fixed set of slots that go `Free -> Open -> Sealed -> InFlight ->
//! Written -> Free`, always in the same round-robin order.
//!
//! * **Open**: at most one slot at a time. Appends copy frames into its fill buffer. Every
//!   batch starts at a 4 KiB-aligned file position with a marker frame (and, for the first
//!   batch of a segment, the segment header block before it).
//! * **Sealed**: the batch is closed: the marker gets the durable LSN of that moment, the tail
//!   up to the next 4 KiB boundary is zeroed, and the flusher may submit its writes.
//! * **InFlight**: its piece writes are submitted; they may complete in any order, and
//!   several slots may be in flight at once.
//! * **Written**: every piece completed. The slot becomes Free only when every older slot is
//!   Written too (`Ring::pop_written`), which is what makes the completed watermark
//!   contiguous.
//!
//! A shard is single-threaded, so none of this needs atomics. This module does no I/O and
//! knows nothing about executors.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::arena::{lies_in, RingBuffers, SlotBuffers};
use crate::lsn::Lsn;
use crate::record::{encode_marker_with, FrameKey, FRAME_HEADER_BYTES};
use crate::segment::{SegmentHeader, BLOCK_BYTES};
use crate::storage::StorageFile;

/// Where a slot is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    Free,
    Open,
    Sealed,
    InFlight { pending_writes: u32 },
    Written,
}

/// Where an opened batch goes in the file.
pub(crate) struct BatchTarget {
    pub generation: u64,
    pub file: Rc<dyn StorageFile>,
    /// The segment's checksum key.
    pub key: FrameKey,
    /// 4 KiB-aligned file position of the batch's first byte.
    pub file_pos: u64,
    /// Bytes the batch may occupy (fill buffer size, or less near the segment's end).
    pub limit_bytes: usize,
    /// The segment header, when this is the first batch of a segment.
    pub header: Option<SegmentHeader>,
}

pub(crate) struct Slot {
    pub bufs: SlotBuffers,
    pub state: SlotState,
    pub generation: u64,
    pub file: Option<Rc<dyn StorageFile>>,
    key: FrameKey,
    pub file_pos: u64,
    used_bytes: usize,
    limit_bytes: usize,
    marker_offset: usize,
    /// Highest LSN in this batch, or the LSN before it when the batch holds no record.
    pub last_lsn: Lsn,
    pub record_count: u32,
    /// 4 KiB-padded length of the sealed batch.
    pub padded_bytes: usize,
}

/// The fixed ring of flush buffers of one shard.
pub(crate) struct Ring {
    pub slots: Vec<Slot>,
    /// The slot appends copy into, if any.
    pub open: Option<usize>,
    /// The slot the next `open` takes (round robin).
    next_open: usize,
    /// The oldest slot that is not Free.
    oldest: usize,
    /// A full-size fill buffer that replaces a slot's trimmed one when the slot is freed
    /// (see `arena`). `None` only inside [`Ring::pop_written`].
    spare_fill: Option<DmaBuffer>,
    /// Size of an untrimmed fill buffer, in bytes.
    fill_bytes: usize,
    /// Where the arena's registered memory lies (empty when it is not registered).
    registered_ranges: Vec<(usize, usize)>,
    /// Spares allocated outside the registered memory although the arena was registered
    /// (glommio falls back to the heap when its arena is exhausted): each one's writes
    /// cost the kernel a page pinning. Expected to stay 0; see `ShardMetrics`.
    pub unregistered_refills: u64,
}

/// The write a sealed slot needs: its fill buffer (a clone of the slot's `Rc`, trimmed to
/// the batch's padded length) and a file position.
pub(crate) struct PieceWrite {
    pub buf: Rc<DmaBuffer>,
    pub file_pos: u64,
}

impl Ring {
    pub fn new(buffers: RingBuffers) -> Ring {
        assert!(buffers.slots.len() >= 2);
        assert_eq!(buffers.spare_fill.len(), buffers.fill_bytes);
        let slots = buffers
            .slots
            .into_iter()
            .map(|bufs: SlotBuffers| Slot {
                bufs,
                state: SlotState::Free,
                generation: 0,
                file: None,
                key: FrameKey::from_seed(0),
                file_pos: 0,
                used_bytes: 0,
                limit_bytes: 0,
                marker_offset: 0,
                last_lsn: Lsn::ZERO,
                record_count: 0,
                padded_bytes: 0,
            })
            .collect();
        Ring {
            slots,
            open: None,
            next_open: 0,
            oldest: 0,
            spare_fill: Some(buffers.spare_fill),
            fill_bytes: buffers.fill_bytes,
            registered_ranges: buffers.registered_ranges,
            unregistered_refills: 0,
        }
    }

    /// Whether a slot is free to be opened.
    pub fn can_open(&self) -> bool {
        self.open.is_none() && self.slots[self.next_open].state == SlotState::Free
    }

    /// Opens the next slot for `target`; `prev_lsn` is the last LSN handed out so far.
    /// Panics unless [`Ring::can_open`].
    pub fn open(&mut self, target: BatchTarget, prev_lsn: Lsn) {
        assert!(self.can_open());
        assert_eq!(target.file_pos % BLOCK_BYTES as u64, 0);
        let idx = self.next_open;
        let slot = &mut self.slots[idx];
        let fill = Rc::get_mut(&mut slot.bufs.fill).expect("a free slot's buffer has no writer");
        assert!(target.limit_bytes <= fill.len());
        let mut used = 0;
        if let Some(h) = &target.header {
            h.encode(&mut fill.as_bytes_mut()[..BLOCK_BYTES]);
            used = BLOCK_BYTES;
        }
        slot.marker_offset = used;
        used += FRAME_HEADER_BYTES;
        assert!(used <= target.limit_bytes);
        slot.state = SlotState::Open;
        slot.generation = target.generation;
        slot.file = Some(target.file);
        slot.key = target.key;
        slot.file_pos = target.file_pos;
        slot.used_bytes = used;
        slot.limit_bytes = target.limit_bytes;
        slot.last_lsn = prev_lsn;
        slot.record_count = 0;
        slot.padded_bytes = 0;
        self.open = Some(idx);
        self.next_open = (idx + 1) % self.slots.len();
    }

    /// Space for one frame of `frame_bytes` in the open slot, with the slot's checksum key,
    /// or `None` when no slot is open or the frame does not fit.
    #[inline]
    pub fn reserve(&mut self, frame_bytes: usize, lsn: Lsn) -> Option<(&mut [u8], &FrameKey)> {
        let idx = self.open?;
        let slot = &mut self.slots[idx];
        if slot.used_bytes + frame_bytes > slot.limit_bytes {
            return None;
        }
        let start = slot.used_bytes;
        slot.used_bytes += frame_bytes;
        slot.last_lsn = lsn;
        slot.record_count += 1;
        let fill = Rc::get_mut(&mut slot.bufs.fill).expect("an open slot has no writer");
        Some((
            &mut fill.as_bytes_mut()[start..start + frame_bytes],
            &slot.key,
        ))
    }

    /// The open batch's first LSN and its marker's file position, when it holds a record.
    pub fn open_batch_start(&self) -> Option<(Lsn, u64)> {
        let slot = &self.slots[self.open?];
        (slot.record_count > 0).then(|| {
            let first = Lsn(slot.last_lsn.0 + 1 - u64::from(slot.record_count));
            (first, slot.file_pos + slot.marker_offset as u64)
        })
    }

    /// Records in the open slot (0 when none is open).
    pub fn open_record_count(&self) -> u32 {
        self.open.map_or(0, |i| self.slots[i].record_count)
    }

    /// Bytes used in the open slot, header block and marker included (0 when none is open).
    pub fn open_used_bytes(&self) -> usize {
        self.open.map_or(0, |i| self.slots[i].used_bytes)
    }

    /// Seals the open slot: writes its marker with `durable_lsn`, zeroes the tail up to the
    /// next 4 KiB boundary. Returns the file position right after the batch.
    pub fn seal_open(&mut self, durable_lsn: Lsn) -> u64 {
        let idx = self.open.take().expect("seal_open without an open slot");
        let slot = &mut self.slots[idx];
        let padded = slot.used_bytes.next_multiple_of(BLOCK_BYTES);
        assert!(padded <= slot.bufs.fill.len());
        let fill = Rc::get_mut(&mut slot.bufs.fill).expect("an open slot has no writer");
        let bytes = fill.as_bytes_mut();
        encode_marker_with(&mut bytes[slot.marker_offset..], &slot.key, durable_lsn);
        bytes[slot.used_bytes..padded].fill(0);
        slot.padded_bytes = padded;
        slot.state = SlotState::Sealed;
        slot.file_pos + padded as u64
    }

    /// The oldest sealed slot whose writes are not submitted yet.
    pub fn next_sealed(&self) -> Option<usize> {
        let n = self.slots.len();
        (0..n)
            .map(|i| (self.oldest + i) % n)
            .take_while(|&i| self.slots[i].state != SlotState::Free)
            .find(|&i| self.slots[i].state == SlotState::Sealed)
    }

    /// The write that puts sealed slot `idx` on disk, and marks the slot in flight. The
    /// batch goes out straight from its fill buffer: a partial one trims the buffer to its
    /// 4 KiB-padded length first (no copy; [`Ring::pop_written`] restores a full buffer).
    pub fn start_writes(&mut self, idx: usize, out: &mut Vec<PieceWrite>) {
        let slot = &mut self.slots[idx];
        assert_eq!(slot.state, SlotState::Sealed);
        let padded = slot.padded_bytes;
        assert!(padded.is_multiple_of(BLOCK_BYTES) && padded > 0);
        if padded < slot.bufs.fill.len() {
            Rc::get_mut(&mut slot.bufs.fill)
                .expect("a sealed slot's buffer has no writer")
                .trim_to_size(padded);
        }
        assert_eq!(slot.bufs.fill.len(), padded);
        out.push(PieceWrite {
            buf: slot.bufs.fill.clone(),
            file_pos: slot.file_pos,
        });
        slot.state = SlotState::InFlight { pending_writes: 1 };
    }

    /// One piece write of slot `idx` completed successfully.
    pub fn piece_written(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        match slot.state {
            SlotState::InFlight { pending_writes: 1 } => slot.state = SlotState::Written,
            SlotState::InFlight { pending_writes } => {
                slot.state = SlotState::InFlight {
                    pending_writes: pending_writes - 1,
                }
            }
            other => panic!("piece completion for a slot in state {other:?}"),
        }
    }

    /// Frees the oldest slot if it is Written and returns its index: the contiguous prefix of
    /// completed batches grows by one. `None` while the oldest batch is still pending.
    pub fn pop_written(&mut self) -> Option<usize> {
        let idx = self.oldest;
        if self.slots[idx].state != SlotState::Written {
            return None;
        }
        self.slots[idx].state = SlotState::Free;
        self.oldest = (idx + 1) % self.slots.len();
        self.restore_fill(idx);
        Some(idx)
    }

    /// Gives free slot `idx` a full-size fill buffer again if its last batch trimmed it:
    /// the spare goes in, the trimmed buffer is freed, and then a new spare is allocated
    /// from the executor's DMA arena (in that order, so the arena needs room for one spare).
    fn restore_fill(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        if slot.bufs.fill.len() == self.fill_bytes {
            return;
        }
        let fill = Rc::get_mut(&mut slot.bufs.fill).expect("a written slot's buffer has no writer");
        let spare = self
            .spare_fill
            .take()
            .expect("the ring holds a spare fill buffer");
        drop(std::mem::replace(fill, spare));
        let spare = glommio::allocate_dma_buffer(self.fill_bytes);
        if !self.registered_ranges.is_empty() && !lies_in(&self.registered_ranges, &spare) {
            self.unregistered_refills += 1;
        }
        self.spare_fill = Some(spare);
        debug_assert_eq!(self.slots[idx].bufs.fill.len(), self.fill_bytes);
    }

    /// Slots sealed or in flight (not yet Written).
    pub fn writes_pending(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Sealed | SlotState::InFlight { .. }))
            .count()
    }

    /// Whether every slot is Free.
    pub fn is_idle(&self) -> bool {
        self.slots.iter().all(|s| s.state == SlotState::Free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::Arena;
    use crate::lsn::ShardId;
    use crate::record::{decode, encode_record_with, frame_bytes, segment_seed, Frame};
    use crate::storage::StorageFile;
    use async_trait::async_trait;

    /// A file that is never written: ring tests do no I/O.
    struct NoFile;
    #[async_trait(?Send)]
    impl StorageFile for NoFile {
        async fn write_at(&self, _: Rc<DmaBuffer>, _: u64) -> std::io::Result<usize> {
            unreachable!()
        }
        async fn fdatasync(&self) -> std::io::Result<()> {
            unreachable!()
        }
    }

    const FILL: usize = 32 << 10;

    fn target(file_pos: u64, header: bool) -> BatchTarget {
        BatchTarget {
            generation: 7,
            file: Rc::new(NoFile),
            key: FrameKey::new(0, 7),
            file_pos,
            limit_bytes: FILL,
            header: header.then_some(SegmentHeader {
                shard: ShardId(0),
                generation: 7,
                base_lsn: Lsn(1),
                segment_bytes: 1 << 20,
            }),
        }
    }

    fn with_ring(slots: usize, f: impl FnOnce(Ring)) {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(4 << 20)
            .make()
            .unwrap();
        ex.run(async move {
            let arena = Arena::allocate(slots, FILL, 4096);
            f(Ring::new(arena.ring));
        });
    }

    fn append(ring: &mut Ring, lsn: u64, len: usize) -> bool {
        let payload = vec![lsn as u8; len];
        match ring.reserve(frame_bytes(len), Lsn(lsn)) {
            Some((dst, key)) => {
                encode_record_with(dst, key, Lsn(lsn), &payload);
                true
            }
            None => false,
        }
    }

    #[test]
    fn first_batch_of_a_segment_carries_header_marker_and_zero_padding() {
        with_ring(2, |mut ring| {
            ring.open(target(0, true), Lsn(0));
            // Header block + marker + 10 records of 1000 bytes: 4096 + 24 + 10 * 1024.
            for lsn in 1..=10 {
                assert!(append(&mut ring, lsn, 1000));
            }
            let end = ring.seal_open(Lsn(0));
            assert_eq!(end, 16384, "14360 bytes pad to 16 KiB");
            let idx = ring.next_sealed().unwrap();
            let expected = ring.slots[idx].bufs.fill.as_bytes()[..16384].to_vec();
            let mut writes = Vec::new();
            ring.start_writes(idx, &mut writes);
            let layout: Vec<(u64, usize)> =
                writes.iter().map(|w| (w.file_pos, w.buf.len())).collect();
            assert_eq!(layout, vec![(0, 16384)]);
            let mut written = vec![0u8; 16384];
            for w in &writes {
                let at = w.file_pos as usize;
                written[at..at + w.buf.len()].copy_from_slice(w.buf.as_bytes());
            }
            assert_eq!(written, expected);
            // The marker follows the header block; the padding is zero.
            let seed = segment_seed(0, 7);
            assert_eq!(
                decode(&written[4096..], seed),
                Frame::Marker {
                    durable_lsn: Lsn(0)
                }
            );
            assert!(written[4096 + 24 + 10 * 1024..].iter().all(|&b| b == 0));
        });
    }

    #[test]
    fn partial_batch_is_written_in_place_and_the_slot_gets_a_full_buffer_back() {
        with_ring(2, |mut ring| {
            ring.open(target(8192, false), Lsn(0));
            // marker + 11 frames of 1024 = 11288 bytes -> 12 KiB.
            for lsn in 1..=11 {
                assert!(append(&mut ring, lsn, 1000));
            }
            assert_eq!(ring.seal_open(Lsn(0)), 8192 + 12288);
            let idx = ring.next_sealed().unwrap();
            let fill_ptr = ring.slots[idx].bufs.fill.as_ptr();
            let mut writes = Vec::new();
            ring.start_writes(idx, &mut writes);
            let layout: Vec<(u64, usize)> =
                writes.iter().map(|w| (w.file_pos, w.buf.len())).collect();
            assert_eq!(layout, vec![(8192, 12288)], "one write of the padded batch");
            assert_eq!(
                writes[0].buf.as_ptr(),
                fill_ptr,
                "written in place, not copied"
            );
            assert_eq!(ring.writes_pending(), 1);
            drop(writes);
            ring.piece_written(idx);
            assert_eq!(ring.pop_written(), Some(idx));
            assert_eq!(ring.slots[idx].bufs.fill.len(), FILL, "full size again");
            assert_ne!(
                ring.slots[idx].bufs.fill.as_ptr(),
                fill_ptr,
                "the spare took over"
            );
            assert_eq!(ring.spare_fill.as_ref().map(|b| b.len()), Some(FILL));
        });
    }

    /// One partial batch through the ring: opened, sealed, written, popped (which gives
    /// the slot a full buffer back and allocates a new spare).
    fn partial_round_trip(ring: &mut Ring) {
        ring.open(target(8192, false), Lsn(0));
        assert!(append(ring, 1, 1000));
        ring.seal_open(Lsn(0));
        let idx = ring.next_sealed().unwrap();
        let mut writes = Vec::new();
        ring.start_writes(idx, &mut writes);
        drop(writes);
        ring.piece_written(idx);
        assert_eq!(ring.pop_written(), Some(idx));
    }

    #[test]
    fn a_spare_outside_the_registered_memory_is_counted() {
        with_ring(2, |mut ring| {
            // Ranges that hold every user-space address: the new spare is inside.
            ring.registered_ranges = vec![(0, usize::MAX / 2)];
            partial_round_trip(&mut ring);
            assert_eq!(ring.unregistered_refills, 0);
            // A range that holds no buffer: the new spare is counted as outside.
            ring.registered_ranges = vec![(4096, 4096)];
            partial_round_trip(&mut ring);
            assert_eq!(ring.unregistered_refills, 1);
            // Not registered at open: nothing to check, nothing counted.
            ring.registered_ranges.clear();
            partial_round_trip(&mut ring);
            assert_eq!(ring.unregistered_refills, 1);
        });
    }

    #[test]
    fn full_batch_is_written_straight_from_the_fill_buffer() {
        with_ring(2, |mut ring| {
            ring.open(target(0, false), Lsn(0));
            let mut lsn = 1;
            while append(&mut ring, lsn, 4000) {
                lsn += 1;
            }
            // 24 + 8 * 4024 = 32216 bytes fit in 32 KiB, the 9th frame does not.
            assert_eq!(lsn, 9);
            assert_eq!(ring.open_record_count(), 8);
            ring.seal_open(Lsn(0));
            let idx = ring.next_sealed().unwrap();
            let mut writes = Vec::new();
            ring.start_writes(idx, &mut writes);
            assert_eq!(writes.len(), 1);
            assert_eq!(writes[0].buf.len(), FILL);
            assert!(Rc::ptr_eq(&writes[0].buf, &ring.slots[idx].bufs.fill));
        });
    }

    #[test]
    fn watermark_only_passes_contiguous_completions_and_ring_applies_backpressure() {
        with_ring(3, |mut ring| {
            let mut pos = 0;
            for i in 0..3u64 {
                assert!(ring.can_open());
                ring.open(target(pos, false), Lsn(i));
                assert!(append(&mut ring, i + 1, 100));
                pos = ring.seal_open(Lsn(0));
            }
            assert!(!ring.can_open(), "every slot is busy: appends must wait");
            let mut writes = Vec::new();
            for expected in 0..3 {
                let idx = ring.next_sealed().unwrap();
                assert_eq!(idx, expected, "submitted in ring order");
                ring.start_writes(idx, &mut writes);
            }
            drop(writes);
            // Completions arrive out of order: 2, then 0, then 1.
            ring.piece_written(2);
            assert_eq!(ring.pop_written(), None, "slot 0 is still in flight");
            ring.piece_written(0);
            assert_eq!(ring.pop_written(), Some(0));
            assert_eq!(ring.pop_written(), None, "slot 1 is still in flight");
            assert!(ring.can_open(), "slot 0 is free again");
            ring.piece_written(1);
            assert_eq!(ring.pop_written(), Some(1));
            assert_eq!(ring.pop_written(), Some(2));
            assert_eq!(ring.slots[2].last_lsn, Lsn(3));
            assert!(ring.is_idle());
        });
    }
}
