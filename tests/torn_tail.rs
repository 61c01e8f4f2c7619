//! Crash recovery: a torn tail is cut, damage to acknowledged data is reported.
//!
//! A "crash" here is a run that never calls `close()`: the shard handle is leaked and the
//! executor dropped, so no final marker vouches for the last group commit. The files are then
//! edited to look like the last write was torn.
mod common;
use common::*;

use std::path::{Path, PathBuf};

use shardwal::format::BLOCK_BYTES;
use shardwal::{Error, LogReader, Lsn, Shard, ShardId, WalConfig};

/// Records committed one by one before the last group commit.
const ACKED: u64 = 20;
/// Records of the last group commit (one write, its marker vouches for `ACKED` only).
const EXTRA: u64 = 6;

fn rec(seq: u64) -> Vec<u8> {
    payload(0, seq)
}

/// A log of `acked` records committed one by one, then `extra` records committed together,
/// then a crash. Returns every payload in LSN order.
fn crash_run(cfg: &WalConfig, acked: u64, extra: u64) -> Vec<Vec<u8>> {
    let all: Vec<Vec<u8>> = (1..=acked + extra).map(rec).collect();
    run(cfg, || async {
        let s = Shard::open(cfg, ShardId(0)).await.unwrap();
        for p in &all[..acked as usize] {
            s.append_durable(p).await.unwrap();
        }
        let mut last = Lsn(0);
        for p in &all[acked as usize..] {
            last = s.append(p).await.unwrap();
        }
        if extra > 0 {
            s.commit(last).await.unwrap();
        }
        assert_eq!(s.durable_lsn(), Lsn(acked + extra));
        crash(s);
    });
    all
}

/// The last segment that holds records, and its record frames.
fn last_segment(dir: &Path) -> (PathBuf, Vec<(usize, u64, usize, usize)>) {
    let segs = used_seg_files(dir, 0);
    let last = segs.last().unwrap().clone();
    let frames = record_frames(&last);
    (last, frames)
}

fn frame_of(frames: &[(usize, u64, usize, usize)], lsn: u64) -> (usize, u64, usize, usize) {
    *frames.iter().find(|f| f.1 == lsn).expect("record frame")
}

/// Reopens after damage and checks the log ends at `end`, then appends `more` records, closes,
/// reopens once more (recovery has to accept the abandoned tail now) and checks everything.
/// Returns how many used segments there were right after the first reopen's appends.
fn reopen_and_continue(cfg: &WalConfig, all: &[Vec<u8>], end: u64, more: u64) -> usize {
    let mut expected: Vec<Vec<u8>> = all[..end as usize].to_vec();
    let extra: Vec<Vec<u8>> = (1..=more).map(|i| payload(7, i)).collect();
    run(cfg, || async {
        let s = Shard::open(cfg, ShardId(0)).await.unwrap();
        assert_eq!(
            s.durable_lsn(),
            Lsn(end),
            "log must end right before the damage"
        );
        assert_eq!(s.last_appended_lsn(), Lsn(end));
        assert_log_eq(&read_shard(&s), &expected, "after recovery");
        for (i, p) in extra.iter().enumerate() {
            let lsn = s.append(p).await.unwrap();
            assert_eq!(lsn, Lsn(end + 1 + i as u64));
            if i % 4 == 0 {
                s.commit(lsn).await.unwrap();
            }
        }
        assert_eq!(s.close().await.unwrap(), Lsn(end + more));
    });
    expected.extend(extra);
    let segments = used_seg_files(cfg.dir(), 0).len();
    assert_log_eq(&read_all(cfg.dir(), 0), &expected, "reader after appends");
    // A further reopen goes through the abandoned tail again and must see everything.
    run(cfg, || async {
        let s = Shard::open(cfg, ShardId(0)).await.unwrap();
        assert_eq!(s.durable_lsn(), Lsn(end + more));
        assert_log_eq(&read_shard(&s), &expected, "second reopen");
        s.append_durable(b"final").await.unwrap();
        s.close().await.unwrap();
    });
    expected.push(b"final".to_vec());
    assert_log_eq(&read_all(cfg.dir(), 0), &expected, "reader at the end");
    segments
}

fn setup() -> (tempfile::TempDir, WalConfig, Vec<Vec<u8>>) {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let all = crash_run(&cfg, ACKED, EXTRA);
    assert_log_eq(&read_all(d.path(), 0), &all, "undamaged crash log");
    (d, cfg, all)
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn write_at(path: &Path, offset: usize, data: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset..offset + data.len()].copy_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn file_cut_mid_record_is_a_torn_tail() {
    for (k, cut_in_header) in [(3u64, false), (1, true), (EXTRA, false)] {
        let (d, cfg, all) = setup();
        let (seg, frames) = last_segment(d.path());
        let before_segs = used_seg_files(d.path(), 0).len();
        let (offset, _, len, _) = frame_of(&frames, ACKED + k);
        let cut = if cut_in_header {
            offset + 10
        } else {
            offset + 24 + len / 2
        };
        set_len(&seg, cut as u64);
        let segs = reopen_and_continue(&cfg, &all, ACKED + k - 1, 9);
        assert_eq!(segs, before_segs + 1, "writing resumes in a new segment");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), cut as u64);
    }
}

#[test]
fn garbage_after_last_record_is_a_torn_tail() {
    // Right after the last frame (inside the last write's padding), at the next block,
    // and far away behind a hole of zeros.
    for place in 0..3 {
        let (d, cfg, all) = setup();
        let (seg, frames) = last_segment(d.path());
        let before_segs = used_seg_files(d.path(), 0).len();
        let (_, _, _, end) = frame_of(&frames, ACKED + EXTRA);
        let offset = match place {
            0 => end,
            1 => end.next_multiple_of(BLOCK_BYTES),
            _ => std::fs::metadata(&seg).unwrap().len() as usize - BLOCK_BYTES,
        };
        let garbage: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        write_at(&seg, offset, &garbage);
        let segs = reopen_and_continue(&cfg, &all, ACKED + EXTRA, 5);
        assert_eq!(
            segs,
            before_segs + 1,
            "place {place}: a new segment is used"
        );
        // The damaged bytes stay where they were (abandoned tail), never overwritten.
        let now = std::fs::read(&seg).unwrap();
        assert_eq!(&now[offset..offset + 100], &garbage[..], "place {place}");
    }
}

#[test]
fn zeroed_tail_resumes_in_place_or_is_a_torn_tail() {
    // Zeroed from a frame start: clean end, writing continues in the same segment.
    // Zeroed from inside a payload: the frame is torn, writing moves to a new segment.
    for (k, from_frame_start) in [(2u64, true), (EXTRA, true), (4, false)] {
        let (d, cfg, all) = setup();
        let (seg, frames) = last_segment(d.path());
        let before_segs = used_seg_files(d.path(), 0).len();
        let (offset, _, len, _) = frame_of(&frames, ACKED + k);
        let from = if from_frame_start {
            offset
        } else {
            offset + 24 + len / 2
        };
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[from..].fill(0);
        std::fs::write(&seg, &bytes).unwrap();
        let segs = reopen_and_continue(&cfg, &all, ACKED + k - 1, 7);
        if from_frame_start {
            assert_eq!(segs, before_segs, "k={k}: writing resumes in place");
            // The next record went to the first block boundary after the zeroed frame.
            let next = frame_of(&record_frames(&seg), ACKED + k);
            assert_eq!(next.0, from.next_multiple_of(BLOCK_BYTES) + 24);
        } else {
            assert_eq!(segs, before_segs + 1, "k={k}: writing moves on");
        }
    }
}

/// A segment cut at a length that is not a multiple of 4 KiB, inside the zeros after the last
/// write: the tail is clean, and writing resumes in it without writing past the (new) end of
/// the segment in a way recovery cannot follow.
#[test]
fn segment_cut_to_an_unaligned_length_in_its_zeros() {
    for extra_blocks in [0usize, 1, 2] {
        let (d, cfg, all) = setup();
        let (seg, frames) = last_segment(d.path());
        let (_, _, _, end) = frame_of(&frames, ACKED + EXTRA);
        let cut = end.next_multiple_of(BLOCK_BYTES) + extra_blocks * BLOCK_BYTES + 100;
        set_len(&seg, cut as u64);
        // Enough appends to fill more than what is left of the cut segment in one batch.
        let mut expected = all.clone();
        // 1000-byte payloads are 1024-byte frames: a write of 4 of them (plus its marker) ends
        // 24 bytes past a block, within the 100 bytes the cut segment still has there.
        let more: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i + 1; 1000]).collect();
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert_eq!(s.durable_lsn(), Lsn(ACKED + EXTRA));
            let mut last = Lsn(0);
            for p in &more {
                last = s.append(p).await.unwrap();
            }
            s.commit(last).await.unwrap();
            s.close().await.unwrap();
        });
        expected.extend(more);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            cut as u64,
            "no write runs past the end of the cut segment"
        );
        assert_log_eq(&read_all(d.path(), 0), &expected, "after cut");
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert_eq!(s.durable_lsn(), Lsn(expected.len() as u64));
            s.close().await.unwrap();
        });
    }
}

#[test]
fn damage_to_vouched_data_is_corruption_and_nothing_is_touched() {
    // (what, acked records, how to damage)
    type Damage = fn(&Path);
    let cases: Vec<(&str, u64, Damage)> = vec![
        ("flipped payload byte", ACKED, |dir| {
            let (seg, frames) = last_segment(dir);
            let (off, _, _, _) = frame_of(&frames, 5);
            let mut b = std::fs::read(&seg).unwrap();
            b[off + 24 + 1] ^= 0x40;
            std::fs::write(&seg, b).unwrap();
        }),
        ("flipped lsn byte", ACKED, |dir| {
            let (seg, frames) = last_segment(dir);
            let (off, _, _, _) = frame_of(&frames, 9);
            let mut b = std::fs::read(&seg).unwrap();
            b[off + 16] ^= 1;
            std::fs::write(&seg, b).unwrap();
        }),
        ("zeroed block", ACKED, |dir| {
            let (seg, frames) = last_segment(dir);
            let (off, _, _, _) = frame_of(&frames, 7);
            let mut b = std::fs::read(&seg).unwrap();
            let block = off / BLOCK_BYTES * BLOCK_BYTES;
            b[block..block + BLOCK_BYTES].fill(0);
            std::fs::write(&seg, b).unwrap();
        }),
    ];
    for (what, acked, damage) in cases {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        crash_run(&cfg, acked, 0);
        damage(d.path());
        let before = snapshot(d.path());
        run(&cfg, || async {
            match Shard::open(&cfg, ShardId(0)).await {
                Err(Error::Corruption { expected_lsn, .. }) => {
                    assert!(expected_lsn.0 >= 1 && expected_lsn.0 < acked, "{what}")
                }
                Err(e) => panic!("{what}: expected Corruption, got {e:?}"),
                Ok(_) => panic!("{what}: opened a log with damaged acknowledged data"),
            }
        });
        assert!(
            matches!(
                LogReader::open(d.path(), ShardId(0), Lsn(1)),
                Err(Error::Corruption { .. })
            ),
            "{what}"
        );
        assert_eq!(
            before,
            snapshot(d.path()),
            "{what}: nothing may be modified"
        );
    }
}

/// Damage in a sealed segment that a later marker vouches for: opening reads only that
/// segment's header, so it opens; every reader that reaches the damage reports
/// `Corruption`, a reader that starts past it (found through the segment headers) does
/// not read it at all, and nothing is modified by reading.
#[test]
fn damage_to_a_sealed_vouched_segment_is_corruption_when_read() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, u64, Damage)> = vec![
        ("first segment cut short", 100, |dir| {
            let segs = used_seg_files(dir, 0);
            assert!(segs.len() >= 2, "needs more than one segment");
            let frames = record_frames(&segs[0]);
            let (off, _, _, _) = frames[frames.len() - 3];
            set_len(&segs[0], off as u64 + 30);
        }),
        ("first segment damaged at its end", 100, |dir| {
            let segs = used_seg_files(dir, 0);
            let frames = record_frames(&segs[0]);
            let (off, _, _, _) = *frames.last().unwrap();
            let mut b = std::fs::read(&segs[0]).unwrap();
            b[off] ^= 0xFF;
            std::fs::write(&segs[0], b).unwrap();
        }),
    ];
    for (what, acked, damage) in cases {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        crash_run(&cfg, acked, 0);
        let segs = used_seg_files(d.path(), 0);
        let last_base = record_frames(segs.last().unwrap())[0].1;
        damage(d.path());
        let before = snapshot(d.path());
        let mut reader = LogReader::open(d.path(), ShardId(0), Lsn(1)).unwrap();
        let err = reader.find_map(|r| r.err());
        match err {
            Some(Error::Corruption { expected_lsn, .. }) => {
                assert!(expected_lsn.0 >= 1 && expected_lsn.0 < acked, "{what}")
            }
            other => panic!("{what}: expected Corruption while reading, got {other:?}"),
        }
        // Starting in the last segment skips the damaged one entirely.
        let tail: Vec<_> = LogReader::open(d.path(), ShardId(0), Lsn(last_base))
            .unwrap()
            .map(|r| r.unwrap().lsn)
            .collect();
        assert_eq!(tail.first(), Some(&Lsn(last_base)), "{what}");
        assert_eq!(
            before,
            snapshot(d.path()),
            "{what}: reading modifies nothing"
        );
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert!(
                s.durable_lsn().0 >= acked,
                "{what}: nothing acknowledged was cut"
            );
            let err = s.reader(Lsn(1)).unwrap().find_map(|r| r.err());
            assert!(
                matches!(err, Some(Error::Corruption { .. })),
                "{what}: {err:?}"
            );
            s.close().await.unwrap();
        });
    }
}

#[test]
fn after_clean_close_any_damage_is_corruption() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let all: Vec<Vec<u8>> = (1..=30).map(rec).collect();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for p in &all {
            s.append(p).await.unwrap();
        }
        assert_eq!(s.close().await.unwrap(), Lsn(30));
    });
    let seg = used_seg_files(d.path(), 0)[0].clone();
    let frames = record_frames(&seg);
    let pristine = std::fs::read(&seg).unwrap();
    // Everything sits in one write: only the close marker vouches for it.
    let first = frame_of(&frames, 1);
    let last = frame_of(&frames, 30);
    for (what, offset) in [
        ("first record", first.0 + 24),
        ("last record", last.0 + 24 + last.2 - 1),
        ("segment header", 30),
    ] {
        let mut b = pristine.clone();
        b[offset] ^= 0x10;
        std::fs::write(&seg, &b).unwrap();
        let before = snapshot(d.path());
        run(&cfg, || async {
            match Shard::open(&cfg, ShardId(0)).await {
                Err(Error::Corruption { .. }) => {}
                Err(e) => panic!("{what}: expected Corruption, got {e:?}"),
                Ok(_) => panic!("{what}: opened a cleanly closed log with a damaged record"),
            }
        });
        assert_eq!(
            before,
            snapshot(d.path()),
            "{what}: nothing may be modified"
        );
    }
    std::fs::write(&seg, &pristine).unwrap();
    assert_log_eq(&read_all(d.path(), 0), &all, "restored");
}

/// Regression: a write that ends 8 or 16 bytes before a 4 KiB boundary leaves a zero padding
/// shorter than a frame header. Recovery and the reader must skip it, not read the next
/// write's marker as part of a frame and call the log corrupt.
#[test]
fn short_padding_before_a_block_boundary_is_not_damage() {
    // The first write of a segment: 4096 header + 24 marker + frame. A payload of 4040 bytes
    // ends at 8184 (8 bytes of padding), 4032 bytes at 8176 (16 bytes).
    for len in [4040usize, 4032, 4048] {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        let all = vec![vec![0xC3u8; len], b"second".to_vec(), vec![0x5Au8; len]];
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            for p in &all {
                s.append_durable(p).await.unwrap();
            }
            assert_log_eq(&read_shard(&s), &all, "live");
            s.close().await.unwrap();
        });
        let seg = used_seg_files(d.path(), 0)[0].clone();
        assert_eq!(record_frames(&seg)[0].3, 4096 + 24 + 24 + len);
        assert_log_eq(&read_all(d.path(), 0), &all, "closed");
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert_eq!(s.durable_lsn(), Lsn(3));
            s.close().await.unwrap();
        });
    }
}

/// The very first write of a fresh log is torn: its header is fine but its first record is
/// not. Nothing was acknowledged, so the log is empty and starts again at LSN 1.
#[test]
fn torn_first_write_of_a_fresh_log() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let all = crash_run(&cfg, 0, 4);
    let (seg, frames) = last_segment(d.path());
    let (offset, lsn, _, _) = frames[0];
    assert_eq!(lsn, 1);
    write_at(&seg, offset + 30, b"torn");
    let segs = reopen_and_continue(&cfg, &all, 0, 6);
    assert_eq!(
        segs, 2,
        "the abandoned segment stays, a new one holds the log"
    );
}
