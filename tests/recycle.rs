//! Segment recycling: truncation keeps dropped segment files as spares, new segments reuse
//! them, and nothing a recycled file held before ever comes back as a record, whether the
//! log was closed cleanly or the power was cut at any step of the recycling sequence.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use shardwal::format::{list_segments, list_spares, shard_dir};
use shardwal::storage::{FaultPlan, SimStorage};
use shardwal::{LogReader, Lsn, Shard, ShardId, WalConfig};

const SEGMENT: u64 = 128 << 10;

fn config(dir: &Path, spares: usize) -> WalConfig {
    small(dir, 1)
        .segment_bytes(SEGMENT)
        .recycled_segment_count(spares)
        .build()
        .unwrap()
}

fn spare_files(dir: &Path) -> Vec<PathBuf> {
    list_spares(&shard_dir(dir, ShardId(0)))
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn inodes(paths: &[PathBuf]) -> BTreeSet<u64> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect()
}

/// A 3000-byte payload that says which phase wrote it.
fn tagged(tag: &str, n: u64) -> Vec<u8> {
    format!("{tag}-{n:08}|")
        .bytes()
        .cycle()
        .take(3000)
        .collect()
}

/// Appends `count` records tagged `tag` (committing every 8th and the last); returns them.
async fn write(s: &Shard, tag: &str, count: u64) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    for n in 0..count {
        let p = tagged(tag, n);
        let lsn = s.append(&p).await.unwrap();
        if n % 8 == 7 || n + 1 == count {
            s.commit(lsn).await.unwrap();
        }
        out.insert(lsn.0, p);
    }
    out
}

/// Every record of the closed log, by LSN.
fn read_all(dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    LogReader::open_all(dir, ShardId(0))
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.lsn.0, r.payload.to_vec())
        })
        .collect()
}

#[test]
fn truncation_keeps_spares_and_new_segments_reuse_their_files() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        // About 6 segments of records.
        write(&s, "a", 6 * SEGMENT / 3000).await;
        let segs_before = seg_files(d.path(), 0);
        assert!(segs_before.len() >= 5, "{segs_before:?}");
        let dropped = s.truncate_before(Lsn(s.durable_lsn().0 + 1)).await.unwrap();
        assert!(dropped >= 4);
        // Two of the dropped files are kept as spares, the rest removed.
        let spares = spare_files(d.path());
        assert_eq!(spares.len(), 2, "{spares:?}");
        assert_eq!(s.metrics().segments_retired_as_spares, 2);
        let spare_inodes = inodes(&spares);
        let recycled_before = s.metrics().segments_recycled;
        // Rotating twice more uses both spares (the segment prepared before the truncation
        // was zero-filled; the two after it are recycled).
        write(&s, "b", 3 * SEGMENT / 3000).await;
        let m = s.metrics();
        assert!(
            m.segments_recycled - recycled_before >= 2,
            "recycled {} of {} prepared",
            m.segments_recycled,
            m.segments_prepared
        );
        assert!(spare_files(d.path()).is_empty());
        // The spare files live on as segments of new generations.
        let seg_inodes = inodes(&seg_files(d.path(), 0));
        assert!(
            spare_inodes.is_subset(&seg_inodes),
            "{spare_inodes:?} not in {seg_inodes:?}"
        );
        // Generations only grow: every segment is newer than every file seen before.
        let newest_before = list_segments(&shard_dir(d.path(), ShardId(0)))
            .unwrap()
            .last()
            .unwrap()
            .0;
        assert!(newest_before >= segs_before.len() as u64);
        s.close().await.unwrap();
    });
}

#[test]
fn zero_spares_removes_every_dropped_segment() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 0);
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        write(&s, "a", 4 * SEGMENT / 3000).await;
        let dropped = s.truncate_before(Lsn(s.durable_lsn().0 + 1)).await.unwrap();
        assert!(dropped >= 2);
        assert!(spare_files(d.path()).is_empty());
        write(&s, "b", 2 * SEGMENT / 3000).await;
        assert_eq!(s.metrics().segments_recycled, 0);
        s.close().await.unwrap();
    });
}

/// Old records fill whole segments; after truncation recycled segments get new records,
/// and the last one only a few, so most of its file still holds old frames behind them. No
/// reader, after a clean close or not, may return one of them, and recovery must not call
/// them corruption.
#[test]
fn stale_frames_of_a_recycled_file_are_never_returned() {
    for clean in [true, false] {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), 4);
        let expected = run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            let mut expected = write(&s, "OLD", 5 * SEGMENT / 3000).await;
            s.truncate_before(Lsn(s.durable_lsn().0 + 1)).await.unwrap();
            assert!(spare_files(d.path()).len() >= 3);
            // The rest of the active segment, the zero-filled prepared one, then recycled
            // ones: a handful of records in the last.
            expected.extend(write(&s, "NEW", 2 * SEGMENT / 3000 + 5).await);
            assert!(s.metrics().segments_recycled >= 1);
            // What truncation left of the old records, and every new one.
            let first = s.first_lsn();
            expected.retain(|&l, _| l >= first.0);
            // The shard's own reader returns exactly that.
            let live: BTreeMap<u64, Vec<u8>> = s
                .reader(first)
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    (r.lsn.0, r.payload.to_vec())
                })
                .collect();
            assert_eq!(live, expected, "clean={clean}: the live reader");
            if clean {
                s.close().await.unwrap();
            } else {
                // A crash: the process lets go of the log as a dead one would.
                shardwal::shm::simulate_process_death(cfg.dir());
            }
            expected
        });
        // A recycled segment really holds old bytes behind new records.
        let mixed = used_seg_files(d.path(), 0).into_iter().any(|p| {
            let b = std::fs::read(p).unwrap();
            let new_at = b.windows(4).position(|w| w == b"NEW-");
            let old_after = new_at.and_then(|n| b[n..].windows(4).position(|w| w == b"OLD-"));
            old_after.is_some()
        });
        assert!(
            mixed,
            "clean={clean}: no segment holds stale bytes after new records"
        );
        let last = *expected.keys().last().unwrap();
        for pass in 0..2 {
            assert_eq!(
                read_all(d.path()),
                expected,
                "clean={clean} pass {pass}: the log after reopening"
            );
            // Reopening (recovery ends the log before the stale bytes; writing goes on in a
            // fresh segment) must not change that.
            let cfg2 = cfg.clone();
            run(&cfg, || async move {
                let s = Shard::open(&cfg2, ShardId(0)).await.unwrap();
                assert_eq!(s.last_appended_lsn().0, last);
                s.close().await.unwrap();
            });
        }
    }
}

#[test]
fn records_survive_reopen_after_recycling() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    let mut expected = BTreeMap::new();
    let mut first = Lsn(1);
    for session in 0..4u64 {
        let (written, f) = run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            let mut w = write(&s, &format!("s{session}"), 3 * SEGMENT / 3000).await;
            // Keep roughly the last segment; everything older goes (to spares or away).
            let before = Lsn(s.durable_lsn().0.saturating_sub(SEGMENT / 3000) + 1);
            s.truncate_before(before).await.unwrap();
            w.extend(write(&s, &format!("t{session}"), 2 * SEGMENT / 3000).await);
            let f = s.first_lsn();
            if session % 2 == 0 {
                s.close().await.unwrap();
            } else {
                shardwal::shm::simulate_process_death(cfg.dir());
            }
            (w, f)
        });
        expected.extend(written);
        first = f;
        expected.retain(|&l, _| l >= first.0);
        let all = read_all(d.path());
        assert_eq!(all.keys().next(), Some(&first.0), "session {session}");
        assert_eq!(all, expected, "session {session}");
        assert!(spare_files(d.path()).len() <= 2);
    }
    assert!(first.0 > 1);
}

/// The power is cut after every storage operation of a session that retires segments as
/// spares and then recycles them (rename, zero header block, fdatasync, rename, directory
/// fsync, then writes into the recycled file), one crash per run. After each crash: the log
/// reopens, holds every acknowledged record and nothing else, keeps at most the configured
/// spares, and the next session recycles and rotates normally.
#[test]
fn a_crash_at_every_step_of_recycling_loses_nothing_and_resurrects_nothing() {
    // Count the operations of the crash session once, without a crash.
    let total_ops = crash_run(None).0;
    assert!(total_ops > 20, "{total_ops}");
    let mut recycled_crash_points = 0;
    for n in 0..total_ops {
        let (_, recycled_before_crash) = crash_run(Some(n));
        recycled_crash_points += recycled_before_crash as u64;
    }
    assert!(recycled_crash_points > 0);
    eprintln!(
        "recycle crash sweep: {total_ops} crash points (one per storage operation), {recycled_crash_points} after a recycled segment was prepared; 0 lost, 0 resurrected"
    );
}

/// One run: a setup session writes and truncates (leaving spares), then the crash session
/// writes through recycled segments with the power cut after `crash_after` operations.
/// Returns the crash session's storage operations and whether a recycled segment was
/// prepared before the crash.
fn crash_run(crash_after: Option<u64>) -> (u64, bool) {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    let what = format!("crash after {crash_after:?} ops");
    let mut appended = run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let w = write(&s, "OLD", 4 * SEGMENT / 3000).await;
        s.close().await.unwrap();
        w
    });
    let acked = Rc::new(std::cell::Cell::new(*appended.keys().last().unwrap()));
    let truncated = Rc::new(std::cell::Cell::new(1u64));
    let new = Rc::new(std::cell::RefCell::new(BTreeMap::new()));
    let sim = SimStorage::new(42, FaultPlan::default());
    let recycled = Rc::new(std::cell::Cell::new(false));
    run(&cfg, || {
        let (sim, acked, truncated, new, recycled) = (
            sim.clone(),
            acked.clone(),
            truncated.clone(),
            new.clone(),
            recycled.clone(),
        );
        let cfg = cfg.clone();
        async move {
            if let Some(n) = crash_after {
                sim.crash_after(n);
            }
            let Ok(s) = Shard::open_with_storage(&cfg, ShardId(0), Rc::new(sim.clone())).await
            else {
                return;
            };
            for round in 0..3u64 {
                let before = Lsn(s.durable_lsn().0 + 1);
                // A truncation that fails (here: the power was cut) has an unknown outcome,
                // like a failed commit: it may have dropped segments up to `before`, never
                // past it. So the bound moves before the call, not after its success.
                truncated.set(before.0);
                if s.truncate_before(before).await.is_err() {
                    return;
                }
                for n in 0..SEGMENT / 3000 + 3 {
                    let p = tagged(&format!("NEW{round}"), n);
                    let Ok(lsn) = s.append(&p).await else { return };
                    new.borrow_mut().insert(lsn.0, p);
                    if n % 4 == 3 {
                        if s.commit(lsn).await.is_err() {
                            return;
                        }
                        acked.set(lsn.0);
                    }
                    recycled.set(s.metrics().segments_recycled > 0);
                }
            }
            let _ = s.close().await;
        }
    });
    let ops = sim.ops();
    sim.materialize_crash().unwrap();
    // Records written again after a reopen reuse the LSNs a crash cut off: the model keeps
    // the newest payload per LSN.
    appended.extend(new.borrow().iter().map(|(l, p)| (*l, p.clone())));
    let check = |pass: &str, appended: &BTreeMap<u64, Vec<u8>>| {
        let all = read_all(d.path());
        let first = *all.keys().next().unwrap();
        assert!(
            first <= truncated.get(),
            "{what} {pass}: truncation went further than asked"
        );
        for (lsn, p) in &all {
            assert_eq!(
                appended.get(lsn),
                Some(p),
                "{what} {pass}: lsn {lsn} holds a record never appended there"
            );
        }
        let last = *all.keys().last().unwrap();
        assert!(
            last >= acked.get(),
            "{what} {pass}: acknowledged {} but the log ends at {last}",
            acked.get()
        );
        assert_eq!(
            all.len() as u64,
            last - first + 1,
            "{what} {pass}: LSNs not contiguous"
        );
        last
    };
    let last = check("after the crash", &appended);
    // The next session: open (spares kept or removed), recycle, rotate, close.
    let more = run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        assert!(spare_files(d.path()).len() <= 2, "{what}: too many spares");
        assert_eq!(s.last_appended_lsn().0, last);
        let before = Lsn(s.durable_lsn().0 + 1);
        s.truncate_before(before).await.unwrap();
        truncated.set(before.0);
        let w = write(&s, "AFTER", 2 * SEGMENT / 3000).await;
        assert!(
            s.metrics().segments_recycled > 0,
            "{what}: nothing recycled"
        );
        s.close().await.unwrap();
        w
    });
    appended.extend(more);
    let last_after = check("after the next session", &appended);
    assert_eq!(&last_after, appended.keys().last().unwrap());
    (ops, recycled.get())
}

/// A spare still holds frames of the generation it is named after, so no new segment may
/// take that generation (its stale frames would verify), even when the spare's name is the
/// newest in the directory.
#[test]
fn new_generations_are_above_every_spare() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        write(&s, "a", 10).await;
        s.close().await.unwrap();
    });
    let sdir = shard_dir(d.path(), ShardId(0));
    let spare = shardwal::format::spare_path(&sdir, 77);
    std::fs::write(&spare, vec![0xAB; SEGMENT as usize]).unwrap();
    let scan = shardwal::recovery::scan_shard(&sdir, ShardId(0)).unwrap();
    assert_eq!(scan.next_generation, 78);
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        write(&s, "b", 2 * SEGMENT / 3000).await;
        s.close().await.unwrap();
    });
    let gens: Vec<u64> = list_segments(&sdir)
        .unwrap()
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    assert!(gens.iter().filter(|&&g| g > 2).all(|&g| g > 77), "{gens:?}");
    assert!(!gens.contains(&77));
}
