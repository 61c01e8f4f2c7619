//! `Shard::reader` begins near its start LSN inside a segment written in this session: it
//! never reads the part of the segment more than one index stride (1 MiB) before the batch
//! that holds its first record. Shown by damaging the segment's first MiB: a reader from a
//! late LSN never meets the damage, a reader from the start reports it.
mod common;
use common::*;

use std::os::unix::fs::FileExt;

use shardwal::{Error, Lsn, Shard, ShardId};

const RECORD_BYTES: usize = 4000;
const RECORDS: u64 = 1_300; // about 5.2 MB: one 8 MiB first segment, several strides

#[test]
fn a_late_reader_starts_near_its_lsn_and_skips_the_start_of_the_segment() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1)
        .segment_bytes(64 << 20)
        .max_record_bytes(8 << 10)
        .build()
        .unwrap();
    let dir = d.path().to_path_buf();
    let open_cfg = cfg.clone();
    run(&cfg, || async move {
        let s = Shard::open(&open_cfg, ShardId(0)).await.unwrap();
        let body = |n: u64| vec![(n % 251) as u8; RECORD_BYTES];
        for n in 1..=RECORDS {
            let lsn = s.append(&body(n)).await.unwrap();
            assert_eq!(lsn, Lsn(n));
            if n % 16 == 0 {
                s.commit(lsn).await.unwrap();
            }
        }
        s.sync().await.unwrap();
        let files = used_seg_files(&dir, 0);
        assert_eq!(
            files.len(),
            1,
            "every record is in the first segment: {files:?}"
        );

        // Damage a record frame 200 KiB into the segment (the page cache serves the reader).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&files[0])
            .unwrap();
        f.write_all_at(&[0xA5; 64], 200 << 10).unwrap();
        drop(f);

        // From LSN 1000 (about 4 MB in), the reader starts at an indexed batch past the
        // damage and returns every record to the end.
        let late: Vec<_> = s
            .reader(Lsn(1000))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(late.len() as u64, RECORDS - 999);
        for r in &late {
            assert_eq!(
                r.payload.as_ref(),
                body(r.lsn.0).as_slice(),
                "lsn {}",
                r.lsn
            );
        }
        assert_eq!(late[0].lsn, Lsn(1000));

        // From LSN 1, the reader walks into the damage and says so.
        let early: Result<Vec<_>, _> = s.reader(Lsn(1)).unwrap().collect();
        assert!(
            matches!(early, Err(Error::Corruption { .. })),
            "the damaged frame must be reported: {early:?}"
        );
        s.close().await.unwrap();
    });
}
