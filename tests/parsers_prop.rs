//! Property tests of the on-disk parsers: [`record::decode`], [`SegmentHeader::decode`] and
//! [`scan_segment_bytes`] never panic and never allocate, whatever bytes they get; a segment
//! built from valid frames and then cut anywhere reads back as exactly the records that lie
//! wholly before the cut (a prefix of what was written, never a record that was not);
//! damage anywhere never produces a wrong record.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use shardwal::format::{self as record, encode_marker, encode_record, segment_seed, Frame};
use shardwal::format::{scan_segment_bytes, SegmentEnd};
use shardwal::format::{segment_path, shard_dir, HeaderError, SegmentHeader, BLOCK_BYTES};
use shardwal::{Error, LogReader, Lsn, ShardId};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn the_counter_sees_allocations() {
    let (v, n) = allocations(|| Vec::<u8>::with_capacity(16));
    std::hint::black_box(&v);
    assert_eq!(n, 1);
}

// ---------------------------------------------------------------------------------------
// Building segments the way a shard writes them.

/// A segment image and where its records are.
struct Built {
    bytes: Vec<u8>,
    /// `(lsn, payload, checksummed bytes of the frame)` in order.
    records: Vec<(Lsn, Vec<u8>, Range<usize>)>,
}

fn payload_bytes(lsn: u64, len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(31)
                .wrapping_add(lsn.wrapping_mul(7)) as u8
                ^ salt
        })
        .collect()
}

/// A segment of shard `shard`, generation `generation`, starting at `base_lsn`: a header
/// block, then one write per element of `writes` (each starts at a 4 KiB boundary with a
/// marker vouching for every earlier record, then its records, zero padding to the next
/// boundary), then `spare_blocks` zero blocks. `writes` holds payload lengths.
fn build(
    shard: u32,
    generation: u64,
    base_lsn: u64,
    writes: &[Vec<usize>],
    spare_blocks: usize,
    salt: u8,
) -> Built {
    let seed = segment_seed(shard, generation);
    let total: usize = writes
        .iter()
        .map(|w| {
            (24 + w.iter().map(|&l| record::frame_bytes(l)).sum::<usize>())
                .next_multiple_of(BLOCK_BYTES)
        })
        .sum();
    let mut bytes = vec![0u8; BLOCK_BYTES + total + spare_blocks * BLOCK_BYTES];
    let mut records = Vec::new();
    let mut pos = BLOCK_BYTES;
    let mut lsn = base_lsn;
    for w in writes {
        pos += encode_marker(&mut bytes[pos..], seed, Lsn(lsn.saturating_sub(1)));
        for &len in w {
            let p = payload_bytes(lsn, len, salt);
            let n = encode_record(&mut bytes[pos..], seed, Lsn(lsn), &p);
            records.push((Lsn(lsn), p, pos..pos + 24 + len));
            pos += n;
            lsn = lsn.wrapping_add(1);
        }
        pos = pos.next_multiple_of(BLOCK_BYTES);
    }
    let header = SegmentHeader {
        shard: ShardId(shard),
        generation,
        base_lsn: Lsn(base_lsn),
        segment_bytes: bytes.len() as u64,
    };
    header.encode(&mut bytes);
    Built { bytes, records }
}

/// Puts `bytes` into `dir` as the only segment (generation 1) of shard 0 and reads every
/// record back through the public path.
fn read_dir(dir: &Path, bytes: &[u8]) -> Result<Vec<(Lsn, Vec<u8>)>, Error> {
    let sd = shard_dir(dir, ShardId(0));
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::write(segment_path(&sd, 1), bytes).unwrap();
    LogReader::open(dir, ShardId(0), Lsn(1))?
        .map(|r| r.map(|r| (r.lsn, r.payload.to_vec())))
        .collect()
}

fn writes_strategy() -> impl Strategy<Value = Vec<Vec<usize>>> {
    // Lengths near 4 KiB make frames that cross block boundaries and writes that end 8 or
    // 16 bytes before one (short padding).
    let len = prop_oneof![1usize..64, 64usize..1200, 3990usize..4050];
    proptest::collection::vec(proptest::collection::vec(len, 1..5), 1..5)
}

fn arbitrary_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn record_decode_never_panics_nor_allocates(bytes in arbitrary_bytes(300), seed: u64) {
        let (frame, allocs) = allocations(|| record::decode(&bytes, seed));
        prop_assert_eq!(allocs, 0);
        if let Frame::Record { payload, frame_bytes, .. } = frame {
            prop_assert!(payload.end <= bytes.len() && frame_bytes <= bytes.len());
        }
    }

    #[test]
    fn header_decode_never_panics_nor_allocates(bytes in arbitrary_bytes(5000)) {
        let (_, allocs) = allocations(|| SegmentHeader::decode(&bytes));
        prop_assert_eq!(allocs, 0);
    }

    /// Arbitrary bytes, and arbitrary bytes behind a header that verifies.
    #[test]
    fn segment_scan_never_panics_nor_allocates(
        mut bytes in arbitrary_bytes(3 * BLOCK_BYTES),
        with_header: bool,
        shard: u32,
        generation: u64,
        base_lsn in prop_oneof![Just(0u64), Just(1), any::<u64>(), Just(u64::MAX)],
    ) {
        if with_header {
            bytes.resize(bytes.len().max(BLOCK_BYTES), 0);
            let header = SegmentHeader { shard: ShardId(shard), generation, base_lsn: Lsn(base_lsn), segment_bytes: 0 };
            let mut block = vec![0u8; BLOCK_BYTES];
            header.encode(&mut block);
            bytes[..64].copy_from_slice(&block[..64]);
        }
        let (summary, allocs) = allocations(|| scan_segment_bytes(&bytes));
        prop_assert_eq!(allocs, 0);
        if let Ok(s) = summary {
            prop_assert_eq!(s.next_lsn.0 - s.header.base_lsn.0, s.record_count);
        }
    }

    /// Valid frames behind headers with extreme fields (base LSN 0, LSNs up to u64::MAX):
    /// neither the scanner nor the reader may panic.
    #[test]
    fn extreme_header_fields_do_not_panic(
        writes in proptest::collection::vec(proptest::collection::vec(1usize..100, 0..3), 0..3),
        base_lsn in prop_oneof![Just(0u64), Just(1), Just(u64::MAX - 2), Just(u64::MAX)],
        spare_blocks in 0usize..2,
    ) {
        let b = build(0, 1, base_lsn, &writes, spare_blocks, 0);
        let _ = scan_segment_bytes(&b.bytes);
        let d = tempfile::tempdir().unwrap();
        if let Ok(records) = read_dir(d.path(), &b.bytes) {
            for (i, (lsn, p)) in records.iter().enumerate() {
                prop_assert_eq!(&b.records[i].0, lsn);
                prop_assert_eq!(&b.records[i].1, p);
            }
        }
    }

    /// A segment of valid frames, cut at any byte: recovery and the reader return exactly
    /// the records whose checksummed bytes lie wholly before the cut, and nothing else.
    #[test]
    fn truncated_segment_yields_exactly_the_prefix_before_the_cut(
        writes in writes_strategy(),
        spare_blocks in 0usize..3,
        cut_frac in 0.0f64..=1.0,
        salt: u8,
    ) {
        let b = build(0, 1, 1, &writes, spare_blocks, salt);
        let cut = ((b.bytes.len() as f64) * cut_frac) as usize;
        let bytes = &b.bytes[..cut.min(b.bytes.len())];
        let survivors = b.records.iter().take_while(|r| r.2.end <= bytes.len()).count();

        // The in-memory scanner agrees.
        match scan_segment_bytes(bytes) {
            Ok(s) => prop_assert_eq!(s.record_count as usize, survivors),
            Err(e) => {
                prop_assert!(bytes.len() < BLOCK_BYTES, "{:?}", e);
                prop_assert!(matches!(e, HeaderError::Unused | HeaderError::Corrupt(_)));
            }
        }

        let d = tempfile::tempdir().unwrap();
        let got = read_dir(d.path(), bytes);
        prop_assert!(got.is_ok(), "cut at {}: {:?}", bytes.len(), got);
        let got = got.unwrap();
        prop_assert_eq!(got.len(), survivors, "cut at {} of {}", bytes.len(), b.bytes.len());
        for (i, (lsn, p)) in got.iter().enumerate() {
            prop_assert_eq!(*lsn, Lsn(i as u64 + 1));
            prop_assert_eq!(p, &b.records[i].1);
        }
    }

    /// The whole segment scans as written.
    #[test]
    fn whole_segment_scans_as_written(writes in writes_strategy(), spare_blocks in 0usize..3) {
        let b = build(2, 9, 100, &writes, spare_blocks, 0);
        let s = scan_segment_bytes(&b.bytes).unwrap();
        prop_assert_eq!(s.record_count as usize, b.records.len());
        prop_assert_eq!(s.next_lsn, Lsn(100 + b.records.len() as u64));
        let last_write = writes.last().unwrap().len() as u64;
        prop_assert_eq!(s.vouched_lsn, Lsn(s.next_lsn.0 - last_write - 1));
        if spare_blocks > 0 {
            prop_assert!(matches!(s.end, SegmentEnd::Clean { .. }), "{:?}", s.end);
        } else {
            prop_assert_eq!(s.end, SegmentEnd::Full);
        }
    }

    /// Arbitrary bytes written over a valid segment: whatever comes back is a correct prefix
    /// (or an error); a wrong record never does.
    #[test]
    fn damaged_segment_never_yields_a_wrong_record(
        writes in writes_strategy(),
        at_frac in 0.0f64..1.0,
        garbage in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut b = build(0, 1, 1, &writes, 1, 0);
        let at = ((b.bytes.len() as f64) * at_frac) as usize;
        let end = (at + garbage.len()).min(b.bytes.len());
        b.bytes[at..end].copy_from_slice(&garbage[..end - at]);
        let _ = scan_segment_bytes(&b.bytes);
        let d = tempfile::tempdir().unwrap();
        if let Ok(records) = read_dir(d.path(), &b.bytes) {
            prop_assert!(records.len() <= b.records.len());
            for (i, (lsn, p)) in records.iter().enumerate() {
                prop_assert_eq!(*lsn, Lsn(i as u64 + 1));
                prop_assert_eq!(p, &b.records[i].1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hostile lengths.

/// A frame header that claims a huge payload is rejected at once: no allocation, no hashing
/// of data that is not there, whatever the claimed length.
#[test]
fn hostile_lengths_are_rejected_quickly_without_allocating() {
    let seed = segment_seed(0, 1);
    let b = build(0, 1, 1, &[vec![100, 200]], 1, 0);
    let off = b.records[1].2.start;
    let started = Instant::now();
    for claimed in [201u32, 4096, 1 << 20, 1 << 30, u32::MAX - 7, u32::MAX] {
        let mut bytes = b.bytes.clone();
        bytes[off + 8..off + 12].copy_from_slice(&claimed.to_le_bytes());
        for _ in 0..1000 {
            let (frame, allocs) = allocations(|| record::decode(&bytes[off..], seed));
            assert_eq!(allocs, 0);
            assert!(matches!(frame, Frame::Invalid(_)), "{claimed}: {frame:?}");
        }
        let (summary, allocs) = allocations(|| scan_segment_bytes(&bytes));
        assert_eq!(allocs, 0);
        let s = summary.unwrap();
        assert_eq!(s.record_count, 1, "{claimed}");
        match s.end {
            SegmentEnd::Damaged { offset, .. } => assert_eq!(offset as usize, off),
            other => panic!("{claimed}: {other:?}"),
        }
        // Through the directory: an unvouched tail, cut before the hostile frame.
        let d = tempfile::tempdir().unwrap();
        let got = read_dir(d.path(), &bytes).unwrap();
        assert_eq!(got.len(), 1);
    }
    // 6000 decodes and 6 scans of a 12 KiB segment: far below a second even in a debug
    // build, and nothing like hashing gigabytes.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Huge lengths in a header-only slice, too.
    let mut h = [0u8; 24];
    h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    h[12] = 1;
    h[0] = 1;
    assert!(matches!(record::decode(&h, seed), Frame::Invalid(_)));
}

// ---------------------------------------------------------------------------------------
// Regressions found by `extreme_header_fields_do_not_panic`.

/// A header that verifies but claims base LSN 0 (LSNs start at 1) made `LogReader::open`
/// underflow computing the log's last LSN. It is now a corrupt header: nothing was
/// vouched for, so the log reads as empty.
#[test]
fn regression_header_with_base_lsn_0() {
    let b = build(0, 1, 0, &[], 1, 0);
    assert_eq!(
        scan_segment_bytes(&b.bytes),
        Err(HeaderError::Corrupt("base lsn 0"))
    );
    let d = tempfile::tempdir().unwrap();
    assert_eq!(read_dir(d.path(), &b.bytes).unwrap(), vec![]);
}

/// A record that verifies with LSN u64::MAX made the scanner overflow computing the next
/// LSN. It is now an invalid frame (a damaged end of the segment).
#[test]
fn regression_record_with_lsn_u64_max() {
    let b = build(0, 1, u64::MAX - 1, &[vec![10, 10]], 1, 0);
    let s = scan_segment_bytes(&b.bytes).unwrap();
    assert_eq!(s.record_count, 1);
    assert_eq!(s.next_lsn, Lsn(u64::MAX));
    assert_eq!(
        s.end,
        SegmentEnd::Damaged {
            offset: b.records[1].2.start as u64,
            reason: "record with lsn u64::MAX"
        }
    );
    let seed = segment_seed(0, 1);
    assert_eq!(
        record::decode(&b.bytes[b.records[1].2.start..], seed),
        Frame::Invalid("record with lsn u64::MAX")
    );
}
