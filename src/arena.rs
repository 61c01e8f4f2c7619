//! The shard's DMA-aligned buffers, allocated once when the shard opens.
//!
//! Each ring slot gets one *fill* buffer of `flush_buffer_bytes`, where appends copy records,
//! and the ring keeps one *spare* fill buffer. glommio 0.9 writes a `DmaBuffer` whole, so a
//! partly filled batch is written by trimming its fill buffer to the batch's 4 KiB-padded
//! length (`DmaBuffer::trim_to_size`) and writing it in place: one write, no second copy.
//! Trimming cannot be undone, so when that write completed and the slot is freed, the ring
//! swaps the trimmed buffer for the spare, frees it, and allocates a new spare of full size
//! from the same arena (freed first, so the arena never holds more than one spare). That
//! allocation comes from glommio's `io_memory` buddy allocator, not the process heap.
//!
//! Buffers come from the executor's `io_memory` arena, which glommio registers with io_uring
//! when the memlock limit allows (writes then go out as `WRITE_FIXED`, without per-I/O page
//! pinning). When the arena cannot serve a buffer, glommio silently falls back to the heap;
//! [`Arena::registered`] tells which one happened at open, by checking every buffer's address
//! against the ranges the kernel lists under `UserBufs` in `/proc/self/fdinfo`.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::segment::BLOCK_BYTES;

/// The buffers of one ring slot.
pub(crate) struct SlotBuffers {
    /// Where appends copy records; trimmed to a partial batch's length while it is written.
    pub fill: Rc<DmaBuffer>,
}

/// Every buffer the ring owns: one per slot, plus the spare that replaces a trimmed one.
pub(crate) struct RingBuffers {
    pub slots: Vec<SlotBuffers>,
    /// A full-size fill buffer, swapped in for a slot's trimmed one when the slot is freed.
    pub spare_fill: DmaBuffer,
    /// The size of every untrimmed fill buffer, in bytes.
    pub fill_bytes: usize,
    /// The io_uring-registered address ranges `(start, len)` the buffers lie in, when they
    /// all do (empty otherwise): the ring checks each spare it allocates later against them.
    pub registered_ranges: Vec<(usize, usize)>,
}

/// Whether `buf` lies inside one of `ranges` (`(start, len)` pairs).
pub(crate) fn lies_in(ranges: &[(usize, usize)], buf: &DmaBuffer) -> bool {
    let start = buf.as_ptr() as usize;
    ranges
        .iter()
        .any(|&(lo, len)| start >= lo && start + buf.len() <= lo + len)
}

/// All DMA memory a shard uses, allocated at open.
pub(crate) struct Arena {
    pub ring: RingBuffers,
    /// A zeroed buffer used to zero segments ahead of the write head (one piece).
    pub zeros: Rc<DmaBuffer>,
    /// One zeroed 4 KiB block, written over the header block of a recycled segment.
    pub zero_block: Rc<DmaBuffer>,
    /// Whether every buffer lies in io_uring-registered memory.
    pub registered: bool,
    /// Bytes allocated in all.
    pub total_bytes: usize,
}

impl Arena {
    /// Allocates `slot_count` fill buffers of `flush_buffer_bytes` and one spare, one zero
    /// buffer of `zero_bytes` and one zeroed 4 KiB block. Must run inside a glommio executor.
    pub fn allocate(slot_count: usize, flush_buffer_bytes: usize, zero_bytes: usize) -> Arena {
        assert!(flush_buffer_bytes.is_power_of_two() && flush_buffer_bytes >= 2 * BLOCK_BYTES);
        assert!(zero_bytes.is_multiple_of(BLOCK_BYTES) && zero_bytes > 0);
        let slots: Vec<SlotBuffers> = (0..slot_count)
            .map(|_| SlotBuffers {
                fill: Rc::new(glommio::allocate_dma_buffer(flush_buffer_bytes)),
            })
            .collect();
        let spare_fill = glommio::allocate_dma_buffer(flush_buffer_bytes);
        let mut zeros = glommio::allocate_dma_buffer(zero_bytes);
        zeros.as_bytes_mut().fill(0);
        let mut zero_block = glommio::allocate_dma_buffer(BLOCK_BYTES);
        zero_block.as_bytes_mut().fill(0);
        let total_bytes = (slot_count + 1) * flush_buffer_bytes + zeros.len() + zero_block.len();
        let ranges = registered_ranges();
        let inside = |b: &DmaBuffer| lies_in(&ranges, b);
        let registered = inside(&zeros)
            && inside(&zero_block)
            && inside(&spare_fill)
            && slots.iter().all(|s| inside(&s.fill));
        Arena {
            ring: RingBuffers {
                slots,
                spare_fill,
                fill_bytes: flush_buffer_bytes,
                registered_ranges: if registered { ranges } else { Vec::new() },
            },
            zeros: Rc::new(zeros),
            zero_block: Rc::new(zero_block),
            registered,
            total_bytes,
        }
    }
}

/// Address ranges `(start, len)` registered with any io_uring of this process, read from
/// `/proc/self/fdinfo` (lines like `    0: 0x7fdf2ba55000/8388608` under `UserBufs:`).
/// Empty when nothing is registered or the kernel does not report it.
pub(crate) fn registered_ranges() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let mut in_bufs = false;
        for line in text.lines() {
            if line.starts_with("UserBufs:") {
                in_bufs = true;
                continue;
            }
            if !in_bufs {
                continue;
            }
            match parse_range(line) {
                Some(r) => out.push(r),
                None => in_bufs = false,
            }
        }
    }
    out
}

fn parse_range(line: &str) -> Option<(usize, usize)> {
    let (_, rest) = line.trim().split_once(':')?;
    let (addr, len) = rest.trim().split_once('/')?;
    let addr = usize::from_str_radix(addr.trim().strip_prefix("0x")?, 16).ok()?;
    let len = len.trim().parse().ok()?;
    Some((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fdinfo_ranges() {
        assert_eq!(
            parse_range("    0: 0x7fdf2ba55000/8388608"),
            Some((0x7fdf2ba55000, 8388608))
        );
        assert_eq!(parse_range("PollList:"), None);
    }

    #[test]
    fn allocates_fill_buffers_and_a_spare_and_reports_registration() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(8 << 20)
            .make()
            .unwrap();
        ex.run(async {
            let a = Arena::allocate(2, 64 << 10, 16 << 10);
            assert_eq!(a.ring.slots.len(), 2);
            assert_eq!(a.ring.fill_bytes, 64 << 10);
            assert_eq!(a.ring.spare_fill.len(), 64 << 10);
            for s in &a.ring.slots {
                assert_eq!(s.fill.len(), 64 << 10);
                assert_eq!(s.fill.as_ptr() as usize % BLOCK_BYTES, 0);
            }
            assert_eq!(a.ring.spare_fill.as_ptr() as usize % BLOCK_BYTES, 0);
            assert!(a.zeros.as_bytes().iter().all(|&b| b == 0));
            assert_eq!(a.total_bytes, 3 * 64 * 1024 + 16 * 1024 + 4096);
            assert!(a.zero_block.as_bytes().iter().all(|&b| b == 0));
            // Running as root (or with enough memlock) the arena is registered; either way
            // the answer must agree with what the kernel lists.
            let ranges = registered_ranges();
            assert_eq!(a.registered, !ranges.is_empty());
        });
    }
}
