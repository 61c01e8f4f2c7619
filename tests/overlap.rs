//! Overlap inside a commit (issue 12, item 3): a large batch of 64 KiB records goes out in
//! pieces while the rest is still being appended, and each commit still costs exactly one
//! fdatasync. Asserts outcomes (counters, records read back), never wall-clock time.

mod common;
use common::*;

use shardwal::{Shard, ShardId, WalConfig};

const RECORD: usize = 64 << 10;
const PER_COMMIT: u64 = 16;
const COMMITS: u64 = 12;

fn config(dir: &std::path::Path) -> WalConfig {
    WalConfig::builder(dir)
        .shard_count(1)
        .placement(shardwal::CpuPlacement::Unbound)
        .flush_buffer_bytes(2 << 20)
        .flush_buffer_count(4)
        .segment_bytes(8 << 20)
        .build()
        .unwrap()
}

fn record(lsn: u64) -> Vec<u8> {
    let mut r = vec![(lsn % 251) as u8; RECORD];
    r[..8].copy_from_slice(&lsn.to_le_bytes());
    r
}

#[test]
fn a_large_batch_goes_out_in_pieces_with_one_fdatasync_per_commit() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let mut lsn = 0u64;
        let mut submitted_before_commit = 0;
        for c in 0..COMMITS {
            let m0 = s.metrics();
            for _ in 0..PER_COMMIT {
                lsn += 1;
                assert_eq!(s.append(&record(lsn)).await.unwrap().0, lsn);
            }
            let before_commit = s.metrics();
            // The first piece (512 KiB: 7 or 8 records) was sealed and its write submitted
            // by the flusher while this task went on appending the rest of the batch.
            assert!(
                before_commit.piece_seals > m0.piece_seals,
                "commit {c}: no piece"
            );
            if before_commit.write_ops > m0.write_ops {
                submitted_before_commit += 1;
            }
            assert_eq!(s.sync().await.unwrap().0, lsn);
            let m1 = s.metrics();
            assert!(
                m1.flushes - m0.flushes >= 2,
                "commit {c}: one write for the whole batch ({m0:?} -> {m1:?})"
            );
            assert_eq!(
                m1.fdatasyncs - m0.fdatasyncs,
                1,
                "commit {c}: the pieces cost more than one fdatasync ({m0:?} -> {m1:?})"
            );
        }
        assert_eq!(
            submitted_before_commit, COMMITS,
            "every commit's first piece went to the device before the commit"
        );
        s.close().await.unwrap();
    });
    let got = read_all(d.path(), 0);
    assert_eq!(got.len() as u64, COMMITS * PER_COMMIT);
    for (lsn, p) in &got {
        assert_eq!(p, &record(lsn.0));
    }
}

/// With a commit waiting on the open batch (many small `append_durable`s), no piece is ever
/// sealed: small records keep the group-commit path they had.
#[test]
fn waiting_commits_turn_pieces_off() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        durable_writers(&s, 16, 200).await;
        assert_eq!(s.metrics().piece_seals, 0);
        s.close().await.unwrap();
    });
}
