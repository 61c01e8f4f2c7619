//! The shard's DMA-aligned buffers, allocated once when the shard opens.
//!
//! Each ring slot gets one *fill* buffer of `flush_buffer_bytes`, where appends copy records,
//! and a ladder of *piece* buffers of 4 KiB, 8 KiB, ... `flush_buffer_bytes / 2`. glommio
//! writes a `DmaBuffer` whole and cannot grow one back after trimming, so a partly filled
//! flush buffer is written as the binary decomposition of its 4 KiB-padded length: the fill
//! buffer itself when it is full, otherwise one piece per set bit (a 72 KiB batch is a
//! 64 KiB and an 8 KiB write at consecutive positions). Nothing is allocated after open.
//!
//! Buffers come from the executor's `io_memory` arena, which glommio registers with io_uring
//! when the memlock limit allows (writes then go out as `WRITE_FIXED`, without per-I/O page
//! pinning). When the arena cannot serve a buffer, glommio silently falls back to the heap;
//! [`Arena::registered`] tells which one happened, by checking every buffer's address
//! against the ranges the kernel lists under `UserBufs` in `/proc/self/fdinfo`.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::segment::BLOCK_BYTES;

/// The buffers of one ring slot.
pub(crate) struct SlotBuffers {
    pub fill: Rc<DmaBuffer>,
    /// `pieces[k]` holds `BLOCK_BYTES << k` bytes.
    pub pieces: Vec<Rc<DmaBuffer>>,
}

/// All DMA memory a shard uses, allocated at open.
pub(crate) struct Arena {
    pub slots: Vec<SlotBuffers>,
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
    /// Allocates `slot_count` fill buffers of `flush_buffer_bytes` with their piece ladders,
    /// one zero buffer of `zero_bytes` and one zeroed 4 KiB block. Must run inside a glommio executor.
    pub fn allocate(slot_count: usize, flush_buffer_bytes: usize, zero_bytes: usize) -> Arena {
        assert!(flush_buffer_bytes.is_power_of_two() && flush_buffer_bytes >= 2 * BLOCK_BYTES);
        assert!(zero_bytes.is_multiple_of(BLOCK_BYTES) && zero_bytes > 0);
        let piece_count = (flush_buffer_bytes / BLOCK_BYTES).trailing_zeros() as usize;
        let mut total_bytes = 0;
        let mut slots = Vec::with_capacity(slot_count);
        for _ in 0..slot_count {
            let fill = glommio::allocate_dma_buffer(flush_buffer_bytes);
            total_bytes += fill.len();
            let pieces: Vec<Rc<DmaBuffer>> = (0..piece_count)
                .map(|k| {
                    let b = glommio::allocate_dma_buffer(BLOCK_BYTES << k);
                    total_bytes += b.len();
                    Rc::new(b)
                })
                .collect();
            slots.push(SlotBuffers {
                fill: Rc::new(fill),
                pieces,
            });
        }
        let mut zeros = glommio::allocate_dma_buffer(zero_bytes);
        zeros.as_bytes_mut().fill(0);
        total_bytes += zeros.len();
        let mut zero_block = glommio::allocate_dma_buffer(BLOCK_BYTES);
        zero_block.as_bytes_mut().fill(0);
        total_bytes += zero_block.len();
        let ranges = registered_ranges();
        let inside = |b: &DmaBuffer| {
            let start = b.as_ptr() as usize;
            ranges
                .iter()
                .any(|&(lo, len)| start >= lo && start + b.len() <= lo + len)
        };
        let registered = inside(&zeros)
            && inside(&zero_block)
            && slots
                .iter()
                .all(|s| inside(&s.fill) && s.pieces.iter().all(|p| inside(p)));
        Arena {
            slots,
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
    fn allocates_ladder_once_and_reports_registration() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(8 << 20)
            .make()
            .unwrap();
        ex.run(async {
            let a = Arena::allocate(2, 64 << 10, 16 << 10);
            assert_eq!(a.slots.len(), 2);
            let sizes: Vec<usize> = a.slots[0].pieces.iter().map(|p| p.len()).collect();
            assert_eq!(sizes, vec![4096, 8192, 16384, 32768]);
            for s in &a.slots {
                assert_eq!(s.fill.as_ptr() as usize % BLOCK_BYTES, 0);
                for p in &s.pieces {
                    assert_eq!(p.as_ptr() as usize % BLOCK_BYTES, 0);
                }
            }
            assert!(a.zeros.as_bytes().iter().all(|&b| b == 0));
            assert_eq!(a.total_bytes, 2 * (64 + 60) * 1024 + 16 * 1024 + 4096);
            assert!(a.zero_block.as_bytes().iter().all(|&b| b == 0));
            // Running as root (or with enough memlock) the arena is registered; either way
            // the answer must agree with what the kernel lists.
            let ranges = registered_ranges();
            assert_eq!(a.registered, !ranges.is_empty());
        });
    }
}
