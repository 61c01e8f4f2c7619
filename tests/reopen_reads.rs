//! Opening reads only what it must (issue 11, item 7): every segment's header block, and
//! frame by frame only the newest segments, which can hold a torn tail. The older, sealed
//! segments are verified by whatever reads them, and damage in them is `Corruption` then.
//!
//! Every assertion is on an outcome (what opened, what a reader returned, how many bytes
//! the scan read), never on time.
mod common;
use common::*;

use std::path::{Path, PathBuf};

use shardwal::format::{SegmentHeader, BLOCK_BYTES, CHUNK_BYTES};
use shardwal::recovery::scan_shard;
use shardwal::{Error, LogReader, Lsn, Shard, ShardId, WalConfig};

/// Records of the log each test writes: with 1 KiB records and 256 KiB segments, about 10
/// segments.
const RECORDS: u64 = 2000;

/// The log's payloads in LSN order (what `fill_segments` appends).
fn payloads(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = payload(0, i);
            p.resize(1024, b'.');
            p
        })
        .collect()
}

/// A one-shard log of `RECORDS` durable records over many segments, closed cleanly or
/// (`crash`) left without a final marker.
fn write_log(cfg: &WalConfig, crash_it: bool) {
    run(cfg, || async {
        let s = Shard::open(cfg, ShardId(0)).await.unwrap();
        fill_segments(&s, RECORDS).await;
        assert_eq!(s.durable_lsn(), Lsn(RECORDS));
        if crash_it {
            crash(s);
        } else {
            s.close().await.unwrap();
        }
    });
}

fn base_lsn(path: &Path) -> Lsn {
    SegmentHeader::decode(&std::fs::read(path).unwrap())
        .unwrap()
        .base_lsn
}

/// Flips a payload byte of the first record of the oldest segment.
fn damage_first_segment(dir: &Path) -> PathBuf {
    let segs = used_seg_files(dir, 0);
    assert!(segs.len() >= 5, "the log spans many segments");
    let (off, lsn, _, _) = record_frames(&segs[0])[0];
    assert_eq!(lsn, 1);
    let mut b = std::fs::read(&segs[0]).unwrap();
    b[off + 24 + 3] ^= 0x40;
    std::fs::write(&segs[0], b).unwrap();
    segs[0].clone()
}

fn shard_dir0(dir: &Path) -> PathBuf {
    shardwal::format::shard_dir(dir, ShardId(0))
}

/// The bytes a scan may read: every header block, `walked` whole segments (each read in
/// chunks, plus the block its header came in), and one more chunk of slack.
fn scan_budget(cfg: &WalConfig, dir: &Path, walked: u64) -> u64 {
    let files = seg_files(dir, 0).len() as u64;
    files * BLOCK_BYTES as u64
        + walked * (cfg.segment_bytes() + BLOCK_BYTES as u64)
        + CHUNK_BYTES as u64
}

#[test]
fn opening_reads_the_headers_and_the_newest_segment_only() {
    for crash_it in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        write_log(&cfg, crash_it);
        let log_bytes: u64 = seg_files(d.path(), 0)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        let scan = scan_shard(&shard_dir0(d.path()), ShardId(0)).unwrap();
        assert_eq!(scan.next_lsn, Lsn(RECORDS + 1), "crash={crash_it}");
        assert!(scan.torn_tail.is_none());
        // After a clean close the final marker vouches for everything: one segment walked.
        // After a crash the last write's marker may not vouch for the segment before.
        let walked = if crash_it { 2 } else { 1 };
        let budget = scan_budget(&cfg, d.path(), walked);
        assert!(
            scan.bytes_read <= budget && scan.bytes_read < log_bytes / 2,
            "crash={crash_it}: read {} of a {log_bytes}-byte log (budget {budget})",
            scan.bytes_read
        );
        assert!(
            scan.record_count < RECORDS / 2,
            "sealed records are not walked"
        );
        assert_eq!(scan.chain.len(), used_seg_files(d.path(), 0).len());
        // And the log reads back whole.
        assert_log_eq(&read_all(d.path(), 0), &payloads(RECORDS), "read back");
    }
}

/// Damage to a record of a sealed segment (one a later marker vouches for): opening does not
/// read it, so it opens with every record; every reader that reaches the damage reports
/// `Corruption` (not a shorter log); a reader that starts past it never reads that segment;
/// and nothing is modified by reading.
#[test]
fn damage_in_a_sealed_segment_is_corruption_when_read_not_at_open() {
    for crash_it in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        write_log(&cfg, crash_it);
        let damaged = damage_first_segment(d.path());
        let before = snapshot(d.path());

        // Open, through the offline reader: finds the end without reading the damage.
        let reader = LogReader::open(d.path(), ShardId(0), Lsn(1)).unwrap();
        assert_eq!(reader.upto(), Lsn(RECORDS), "crash={crash_it}");
        let results: Vec<_> = reader.collect();
        match results.last() {
            Some(Err(Error::Corruption {
                path, expected_lsn, ..
            })) => {
                assert_eq!(path, &damaged);
                assert_eq!(*expected_lsn, Lsn(1));
            }
            other => panic!("crash={crash_it}: expected Corruption, got {other:?}"),
        }
        assert!(
            results.iter().all(|r| r.is_err()),
            "nothing before the damage"
        );

        // A late reader finds its segment through the headers and never touches segment 0.
        let segs = used_seg_files(d.path(), 0);
        let late = Lsn(base_lsn(&segs[segs.len() - 2]).0 + 3);
        let tail = read_from(d.path(), 0, late);
        assert_eq!(tail.first().map(|r| r.0), Some(late));
        assert_eq!(tail.last().map(|r| r.0), Some(Lsn(RECORDS)));
        assert_eq!(before, snapshot(d.path()), "reading modifies nothing");

        // The shard opens with every record, and its reader reports the damage too.
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert_eq!(s.durable_lsn(), Lsn(RECORDS), "nothing was cut");
            let err = s.reader(Lsn(1)).unwrap().find_map(|r| r.err());
            assert!(
                matches!(err, Some(Error::Corruption { .. })),
                "crash={crash_it}: {err:?}"
            );
            let lsn = s.append_durable(b"after").await.unwrap();
            assert_eq!(lsn, Lsn(RECORDS + 1));
            s.close().await.unwrap();
        });
    }
}

/// A sealed segment cut short or with a damaged last frame: the same, the reader reports
/// `Corruption` where the records stop (a later marker vouches for them, so this can never
/// be a torn tail), also when the segment's successor starts where the damage is.
#[test]
fn a_sealed_segment_cut_short_is_corruption_when_read() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage)> = vec![
        ("cut short", |dir| {
            let segs = used_seg_files(dir, 0);
            let frames = record_frames(&segs[1]);
            let (off, _, _, _) = frames[frames.len() - 3];
            let f = std::fs::OpenOptions::new().write(true).open(&segs[1]);
            f.unwrap().set_len(off as u64 + 30).unwrap();
        }),
        ("last frame damaged", |dir| {
            let segs = used_seg_files(dir, 0);
            let (off, _, _, _) = *record_frames(&segs[1]).last().unwrap();
            let mut b = std::fs::read(&segs[1]).unwrap();
            b[off] ^= 0xFF;
            std::fs::write(&segs[1], b).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        write_log(&cfg, false);
        damage(d.path());
        let reader = LogReader::open(d.path(), ShardId(0), Lsn(1)).unwrap();
        assert_eq!(reader.upto(), Lsn(RECORDS), "{what}");
        let results: Vec<_> = reader.collect();
        let ok = results.iter().take_while(|r| r.is_ok()).count() as u64;
        let segs = used_seg_files(d.path(), 0);
        assert!(ok < base_lsn(&segs[2]).0 - 1, "{what}: stops in segment 1");
        match results.last() {
            Some(Err(Error::Corruption { expected_lsn, .. })) => {
                assert_eq!(*expected_lsn, Lsn(ok + 1), "{what}")
            }
            other => panic!("{what}: expected Corruption, got {other:?}"),
        }
    }
}

/// After a crash, the last group commit is torn in the newest segment of a long log: the
/// newest segment is still walked frame by frame, so the tail is cut exactly where the
/// damage is, every durable record stays, and writing goes on.
#[test]
fn a_torn_tail_in_the_newest_segment_of_a_long_log_is_cut_exactly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let all = payloads(RECORDS + 6);
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        fill_segments(&s, RECORDS).await;
        // One more group commit of six records: one write whose marker vouches for RECORDS.
        let mut last = Lsn(0);
        for p in &all[RECORDS as usize..] {
            last = s.append(p).await.unwrap();
        }
        s.commit(last).await.unwrap();
        crash(s);
    });
    let segs = used_seg_files(d.path(), 0);
    let newest = segs.last().unwrap();
    let frames = record_frames(newest);
    let (off, lsn, _, _) = *frames.iter().find(|f| f.1 == RECORDS + 3).unwrap();
    assert_eq!(lsn, RECORDS + 3, "the damage is in the newest segment");
    let mut b = std::fs::read(newest).unwrap();
    b[off + 24] ^= 0x01;
    std::fs::write(newest, b).unwrap();

    let scan = scan_shard(&shard_dir0(d.path()), ShardId(0)).unwrap();
    let torn = scan.torn_tail.expect("a torn tail");
    assert_eq!(torn.lsn, Lsn(RECORDS + 3));
    assert_eq!(&torn.path, newest);
    assert_eq!(scan.next_lsn, Lsn(RECORDS + 3));
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        assert_eq!(s.durable_lsn(), Lsn(RECORDS + 2));
        let lsn = s.append_durable(&all[RECORDS as usize + 2]).await.unwrap();
        assert_eq!(lsn, Lsn(RECORDS + 3));
        s.close().await.unwrap();
    });
    assert_log_eq(
        &read_all(d.path(), 0),
        &all[..RECORDS as usize + 3],
        "after",
    );
}

/// Crashes right after rotations: the newest segment holds one write. Reopening loses no
/// durable record, at each of several rotations. Then that first write of the newest
/// segment is torn, marker included: nothing in the newest segment vouches for anything, so
/// opening walks back into the segment before (the scan's record count shows it), and cuts
/// the tail exactly where the damage is, as a scan of every segment would.
#[test]
fn reopen_after_a_crash_at_a_rotation_loses_no_durable_record() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let all = payloads(RECORDS);
    let mut durable = 0u64;
    for session in 1..=4 {
        let before = used_seg_files(d.path(), 0).len();
        durable = run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert_eq!(s.durable_lsn(), Lsn(durable), "session {session}");
            let mut n = durable;
            while n == durable || used_seg_files(d.path(), 0).len() <= before.max(1) {
                s.append_durable(&all[n as usize]).await.unwrap();
                n += 1;
            }
            crash(s);
            n
        });
        let scan = scan_shard(&shard_dir0(d.path()), ShardId(0)).unwrap();
        assert_eq!(scan.next_lsn, Lsn(durable + 1), "session {session}");
        let what = format!("session {session}");
        assert_log_eq(&read_all(d.path(), 0), &all[..durable as usize], &what);
    }
    let segs = used_seg_files(d.path(), 0);
    let newest = segs.last().unwrap();
    let base = base_lsn(newest);
    assert_eq!(
        record_frames(newest).len(),
        1,
        "one write in the newest segment"
    );
    let mut b = std::fs::read(newest).unwrap();
    b[BLOCK_BYTES] ^= 0x01; // the first write's marker
    std::fs::write(newest, b).unwrap();
    let scan = scan_shard(&shard_dir0(d.path()), ShardId(0)).unwrap();
    assert_eq!(scan.torn_tail.as_ref().map(|t| t.lsn), Some(base));
    assert_eq!(scan.next_lsn, base);
    assert!(
        scan.record_count > 0,
        "the segment before the newest was walked"
    );
    assert_log_eq(&read_all(d.path(), 0), &all[..base.0 as usize - 1], "torn");
}
