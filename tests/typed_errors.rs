//! Typed failures: a failed shard says which operation failed, on which path, with which
//! `io::ErrorKind`, and every later refusal carries the same cause; a replay that cannot
//! read a file reports `Error::Io` with its path, not corruption. Nothing here matches text.
mod common;
use common::*;

use std::io::ErrorKind;
use std::rc::Rc;

use shardwal::storage::{DmaStorage, Fault, FaultKind, FaultOp, FaultyStorage};
use shardwal::{Error, FailedOp, LogReader, Lsn, Shard, ShardId};

/// Records enough to fill several 256 KiB segments.
const RECORDS: u64 = 1500;

/// Opens shard 0 over a backend that fails the first `op` after open with ENOSPC, fills a
/// few segments, truncates them all, and checks the failure truncation reports.
fn truncation_fault(op: FaultOp, expected: FailedOp, recycled_segment_count: usize) {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1)
        .recycled_segment_count(recycled_segment_count)
        .build()
        .unwrap();
    run(&cfg, || async {
        let fault = Fault {
            op,
            nth: 0,
            forever: false,
            kind: FaultKind::Enospc,
        };
        // Opening an empty log and filling it renames and removes nothing (there are no
        // spares yet), so the fault hits truncation.
        let storage = FaultyStorage::new(DmaStorage::new(false), fault);
        let probe = storage.probe();
        let s = Shard::open_with_storage(&cfg, ShardId(0), Rc::new(storage))
            .await
            .unwrap();
        for i in 1..=RECORDS {
            s.append(&payload(0, i)).await.unwrap();
        }
        s.sync().await.unwrap();
        assert!(s.metrics().rotations >= 2, "the log spans several segments");
        let first_segment =
            shardwal::format::segment_path(&shardwal::format::shard_dir(d.path(), ShardId(0)), 1);
        let e = s
            .truncate_before(Lsn(s.durable_lsn().0 + 1))
            .await
            .unwrap_err();
        assert_eq!(probe.injected(), 1, "{op:?}");
        // The caller of truncate_before gets the I/O error itself, with its kind.
        assert!(matches!(e, Error::Io { .. }), "{op:?}: {e:?}");
        assert_eq!(e.io_kind(), Some(ErrorKind::StorageFull), "{op:?}");
        assert!(s.is_failed(), "{op:?}: an I/O error fails the shard");

        // Every later call is refused with the same typed cause.
        let later = [
            s.append(b"more").await.unwrap_err(),
            s.commit(Lsn(1)).await.unwrap_err(),
            s.close().await.unwrap_err(),
        ];
        for e in &later {
            let Error::ShardFailed { shard, cause } = e else {
                panic!("{op:?}: expected ShardFailed, got {e:?}")
            };
            assert_eq!(*shard, ShardId(0));
            assert_eq!(cause.op(), expected, "{op:?}");
            assert_eq!(cause.kind(), ErrorKind::StorageFull, "{op:?}");
            assert_eq!(cause.io_error().kind(), ErrorKind::StorageFull);
            assert_eq!(
                cause.path(),
                first_segment,
                "{op:?}: the oldest segment goes first"
            );
            // A clone is the same error, kind and all.
            let again = e.clone();
            assert_eq!(again.io_kind(), Some(ErrorKind::StorageFull));
            assert!(matches!(again, Error::ShardFailed { cause: c, .. } if c.op() == expected));
        }
    });
}

#[test]
fn a_failed_remove_is_typed() {
    truncation_fault(FaultOp::Remove, FailedOp::Remove, 0);
}

#[test]
fn a_failed_rename_to_a_spare_is_typed() {
    truncation_fault(FaultOp::Rename, FailedOp::Rename, 2);
}

/// A segment that disappears between opening a reader and reading it is an I/O error
/// naming the file (the data may be fine: the next read may succeed), not corruption.
#[test]
fn a_replay_that_cannot_read_a_segment_reports_io_with_the_path() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for i in 1..=RECORDS {
            s.append(&payload(0, i)).await.unwrap();
        }
        s.close().await.unwrap();
    });
    let sdir = shardwal::format::shard_dir(d.path(), ShardId(0));
    let second = shardwal::format::segment_path(&sdir, 2);
    let mut reader = LogReader::open(d.path(), ShardId(0), Lsn(1)).unwrap();
    std::fs::remove_file(&second).unwrap();
    let mut read = 0u64;
    let err = loop {
        match reader.next() {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => break e,
            None => panic!("the reader ended without reporting the missing segment"),
        }
    };
    assert!(read > 0, "the first segment was read");
    match &err {
        Error::Io { path, source, .. } => {
            assert_eq!(path, &second);
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_eq!(err.io_kind(), Some(ErrorKind::NotFound));
    assert!(reader.next().is_none(), "the reader stops after an error");
}
