//! `record::decode` on arbitrary bytes with an arbitrary seed (the input's first 8 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwal::format::{decode, Frame, FRAME_HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((seed, bytes)) = data.split_first_chunk::<8>() else {
        return;
    };
    let seed = u64::from_le_bytes(*seed);
    match decode(bytes, seed) {
        Frame::Record {
            lsn,
            payload,
            frame_bytes,
        } => {
            assert_ne!(lsn.0, 0);
            assert_ne!(lsn.0, u64::MAX);
            assert_eq!(payload.start, FRAME_HEADER_BYTES);
            assert!(payload.end > payload.start && payload.end <= frame_bytes);
            assert!(frame_bytes <= bytes.len());
        }
        Frame::Marker { .. } | Frame::Invalid(_) => {}
        Frame::Zero => assert!(bytes[..FRAME_HEADER_BYTES].iter().all(|&b| b == 0)),
    }
});
