//! Many tasks per shard appending and committing at once, on two shards, across reopens,
//! segment rotation and truncation.
mod common;
use common::*;

use std::collections::BTreeMap;

use shardwal::{Error, LogReader, Lsn, Shard, ShardId, WalConfig};

const SHARDS: u32 = 2;

/// What one shard reports from a round: its durable LSN right after opening, and every
/// `(lsn, payload)` it acknowledged.
type RoundResult = (Lsn, Vec<(Lsn, Vec<u8>)>);

/// A payload that encodes shard, round, task and sequence number, of 1 ..= ~1.5 KiB.
fn cpayload(shard: u32, round: u32, task: u32, seq: u32) -> Vec<u8> {
    let len = 1 + ((seq as usize * 389 + task as usize * 97 + round as usize * 13) % 1500);
    let tag = format!("<s{shard} r{round} t{task} n{seq}>");
    tag.bytes().cycle().take(len).collect()
}

/// Runs `tasks` concurrent tasks on every shard, each appending `per_task` records and
/// committing each one (a few of them in pairs), and returns what every shard acknowledged,
/// as `(lsn, payload)`, plus the shard's durable LSN right after opening.
fn round(cfg: &WalConfig, round: u32, tasks: u32, per_task: u32) -> Vec<RoundResult> {
    shardwal::spawn(cfg.clone(), move |shard: Shard| async move {
        let opened_at = shard.durable_lsn();
        assert_eq!(shard.last_appended_lsn(), opened_at);
        let id = shard.id().0;
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let s = shard.clone();
                glommio::spawn_local(async move {
                    let mut acked = Vec::with_capacity(per_task as usize);
                    let mut seq = 0;
                    while seq < per_task {
                        if seq % 7 == 3 && seq + 1 < per_task {
                            // Two appends, one commit for both.
                            let p1 = cpayload(id, round, t, seq);
                            let p2 = cpayload(id, round, t, seq + 1);
                            let l1 = s.append(&p1).await.unwrap();
                            let l2 = s.append(&p2).await.unwrap();
                            assert!(l2 > l1);
                            s.commit(l2).await.unwrap();
                            assert!(s.durable_lsn() >= l2);
                            acked.push((l1, p1));
                            acked.push((l2, p2));
                            seq += 2;
                        } else {
                            let p = cpayload(id, round, t, seq);
                            let lsn = s.append_durable(&p).await.unwrap();
                            assert!(s.durable_lsn() >= lsn);
                            acked.push((lsn, p));
                            seq += 1;
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await);
        }
        assert!(shard.metrics().fdatasyncs > 0);
        (opened_at, all)
    })
    .unwrap()
    .join()
    .unwrap()
}

/// Checks that the closed log of every shard holds exactly `expected[shard]` (LSN 1 first).
fn check_log(cfg: &WalConfig, expected: &[Vec<Vec<u8>>], what: &str) {
    for (i, exp) in expected.iter().enumerate() {
        let got = read_all(cfg.dir(), i as u32);
        assert_log_eq(&got, exp, &format!("{what}, shard {i}"));
    }
}

/// Folds one round's acknowledged records into the expected logs; the round must continue
/// each shard right after what it held before, with no gap and no duplicate.
fn absorb(expected: &mut [Vec<Vec<u8>>], got: Vec<RoundResult>, n: usize) {
    for (i, (opened_at, acked)) in got.into_iter().enumerate() {
        assert_eq!(
            opened_at,
            Lsn(expected[i].len() as u64),
            "shard {i} reopened"
        );
        assert_eq!(acked.len(), n, "shard {i}: every append was acknowledged");
        let by_lsn: BTreeMap<Lsn, Vec<u8>> = acked.into_iter().collect();
        assert_eq!(by_lsn.len(), n, "shard {i}: LSNs are unique");
        let first = opened_at.0 + 1;
        for (k, (lsn, p)) in by_lsn.into_iter().enumerate() {
            assert_eq!(lsn, Lsn(first + k as u64), "shard {i}: LSNs are contiguous");
            expected[i].push(p);
        }
    }
}

#[test]
fn many_tasks_two_shards_reopen_rotate_truncate() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), SHARDS).build().unwrap();
    let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); SHARDS as usize];

    // Round 0: 64 tasks x 50 records on each shard.
    absorb(&mut expected, round(&cfg, 0, 64, 50), 64 * 50);
    check_log(&cfg, &expected, "round 0");
    for i in 0..SHARDS {
        let segs = used_seg_files(d.path(), i).len();
        assert!(segs >= 4, "shard {i}: segments rotated, {segs} used");
        // Shards never see each other's records.
        let tag = format!("<s{i} ");
        assert!(expected[i as usize]
            .iter()
            .all(|p| p.len() < tag.len() || p.starts_with(tag.as_bytes())));
    }

    // Round 1: reopen (recovery, continuing in place or in a new segment) and append more.
    absorb(&mut expected, round(&cfg, 1, 16, 30), 16 * 30);
    check_log(&cfg, &expected, "round 1");

    // Round 2: truncate, then read and truncate too far.
    let cuts = shardwal::spawn(cfg.clone(), |shard: Shard| async move {
        let durable = shard.durable_lsn();
        let segs_before = used_seg_files(shard.config().dir(), shard.id().0).len();
        assert_eq!(shard.first_lsn(), Lsn(1));
        let cut = Lsn(durable.0 / 2);
        let removed = shard.truncate_before(cut).await.unwrap();
        assert!(removed >= 1, "shard {}: nothing removed", shard.id());
        let first = shard.first_lsn();
        assert!(first > Lsn(1) && first <= cut, "first {first}, cut {cut}");
        assert_eq!(
            used_seg_files(shard.config().dir(), shard.id().0).len(),
            segs_before - removed
        );
        match shard.reader(Lsn(1)) {
            Err(Error::Truncated {
                requested,
                first_available,
                ..
            }) => {
                assert_eq!(requested, Lsn(1));
                assert_eq!(first_available, first);
            }
            Err(e) => panic!("expected Truncated, got {e:?}"),
            Ok(_) => panic!("read truncated records"),
        }
        assert!(matches!(
            shard.reader(Lsn(first.0 - 1)),
            Err(Error::Truncated { .. })
        ));
        let rest: Vec<Lsn> = shard
            .reader(first)
            .unwrap()
            .map(|r| r.unwrap().lsn)
            .collect();
        assert_eq!(rest.len() as u64, durable.0 - first.0 + 1);
        assert_eq!(rest.first(), Some(&first));
        match shard.truncate_before(Lsn(durable.0 + 2)).await {
            Err(Error::TruncateBeyondDurable {
                requested,
                durable_lsn,
                ..
            }) => {
                assert_eq!(requested, Lsn(durable.0 + 2));
                assert_eq!(durable_lsn, durable);
            }
            other => panic!("expected TruncateBeyondDurable, got {other:?}"),
        }
        // Truncating again below the first LSN removes nothing.
        assert_eq!(shard.truncate_before(first).await.unwrap(), 0);
        assert_eq!(shard.first_lsn(), first);
        first
    })
    .unwrap()
    .join()
    .unwrap();

    // Closed log: the truncated prefix is gone, the rest reads back byte for byte.
    for (i, first) in cuts.iter().enumerate() {
        assert!(matches!(
            LogReader::open(d.path(), ShardId(i as u32), Lsn(1)),
            Err(Error::Truncated { first_available, .. }) if first_available == *first
        ));
        let got = read_from(d.path(), i as u32, *first);
        let rest = &expected[i][first.0 as usize - 1..];
        assert_eq!(got.len(), rest.len(), "shard {i}");
        for (k, (lsn, p)) in got.iter().enumerate() {
            assert_eq!(*lsn, Lsn(first.0 + k as u64));
            assert_eq!(p, &rest[k], "shard {i} lsn {lsn}");
        }
    }

    // Round 3: after truncation the log reopens and goes on from where it was.
    let got = round(&cfg, 3, 8, 10);
    for (i, (opened_at, acked)) in got.into_iter().enumerate() {
        assert_eq!(opened_at, Lsn(expected[i].len() as u64));
        let mut lsns: Vec<u64> = acked.iter().map(|(l, _)| l.0).collect();
        lsns.sort_unstable();
        let base = opened_at.0 + 1;
        assert_eq!(lsns, (base..base + 80).collect::<Vec<_>>());
        let mut by_lsn: Vec<_> = acked;
        by_lsn.sort_by_key(|(l, _)| *l);
        expected[i].extend(by_lsn.into_iter().map(|(_, p)| p));
        let got = read_from(d.path(), i as u32, cuts[i]);
        assert_eq!(got.len(), expected[i].len() - (cuts[i].0 as usize - 1));
        for (lsn, p) in got {
            assert_eq!(p, expected[i][lsn.0 as usize - 1], "shard {i} lsn {lsn}");
        }
    }
}

/// Dropped commit futures (a waiter that gives up) leave the shard working, and the records
/// are still made durable by later commits.
#[test]
fn dropped_commit_futures_are_harmless() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let expected: Vec<Vec<u8>> = (1..=400).map(|i| payload(0, i)).collect();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let s = s.clone();
                let mine: Vec<(u64, Vec<u8>)> = (0..25u64)
                    .map(|k| (k * 16 + t, expected[(k * 16 + t) as usize].clone()))
                    .collect();
                glommio::spawn_local(async move {
                    let mut out = Vec::new();
                    for (idx, p) in mine {
                        let lsn = s.append(&p).await.unwrap();
                        if idx % 3 == 0 {
                            // Poll once, then give up on it.
                            let mut c = Box::pin(s.commit(lsn));
                            let _ = futures::poll!(c.as_mut());
                            drop(c);
                        } else {
                            s.commit(lsn).await.unwrap();
                        }
                        out.push((lsn, p));
                    }
                    out
                })
            })
            .collect();
        let mut by_lsn = BTreeMap::new();
        for t in tasks {
            for (lsn, p) in t.await {
                by_lsn.insert(lsn, p);
            }
        }
        let last = s.sync().await.unwrap();
        assert_eq!(last, Lsn(400));
        let got = read_shard(&s);
        assert_eq!(got.len(), 400);
        for (lsn, p) in &got {
            assert_eq!(&by_lsn[lsn], p);
        }
        s.close().await.unwrap();
    });
}

/// The other durability modes go through the same pipeline without fdatasync.
#[test]
fn dsync_and_nosync_modes_round_trip() {
    for mode in [
        shardwal::Durability::Dsync,
        shardwal::Durability::NoSyncBenchmarkOnly,
    ] {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).durability(mode).build().unwrap();
        let got = run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            let tasks: Vec<_> = (0..8u32)
                .map(|t| {
                    let s = s.clone();
                    glommio::spawn_local(async move {
                        let mut out = Vec::new();
                        for k in 0..40u32 {
                            let p = cpayload(0, 9, t, k);
                            out.push((s.append_durable(&p).await.unwrap(), p));
                        }
                        out
                    })
                })
                .collect();
            let mut all = BTreeMap::new();
            for t in tasks {
                all.extend(t.await);
            }
            assert_eq!(s.metrics().fdatasyncs, 0, "{mode:?}");
            assert!(s.metrics().rotations >= 1, "{mode:?}");
            s.close().await.unwrap();
            all
        });
        let expected: Vec<Vec<u8>> = got.into_values().collect();
        assert_eq!(expected.len(), 320);
        assert_log_eq(&read_all(d.path(), 0), &expected, &format!("{mode:?}"));
    }
}

/// Dropping the last handle without `close()` still drains what was appended and writes the
/// final marker that vouches for it, as long as the executor keeps running.
#[test]
fn dropping_the_last_handle_closes_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let expected: Vec<Vec<u8>> = (1..=25).map(|i| payload(0, i)).collect();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for p in &expected {
            s.append(p).await.unwrap();
        }
        let other = s.clone();
        drop(s);
        assert!(
            other.append(b"still open").await.is_ok(),
            "a clone keeps it open"
        );
        drop(other);
        // Wait (bounded, as a hang guard) for the flusher to finish on its own.
        let mut vouched = 0;
        for _ in 0..5000 {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            // Until the first batch's write lands, no segment has a header yet.
            let Some(seg) = used_seg_files(d.path(), 0).into_iter().next() else {
                continue;
            };
            vouched = frames(&seg)
                .iter()
                .filter_map(|f| match f {
                    FrameAt::Marker { durable, .. } => Some(*durable),
                    FrameAt::Record { .. } => None,
                })
                .max()
                .unwrap_or(0);
            if vouched == 26 {
                break;
            }
        }
        assert_eq!(vouched, 26, "the final marker vouches for every record");
    });
    let mut expected = expected;
    expected.push(b"still open".to_vec());
    assert_log_eq(&read_all(d.path(), 0), &expected, "after drop");
}
