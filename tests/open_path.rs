//! Opening is fast because its data I/O is bounded (issue 12, item 2), proven by counting
//! the storage operations rather than by timing them:
//!
//! * a fresh open creates one segment, reserves it (`allocate`), fsyncs the directory, and
//!   zeroes the segment's first 2 MiB at most (`FIRST_SEGMENT_MAX_BYTES`, whatever the
//!   flush buffers) with one fdatasync; the flusher prepares and zeroes nothing until the
//!   first commit is durable; that commit is one data write and one fdatasync, into the
//!   segment the open created;
//! * reopening a closed log creates, allocates and syncs nothing, writes no record before
//!   the first append, and leaves every byte of the segments that hold records as it was.
//!
//! Timings are in `examples/open_time.rs`.

mod common;
use common::*;

use std::rc::Rc;

use shardwal::storage::{DmaStorage, Fault, FaultOp, FaultPlan, FaultProbe, FaultyStorage};
use shardwal::{Shard, ShardId, WalConfig};

fn counted() -> (Rc<FaultyStorage<DmaStorage>>, FaultProbe) {
    let storage = FaultyStorage::with_plan(DmaStorage::new(false), FaultPlan::new(Vec::new()));
    let probe = storage.probe();
    (Rc::new(storage), probe)
}

/// Zero pieces the shard completed (a piece is 256 KiB, or one flush buffer if smaller).
fn zero_pieces(s: &Shard) -> u64 {
    let piece = (256u64 << 10).min(s.config().flush_buffer_bytes() as u64);
    s.metrics().zeroed_bytes / piece
}

fn calls(probe: &FaultProbe) -> Vec<(FaultOp, u64)> {
    FaultOp::ALL
        .iter()
        .map(|&op| (op, probe.calls(op)))
        .collect()
}

#[test]
fn a_fresh_open_zeroes_only_its_small_first_segment_and_the_first_commit_is_one_write_and_one_sync()
{
    let d = tempfile::tempdir().unwrap();
    // The default geometry: 64 MiB segments, 1 MiB flush buffers.
    let cfg = WalConfig::builder(d.path())
        .shard_count(1)
        .placement(shardwal::CpuPlacement::Unbound)
        .build()
        .unwrap();
    run(&cfg, || async {
        let (storage, probe) = counted();
        let s = Shard::open_with_storage(&cfg, ShardId(0), storage)
            .await
            .unwrap();
        let after_open = calls(&probe);
        // One segment created, reserved and its name made durable, then zeroed whole (2 MiB
        // in 256 KiB pieces) and synced once; no record written; and the flusher prepares
        // and zeroes nothing more before the first commit.
        let m = s.metrics();
        assert_eq!((m.flushes, m.write_ops, m.fdatasyncs), (0, 0, 0), "{m:?}");
        let open_writes = (2 << 20) / (256 << 10);
        for (op, n) in [
            (FaultOp::Write, open_writes),
            (FaultOp::Fdatasync, 1),
            (FaultOp::Create, 1),
            (FaultOp::Allocate, 1),
            (FaultOp::SyncDir, 1),
        ] {
            assert_eq!(probe.calls(op), n, "{op:?}: {after_open:?}");
        }
        // Let the flusher run (it has nothing to do).
        for _ in 0..5 {
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert_eq!(
            calls(&probe),
            after_open,
            "the idle flusher did I/O before a commit"
        );
        let files = seg_files(d.path(), 0);
        assert_eq!(files.len(), 1, "{files:?}");
        // The first segment is small (2 MiB of the default 64) and reserved whole.
        let first =
            shardwal::format::first_segment_bytes(cfg.segment_bytes(), cfg.flush_buffer_bytes());
        assert_eq!(first, 2 << 20);
        assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), first);

        let lsn = s.append_durable(b"first").await.unwrap();
        let m = s.metrics();
        assert_eq!((m.flushes, m.write_ops, m.fdatasyncs), (1, 1, 1), "{m:?}");
        assert_eq!(s.durable_lsn(), lsn);
        // Whatever else the flusher did meanwhile is preparation of later blocks or files,
        // never a data write or a sync in front of this commit.
        assert!(
            probe.writes() <= open_writes + 1 + zero_pieces(&s) + 1,
            "{:?}",
            calls(&probe)
        );
        assert_eq!(probe.fdatasyncs(), 1 + 1);
        assert_eq!(
            seg_files(d.path(), 0)[0],
            files[0],
            "written into the first segment"
        );
        s.close().await.unwrap();
    });
    assert_eq!(read_all(d.path(), 0).len(), 1);
}

/// With 4 MiB flush buffers the first segment is two buffers (8 MiB); the open still zeroes
/// only its first 2 MiB, and records go past that prefix as well.
#[test]
fn a_large_first_segment_is_zeroed_only_up_to_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let cfg = WalConfig::builder(d.path())
        .shard_count(1)
        .placement(shardwal::CpuPlacement::Unbound)
        .flush_buffer_bytes(4 << 20)
        .build()
        .unwrap();
    let first =
        shardwal::format::first_segment_bytes(cfg.segment_bytes(), cfg.flush_buffer_bytes());
    assert_eq!(first, 8 << 20);
    let mut expected = Vec::new();
    run(&cfg, || async {
        let (storage, probe) = counted();
        let s = Shard::open_with_storage(&cfg, ShardId(0), storage)
            .await
            .unwrap();
        let limit = shardwal::format::FIRST_SEGMENT_MAX_BYTES;
        assert_eq!(
            probe.calls(FaultOp::Write),
            limit / (256 << 10),
            "{:?}",
            calls(&probe)
        );
        assert_eq!(probe.calls(FaultOp::Fdatasync), 1);
        // About 3 MiB of records: past the zeroed prefix, still in the first segment.
        for seq in 0..3 * 1024 / 8 {
            let p = vec![seq as u8; 8 << 10];
            s.append(&p).await.unwrap();
            expected.push(p);
        }
        s.sync().await.unwrap();
        assert_eq!(s.metrics().rotations, 0);
        s.close().await.unwrap();
    });
    assert_log_eq(&read_all(d.path(), 0), &expected, "past the zeroed prefix");
}

/// A write or the fdatasync of the open's zeroing failing fails the open with `Error::Io`
/// naming that step; nothing was acknowledged, and a later open of the same directory
/// works and keeps what is appended then.
#[test]
fn a_failed_zeroing_fails_the_open_and_a_reopen_works() {
    for op in [FaultOp::Write, FaultOp::Fdatasync] {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        run(&cfg, || async {
            let storage = FaultyStorage::new(DmaStorage::new(false), Fault::eio(op, 0, false));
            let probe = storage.probe();
            let err = Shard::open_with_storage(&cfg, ShardId(0), Rc::new(storage))
                .await
                .err();
            assert_eq!(probe.injected(), 1, "{op:?}");
            match err {
                Some(shardwal::Error::Io { op: step, .. }) => {
                    assert_eq!(step, "zeroing the first segment", "{op:?}")
                }
                other => panic!("{op:?}: {other:?}"),
            }
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            s.append_durable(b"after").await.unwrap();
            s.close().await.unwrap();
        });
        assert_log_eq(
            &read_all(d.path(), 0),
            &[b"after".to_vec()],
            "after the reopen",
        );
    }
}

#[test]
fn reopening_rewrites_nothing_it_already_has() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let mut expected = Vec::new();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        // Less than a segment, so the reopen resumes inside the last one.
        for seq in 0..40 {
            let p = payload(0, seq);
            s.append(&p).await.unwrap();
            expected.push(p);
        }
        s.close().await.unwrap();
    });
    let before = snapshot(d.path());
    let used = used_seg_files(d.path(), 0);
    assert_eq!(used.len(), 1);
    run(&cfg, || async {
        let (storage, probe) = counted();
        let s = Shard::open_with_storage(&cfg, ShardId(0), storage)
            .await
            .unwrap();
        let after_open = calls(&probe);
        // The segment the closed shard had prepared but not used may become a spare (a
        // rename and a directory fsync) and the flusher may already prepare a new one from
        // it and zero ahead of the head; nothing writes a record or syncs a file.
        let m = s.metrics();
        assert_eq!((m.flushes, m.write_ops, m.fdatasyncs), (0, 0, 0), "{m:?}");
        for op in [FaultOp::Fdatasync, FaultOp::Create, FaultOp::Allocate] {
            assert_eq!(probe.calls(op), 0, "reopen did {op:?}: {after_open:?}");
        }
        assert!(
            probe.writes() <= zero_pieces(&s) + 1 + m.segments_recycled,
            "reopen wrote more than zeros: {after_open:?}, {m:?}"
        );
        // Every segment that holds records is byte for byte as it was (zeroing ahead, if
        // the quiet shard started it, writes zeros over zeros past the last record).
        let now = snapshot(d.path());
        for path in &used {
            assert!(
                now.get(path) == before.get(path),
                "{} changed",
                path.display()
            );
        }
        let p = payload(0, 40);
        s.append_durable(&p).await.unwrap();
        expected.push(p);
        s.close().await.unwrap();
    });
    assert_log_eq(&read_all(d.path(), 0), &expected, "after the reopen");
}

/// The flusher zeroes the prepared segment in step with the active one's fill, not all at
/// once: a quiet shard whose active segment is nearly empty has zeroed at most the active
/// segment's runway (`segment - flush buffer`) plus a piece or two of the prepared one, far
/// from both whole (the burst that met commits before); the log then rotates into the
/// prepared segment and every record reads back. (`zero_ahead`'s unit tests check that the
/// pace finishes the prepared segment when the active one is seven eighths full.)
#[test]
fn the_next_segment_is_zeroed_in_step_and_the_log_rotates_into_it() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let segment = cfg.segment_bytes();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        // Nothing is prepared before the first commit is durable; then, quiet, the active
        // segment is zeroed ahead of its head and the prepared one only to its pace.
        s.append_durable(&payload(0, 0)).await.unwrap();
        for _ in 0..2000 {
            if s.metrics().segments_prepared == 1 && s.metrics().zeroed_bytes > 0 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Give a burst, if there were one, time to show.
        glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
        let m = s.metrics();
        assert_eq!(m.segments_prepared, 1, "{m:?}");
        let piece = (cfg.flush_buffer_bytes() as u64).min(256 << 10);
        assert!(m.zeroed_bytes > 0, "{m:?}");
        assert!(
            m.zeroed_bytes <= segment - cfg.flush_buffer_bytes() as u64 + 2 * piece,
            "the prepared segment was zeroed ahead of its pace: {m:?}"
        );
        // Fill the first segment and rotate into the second one.
        let mut seq = 1;
        while s.metrics().rotations == 0 {
            s.append(&payload(0, seq)).await.unwrap();
            seq += 1;
        }
        s.sync().await.unwrap();
        s.close().await.unwrap();
        assert_eq!(read_all(d.path(), 0).len() as u64, seq);
    });
}

/// Zeroing ahead stops while commits are large (`zero_ahead`, "Only while commits are
/// small"): a writer that commits 1 MiB at a time goes through six 4 MiB segments having
/// zeroed at most what can fall due before its second fdatasync ends, when the average
/// first reaches the threshold: the first prepared segment whole, and the next one's
/// lead (an eighth) plus a piece; 256 KiB in practice. Without the rule it zeroes each
/// prepared segment through (about 15 MiB here). 64 KiB commits on the same geometry zero
/// the prepared segments as the active ones fill (8 MiB). Every record reads back either
/// way: only where the zeros go changes, never what recovery sees.
#[test]
fn large_commits_stop_the_zeroing_and_small_ones_keep_it() {
    const SEGMENT: u64 = 4 << 20;
    let geometry = |dir: &std::path::Path| {
        WalConfig::builder(dir)
            .shard_count(1)
            .placement(shardwal::CpuPlacement::Unbound)
            .flush_buffer_bytes(256 << 10)
            .flush_buffer_count(8)
            .segment_bytes(SEGMENT)
            .max_record_bytes(64 << 10)
            .build()
            .unwrap()
    };
    // (records per commit, rotations to go through)
    for (per_commit, rotations) in [(16u64, 6u64), (1, 2)] {
        let d = tempfile::tempdir().unwrap();
        let cfg = geometry(d.path());
        let mut expected = Vec::new();
        let m = run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            let mut seq = 0u64;
            while s.metrics().rotations < rotations {
                for _ in 0..per_commit {
                    let p = vec![(seq % 251) as u8; 64 << 10];
                    s.append(&p).await.unwrap();
                    expected.push(p);
                    seq += 1;
                }
                s.sync().await.unwrap();
            }
            let m = s.metrics();
            s.close().await.unwrap();
            m
        });
        let records_bytes = expected.len() as u64 * (64 << 10);
        if per_commit == 16 {
            assert!(m.sync_bytes_avg >= 384 << 10, "{m:?}");
            assert!(records_bytes >= 5 * SEGMENT, "{m:?}");
            let due_before_second_sync = SEGMENT + SEGMENT / 8 + (256 << 10);
            assert!(
                m.zeroed_bytes <= due_before_second_sync,
                "zeroed past the second commit: {m:?}"
            );
        } else {
            assert!(m.sync_bytes_avg < 384 << 10, "{m:?}");
            assert!(
                m.zeroed_bytes >= 1 << 20,
                "small commits zeroed too little: {m:?}"
            );
        }
        assert_log_eq(&read_all(d.path(), 0), &expected, "after the run");
    }
}
