//! `recovery::scan_segment_bytes` on arbitrary bytes taken as a whole segment file.
//!
//! The same bytes are also laid out as a segment whose header verifies: the first 56 bytes
//! are the header fields (its checksum is sealed over them, the rest of the header block is
//! zero) and the remainder goes from the first frame position (4 KiB) on. That way the
//! fuzzer spends its time in the frame walk instead of on the header block and checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwal::format::{scan_segment_bytes, SegmentEnd};
use shardwal::format::BLOCK_BYTES;
use xxhash_rust::xxh3::xxh3_64;

fn check(bytes: &[u8]) {
    let Ok(s) = scan_segment_bytes(bytes) else {
        return;
    };
    assert_ne!(s.header.base_lsn.0, 0);
    assert_eq!(s.next_lsn.0 - s.header.base_lsn.0, s.record_count);
    match s.end {
        SegmentEnd::Clean { write_pos } => {
            let at = write_pos as usize;
            assert!(at >= BLOCK_BYTES && at.is_multiple_of(BLOCK_BYTES));
            assert!(bytes[at..].iter().all(|&b| b == 0));
        }
        SegmentEnd::Damaged { offset, .. } => {
            let at = offset as usize;
            assert!(at >= BLOCK_BYTES && at < bytes.len());
        }
        SegmentEnd::Full => {}
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let split = data.len().min(56);
    let mut image = vec![0u8; BLOCK_BYTES + data.len() - split];
    image[..split].copy_from_slice(&data[..split]);
    let sum = xxh3_64(&image[..56]);
    image[56..64].copy_from_slice(&sum.to_le_bytes());
    image[BLOCK_BYTES..].copy_from_slice(&data[split..]);
    check(&image);
});
