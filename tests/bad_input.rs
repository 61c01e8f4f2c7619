//! Bad input is refused before anything is written, and never costs data.
mod common;
use common::*;

use shardwal::format::{segment_path, shard_dir, SegmentHeader, BLOCK_BYTES, FORMAT_VERSION};
use shardwal::{Error, LogReader, Lsn, Shard, ShardId, WalConfig};

#[test]
fn rejected_appends_and_commits_cost_nothing() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let max = cfg.max_record_bytes();
    assert_eq!(max, 16 << 10);
    let mut expected: Vec<Vec<u8>> = Vec::new();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for i in 1..=20u64 {
            expected.push(payload(0, i));
            s.append(expected.last().unwrap()).await.unwrap();
        }
        // Committed part and an appended-but-not-committed part, both must survive.
        s.commit(Lsn(10)).await.unwrap();

        assert!(matches!(s.append(b"").await, Err(Error::EmptyRecord)));
        let too_big = vec![7u8; max + 1];
        match s.append(&too_big).await {
            Err(Error::RecordTooLarge {
                len_bytes,
                max_record_bytes,
            }) => {
                assert_eq!(len_bytes, max + 1);
                assert_eq!(max_record_bytes, max);
            }
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        assert_eq!(s.last_appended_lsn(), Lsn(20), "nothing was appended");

        match s.commit(Lsn(21)).await {
            Err(Error::LsnNotAppended {
                requested,
                last_appended,
                ..
            }) => {
                assert_eq!(requested, Lsn(21));
                assert_eq!(last_appended, Lsn(20));
            }
            other => panic!("expected LsnNotAppended, got {other:?}"),
        }
        assert!(matches!(
            s.commit(Lsn(1000)).await,
            Err(Error::LsnNotAppended { .. })
        ));
        assert!(!s.is_failed());

        // A max-size record works, between two rejected ones.
        let biggest: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
        let lsn = s.append(&biggest).await.unwrap();
        assert_eq!(lsn, Lsn(21));
        expected.push(biggest);
        assert!(matches!(s.append(b"").await, Err(Error::EmptyRecord)));
        assert!(matches!(
            s.append(&too_big).await,
            Err(Error::RecordTooLarge { .. })
        ));
        for i in 22..=30u64 {
            expected.push(payload(0, i));
            assert_eq!(s.append(expected.last().unwrap()).await.unwrap(), Lsn(i));
        }
        s.commit(Lsn(30)).await.unwrap();
        assert_eq!(s.durable_lsn(), Lsn(30));
        assert_log_eq(&read_shard(&s), &expected, "live reader");
        assert_eq!(s.close().await.unwrap(), Lsn(30));
    });
    assert_log_eq(&read_all(d.path(), 0), &expected, "after reopen");
    // And a shard opened on it again continues after the last record.
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        assert_eq!(s.durable_lsn(), Lsn(30));
        assert!(matches!(s.append(b"").await, Err(Error::EmptyRecord)));
        assert_eq!(s.append_durable(b"after").await.unwrap(), Lsn(31));
        s.close().await.unwrap();
    });
    expected.push(b"after".to_vec());
    assert_log_eq(&read_all(d.path(), 0), &expected, "second reopen");
}

#[test]
fn calls_after_close_are_refused_without_loss() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let other = s.clone();
        for i in 1..=5u64 {
            s.append(&payload(0, i)).await.unwrap();
        }
        assert_eq!(
            s.close().await.unwrap(),
            Lsn(5),
            "close makes everything durable"
        );
        assert!(matches!(
            other.append(b"late").await,
            Err(Error::Closed { .. })
        ));
        assert!(matches!(
            other.truncate_before(Lsn(1)).await,
            Err(Error::Closed { .. })
        ));
        // Durable LSNs stay committed; unknown ones are still bad input.
        other.commit(Lsn(5)).await.unwrap();
        assert!(matches!(
            other.commit(Lsn(6)).await,
            Err(Error::LsnNotAppended { .. })
        ));
        assert_eq!(
            other.close().await.unwrap(),
            Lsn(5),
            "closing twice is harmless"
        );
        assert_eq!(read_shard(&other).len(), 5);
    });
    let expected: Vec<Vec<u8>> = (1..=5).map(|i| payload(0, i)).collect();
    assert_log_eq(&read_all(d.path(), 0), &expected, "after close");
}

/// The tightest geometry the config allows: 8 KiB flush buffers, 12 KiB segments and
/// records of `flush_buffer_bytes - 4160` bytes, so that every segment holds two records
/// at most and rotation happens all the time.
#[test]
fn largest_allowed_record_in_tightest_geometry() {
    let d = tempfile::tempdir().unwrap();
    let max = (8 << 10) - shardwal::config::FLUSH_BUFFER_OVERHEAD_BYTES;
    let cfg = WalConfig::builder(d.path())
        .shard_count(1)
        .placement(shardwal::CpuPlacement::Unbound)
        .flush_buffer_bytes(8 << 10)
        .segment_bytes(12 << 10)
        .max_record_bytes(max)
        .build()
        .unwrap();
    let expected: Vec<Vec<u8>> = (0..24u8).map(|i| vec![i + 1; max]).collect();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for (i, p) in expected.iter().enumerate() {
            let lsn = s.append(p).await.unwrap();
            assert_eq!(lsn, Lsn(i as u64 + 1));
            if i % 3 == 2 {
                s.commit(lsn).await.unwrap();
            }
        }
        assert!(matches!(
            s.append(&vec![0u8; max + 1]).await,
            Err(Error::RecordTooLarge { .. })
        ));
        s.close().await.unwrap();
        assert!(s.metrics().rotations >= 8, "{:?}", s.metrics());
    });
    assert_log_eq(&read_all(d.path(), 0), &expected, "tight geometry");
    // One byte more than the limit is a configuration error.
    assert!(matches!(
        WalConfig::builder(d.path())
            .flush_buffer_bytes(8 << 10)
            .segment_bytes(12 << 10)
            .max_record_bytes(max + 1)
            .build(),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn bad_config_values_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let base = || small(d.path(), 2);
    let cases = [
        ("empty dir", WalConfig::builder("")),
        ("zero shards", base().shard_count(0)),
        ("too many shards", base().shard_count(1025)),
        (
            "buffer not a power of two",
            base().flush_buffer_bytes(48 << 10),
        ),
        ("buffer too small", base().flush_buffer_bytes(4 << 10)),
        ("buffer too big", base().flush_buffer_bytes(128 << 20)),
        ("one buffer", base().flush_buffer_count(1)),
        ("65 buffers", base().flush_buffer_count(65)),
        (
            "segment not aligned",
            base().segment_bytes((256 << 10) + 100),
        ),
        (
            "segment smaller than a buffer",
            base().segment_bytes(64 << 10),
        ),
        (
            "segment beyond 1 TiB",
            base().segment_bytes((1 << 40) + 4096),
        ),
        ("zero max record", base().max_record_bytes(0)),
        (
            "max record beyond buffer",
            base().max_record_bytes(64 << 10),
        ),
    ];
    for (what, b) in cases {
        match b.build() {
            Err(Error::InvalidConfig(msg)) => assert!(!msg.is_empty()),
            other => panic!("{what}: expected InvalidConfig, got {other:?}"),
        }
    }
    // The limits themselves are accepted.
    base().shard_count(1024).build().unwrap();
    base().flush_buffer_count(64).build().unwrap();
    base()
        .segment_bytes((64 << 10) + BLOCK_BYTES as u64)
        .build()
        .unwrap();
}

#[test]
fn shard_id_out_of_range_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 2).build().unwrap();
    run(&cfg, || async {
        for id in [2u32, 3, u32::MAX] {
            match Shard::open(&cfg, ShardId(id)).await {
                Err(Error::InvalidConfig(msg)) => assert!(msg.contains("shard")),
                Err(e) => panic!("shard {id}: expected InvalidConfig, got {e:?}"),
                Ok(_) => panic!("shard {id}: opened a shard beyond shard_count"),
            }
        }
    });
    assert!(!shard_dir(d.path(), ShardId(2)).exists(), "nothing created");
}

#[test]
fn foreign_file_is_refused_and_untouched() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let sdir = shard_dir(d.path(), ShardId(0));
    std::fs::create_dir_all(&sdir).unwrap();
    let path = segment_path(&sdir, 1);
    std::fs::write(&path, vec![b'x'; 8 << 10]).unwrap();
    let before = snapshot(d.path());
    run(&cfg, || async {
        match Shard::open(&cfg, ShardId(0)).await {
            Err(Error::ForeignFile { path: p }) => assert_eq!(p, path),
            Err(e) => panic!("expected ForeignFile, got {e:?}"),
            Ok(_) => panic!("opened a log over a foreign file"),
        }
    });
    assert!(matches!(
        LogReader::open(d.path(), ShardId(0), Lsn(1)),
        Err(Error::ForeignFile { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8 << 10]);
    // Only the process-wide iopoll probe file may have appeared, outside the shard dir
    // (`snapshot` leaves out the shared header, which is derived state).
    let mut after = snapshot(d.path());
    after.remove(&d.path().join("iopoll.probe"));
    assert_eq!(before, after, "the directory is untouched");

    // A foreign file after valid segments is refused as well.
    let d2 = tempfile::tempdir().unwrap();
    let cfg2 = small(d2.path(), 1).build().unwrap();
    run(&cfg2, || async {
        let s = Shard::open(&cfg2, ShardId(0)).await.unwrap();
        s.append_durable(b"one").await.unwrap();
        s.close().await.unwrap();
    });
    let sdir2 = shard_dir(d2.path(), ShardId(0));
    let foreign = segment_path(&sdir2, 99);
    let mut junk = vec![0u8; 8 << 10];
    junk[..8].copy_from_slice(b"NOTAWAL!");
    std::fs::write(&foreign, &junk).unwrap();
    let before = snapshot(d2.path());
    run(&cfg2, || async {
        assert!(matches!(
            Shard::open(&cfg2, ShardId(0)).await,
            Err(Error::ForeignFile { .. })
        ));
    });
    assert_eq!(before, snapshot(d2.path()));
}

#[test]
fn newer_format_version_is_refused_and_untouched() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        s.append_durable(b"v1 record").await.unwrap();
        s.close().await.unwrap();
    });
    let segs = used_seg_files(d.path(), 0);
    assert_eq!(segs.len(), 1);
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    assert_eq!(&bytes[0..8], b"SHARDWAL");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes[0..56]);
    bytes[56..64].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(&segs[0], &bytes).unwrap();
    assert!(SegmentHeader::decode(&bytes).is_err());

    let before = snapshot(d.path());
    run(&cfg, || async {
        match Shard::open(&cfg, ShardId(0)).await {
            Err(Error::NewerFormat {
                path,
                found,
                supported,
            }) => {
                assert_eq!(path, segs[0]);
                assert_eq!(found, FORMAT_VERSION + 1);
                assert_eq!(supported, FORMAT_VERSION);
            }
            Err(e) => panic!("expected NewerFormat, got {e:?}"),
            Ok(_) => panic!("opened a segment of a newer format"),
        }
    });
    assert!(matches!(
        LogReader::open(d.path(), ShardId(0), Lsn(1)),
        Err(Error::NewerFormat { found: 2, .. })
    ));
    assert_eq!(before, snapshot(d.path()), "the directory is untouched");
}

#[test]
fn spawn_refuses_a_directory_with_more_shards() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(shard_dir(d.path(), ShardId(2))).unwrap();
    let cfg = small(d.path(), 2).build().unwrap();
    match shardwal::spawn(cfg, |_shard| async {}) {
        Err(Error::BadDirectory { path, detail }) => {
            assert_eq!(path, d.path());
            assert!(detail.contains("shard 2"), "{detail}");
        }
        Err(e) => panic!("expected BadDirectory, got {e:?}"),
        Ok(_) => panic!("spawned over a directory holding shard 2 of 2"),
    }
    assert!(!shard_dir(d.path(), ShardId(0)).exists(), "nothing started");
    // With enough shards it opens (shard 2 is empty).
    let cfg3 = small(d.path(), 3).build().unwrap();
    let ids = shardwal::spawn(cfg3, |shard| async move { shard.id().0 })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(ids, vec![0, 1, 2]);
}

/// A segment named with the largest generation leaves no generation for the next segment:
/// recovery refuses the directory with an error instead of overflowing.
#[test]
fn segment_with_the_last_generation_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let sdir = shardwal::format::shard_dir(d.path(), shardwal::ShardId(0));
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(shardwal::format::segment_path(&sdir, u64::MAX), [0u8; 4096]).unwrap();
    match shardwal::recovery::scan_shard(&sdir, shardwal::ShardId(0)) {
        Err(shardwal::Error::BadDirectory { detail, .. }) => {
            assert!(detail.contains("generation"), "{detail}")
        }
        other => panic!("expected BadDirectory, got {other:?}"),
    }
}
