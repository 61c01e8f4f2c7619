//! `segment::SegmentHeader::decode` on arbitrary bytes; a header that decodes re-encodes to
//! the same 64 header bytes.
//!
//! A header block is 4 KiB and shorter input is rejected at once, so an input shorter than a
//! block is also tried zero-padded to one, and once more with its checksum (bytes 56..64)
//! sealed over its first 56 bytes: that lets the fuzzer reach the field checks behind the
//! checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwal::format::{SegmentHeader, BLOCK_BYTES};
use xxhash_rust::xxh3::xxh3_64;

fn check(bytes: &[u8]) {
    let Ok(header) = SegmentHeader::decode(bytes) else {
        return;
    };
    assert_ne!(header.base_lsn.0, 0);
    let mut block = vec![0xA5u8; BLOCK_BYTES];
    header.encode(&mut block);
    assert_eq!(&block[..64], &bytes[..64]);
    assert_eq!(SegmentHeader::decode(&block), Ok(header));
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() < BLOCK_BYTES {
        let mut block = data.to_vec();
        block.resize(BLOCK_BYTES, 0);
        check(&block);
        let sum = xxh3_64(&block[..56]);
        block[56..64].copy_from_slice(&sum.to_le_bytes());
        check(&block);
    }
});
