//! `Shard::append` allocates nothing in steady state (segment rotation included).
mod common;
use common::*;

use shardwal::{Lsn, Shard, ShardId};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocs, counting};

#[test]
fn the_counter_sees_allocations() {
    let before = allocs();
    counting(true);
    let v: Vec<u8> = Vec::with_capacity(16);
    counting(false);
    std::hint::black_box(&v);
    assert_eq!(allocs() - before, 1);
    counting(true);
    let mut v = std::hint::black_box(v);
    v.extend_from_slice(&[1u8; 100]); // grows: one realloc
    counting(false);
    assert_eq!(allocs() - before, 2);
    // Nothing counted while the flag is off.
    let _w = std::hint::black_box(vec![0u8; 64]);
    assert_eq!(allocs() - before, 2);
}

/// Waits (outside any measurement) until the flusher has the next segment prepared, so that
/// a rotation during the next 200 appends never has to wait for it. Every segment after the
/// first is prepared by the flusher (`segments_prepared`), and every rotation takes one.
async fn next_segment_ready(s: &Shard) {
    loop {
        let m = s.metrics();
        if m.segments_prepared > m.rotations {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// 10,000 appends of 256 bytes, a commit every 200: each commit interval holds less than a
/// quarter of a segment and of the ring, so with the next segment prepared before it starts,
/// no append waits, and about every fourth interval rotates to a new segment.
#[test]
fn append_allocates_nothing() {
    const RECORD: usize = 256;
    const MEASURED: u64 = 10_000;
    const COMMIT_EVERY: u64 = 200;
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let (count, first_measured, last) = run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let mut buf = [0u8; RECORD];
        let fill = |buf: &mut [u8; RECORD], i: u64| {
            buf.fill((i % 251) as u8);
            buf[..8].copy_from_slice(&i.to_le_bytes());
        };
        // Warm up: enough to rotate segments and fill every flush buffer at least once.
        let mut i = 0u64;
        while i < 2_000 || s.metrics().rotations < 2 {
            i += 1;
            fill(&mut buf, i);
            let lsn = s.append(&buf).await.unwrap();
            if i.is_multiple_of(COMMIT_EVERY) {
                s.commit(lsn).await.unwrap();
            }
        }
        s.sync().await.unwrap();
        next_segment_ready(&s).await;
        let first_measured = i + 1;
        let m0 = s.metrics();

        // Measured: count allocations only inside each append (which must not yield).
        let before = allocs();
        let mut last = Lsn(0);
        for _ in 0..MEASURED {
            i += 1;
            fill(&mut buf, i);
            counting(true);
            let r = s.append(&buf).await;
            counting(false);
            last = r.unwrap();
            if i.is_multiple_of(COMMIT_EVERY) {
                s.commit(last).await.unwrap();
                next_segment_ready(&s).await;
            }
        }
        let count = allocs() - before;
        let m1 = s.metrics();
        assert_eq!(
            m1.ring_full_waits, m0.ring_full_waits,
            "an append waited, so the measurement is not of a non-yielding append"
        );
        assert_eq!(m1.appends - m0.appends, MEASURED);
        assert!(
            m1.rotations >= m0.rotations + 5,
            "the measured phase must rotate segments: {m0:?} -> {m1:?}"
        );
        s.close().await.unwrap();
        (count, first_measured, last)
    });
    assert_eq!(count, 0, "allocations inside Shard::append");
    assert_eq!(last, Lsn(first_measured + MEASURED - 1));
    // The records are really there.
    let got = read_all(d.path(), 0);
    assert_eq!(got.len() as u64, last.0);
    for (lsn, p) in got.iter().skip(first_measured as usize - 1).step_by(97) {
        assert_eq!(u64::from_le_bytes(p[..8].try_into().unwrap()), lsn.0);
        assert_eq!(p.len(), RECORD);
    }
}
