//! `Shard::reader` begins near its start LSN inside a segment written in this session, and
//! inside an older segment once a reader has walked that segment from its start (the
//! shard learns its batch starts): it never reads the part of the segment more than one
//! index stride (1 MiB) before the batch that holds its first record. Shown by damaging
//! the segment's first MiB: a reader from a late LSN never meets the damage, a reader from
//! the start reports it, and so does a late reader before anything taught the shard.
mod common;
use common::*;

use std::os::unix::fs::FileExt;

use shardwal::{Error, Lsn, Shard, ShardId};

const RECORD_BYTES: usize = 4000;
const RECORDS: u64 = 1_300; // about 5.2 MB: the 2 MiB first segment, then most of the 4 MiB second

/// One shard, 64 MiB segments (the first one 2 MiB, the next ones twice the one before),
/// records of [`RECORD_BYTES`].
fn config(dir: &std::path::Path) -> shardwal::WalConfig {
    small(dir, 1)
        .segment_bytes(64 << 20)
        .max_record_bytes(8 << 10)
        .build()
        .unwrap()
}

/// Overwrites 64 bytes of a record frame 200 KiB into `segment` (the page cache serves the
/// readers, so they see it at once).
fn damage_at_200_kib(segment: &std::path::Path) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap();
    f.write_all_at(&[0xA5; 64], 200 << 10).unwrap();
}

#[test]
fn a_late_reader_starts_near_its_lsn_and_skips_the_start_of_the_segment() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let dir = d.path().to_path_buf();
    let c = cfg.clone();
    run(&cfg, || async move {
        let s = Shard::open(&c, ShardId(0)).await.unwrap();
        fill(&s, RECORDS).await;
        let files = used_seg_files(&dir, 0);
        assert_eq!(files.len(), 2, "the records fill two segments: {files:?}");
        // The second segment holds LSN 1000, about 1.9 MB (more than a stride) past its
        // damaged 200 KiB.
        damage_at_200_kib(&files[1]);

        // From LSN 1000 (about 2 MB into the second segment), the reader starts at an
        // indexed batch past the damage and returns every record to the end.
        assert_eq!(read_checked(&s, Lsn(1000)).unwrap(), RECORDS - 999);

        // From LSN 1, the reader walks into the damage and says so.
        let early = read_checked(&s, Lsn(1));
        assert!(
            matches!(early, Err(Error::Corruption { .. })),
            "the damaged frame must be reported: {early:?}"
        );
        s.close().await.unwrap();
    });
}

/// Appends `count` records of [`RECORD_BYTES`] after `s`'s last one, committing every 16.
async fn fill(s: &Shard, count: u64) {
    let first = s.last_appended_lsn().0 + 1;
    for n in first..first + count {
        let lsn = s.append(&body(n)).await.unwrap();
        assert_eq!(lsn, Lsn(n));
        if n % 16 == 0 {
            s.commit(lsn).await.unwrap();
        }
    }
    s.sync().await.unwrap();
}

fn body(n: u64) -> Vec<u8> {
    vec![(n % 251) as u8; RECORD_BYTES]
}

/// Every record from `from` on, checked against what was written.
fn read_checked(s: &Shard, from: Lsn) -> Result<u64, Error> {
    let mut count = 0;
    for r in s.reader(from)? {
        let r = r?;
        assert_eq!(r.lsn, Lsn(from.0 + count));
        assert_eq!(r.payload.as_ref(), body(r.lsn.0).as_slice());
        count += 1;
    }
    Ok(count)
}

#[test]
fn a_walk_of_an_older_segment_teaches_the_shard_where_its_batches_start() {
    const OLD_RECORDS: u64 = 3_000; // about 12 MB: segments of 2, 4 and 8 MiB
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let dir = d.path().to_path_buf();
    let c = cfg.clone();
    run(&cfg, || async move {
        let s = Shard::open(&c, ShardId(0)).await.unwrap();
        fill(&s, OLD_RECORDS).await;
        assert!(
            used_seg_files(&dir, 0).len() >= 2,
            "a sealed segment exists"
        );
        s.close().await.unwrap();
    });
    // The sealed second segment holds LSN 1000, about 1.9 MB past its damaged 200 KiB.
    let sealed = used_seg_files(d.path(), 0)[1].clone();
    let damage = || damage_at_200_kib(&sealed);

    // Reopened: a replay from the first record walks the sealed segment and teaches the
    // shard; then damage 200 KiB into that segment.
    let c = cfg.clone();
    run(&cfg, || async move {
        let s = Shard::open(&c, ShardId(0)).await.unwrap();
        fill(&s, 100).await; // this session's own batches, in the newest segment
        let total = OLD_RECORDS + 100;
        assert_eq!(read_checked(&s, Lsn(1)).unwrap(), total);
        damage();
        // From LSN 1000 (about 2 MB into the sealed segment) the reader begins at a learned
        // batch past the damage and reads every record to the end.
        assert_eq!(read_checked(&s, Lsn(1000)).unwrap(), total - 999);
        // So does a reader in the segment the shard resumed in (learned and its own).
        assert_eq!(read_checked(&s, Lsn(2900)).unwrap(), total - 2899);
        let early = read_checked(&s, Lsn(1));
        assert!(matches!(early, Err(Error::Corruption { .. })), "{early:?}");
        s.close().await.unwrap();
    });

    // Reopened again, nothing has walked the sealed segment: a reader from LSN 1000 starts
    // at its first frame and meets the damage (so the learned start is what skipped it).
    let c = cfg.clone();
    run(&cfg, || async move {
        let s = Shard::open(&c, ShardId(0)).await.unwrap();
        let late = read_checked(&s, Lsn(1000));
        assert!(matches!(late, Err(Error::Corruption { .. })), "{late:?}");
        // A walk that stops at the damage learns only what lies before it.
        assert!(read_checked(&s, Lsn(1)).is_err());
        assert!(read_checked(&s, Lsn(1000)).is_err());
        s.close().await.unwrap();
    });
}
