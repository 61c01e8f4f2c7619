//! I/O errors: the shard fails, refuses everything, wakes every waiter, and reopening with a
//! healthy disk recovers every record acknowledged before the error.
mod common;
use common::*;

use std::collections::BTreeMap;
use std::rc::Rc;

use shardwal::storage::{DmaStorage, Fault, FaultOp, FaultyStorage};
use shardwal::{Error, FailedOp, Lsn, Shard, ShardId};

/// Concurrent tasks per round; each appends and commits `PER_TASK` records.
const TASKS: u32 = 6;
const PER_TASK: u32 = 3;
/// Enough rounds for every swept `nth` to be reached (every round writes and syncs).
const ROUNDS: u32 = 40;
/// The sweep of `nth` for every kind of fault: every one of the first operations (segment
/// preparation, the first commits), and a few later ones, after segments rotated.
const NTHS: &[u64] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 30, 60, 90];

/// A payload of a length between 1 and ~2 KiB, so that segments rotate within the sweep.
fn rec(round: u32, task: u32, k: u32) -> Vec<u8> {
    let len = 1 + ((round * 977 + task * 131 + k * 71) % 2100) as usize;
    let tag = format!("r{round}t{task}k{k}|");
    tag.bytes().cycle().take(len).collect()
}

/// Whether `e` is shard 0's failure after the EIO injected on `op`: the operation that
/// failed is `op` itself or the preparation of a segment (which writes and fdatasyncs too),
/// and the error keeps its kind.
fn is_failed_error(e: &Error, op: FaultOp) -> bool {
    let eio = std::io::Error::from_raw_os_error(libc::EIO).kind();
    let expected_op = match op {
        FaultOp::Write => FailedOp::Write,
        FaultOp::Fdatasync => FailedOp::Fdatasync,
        other => panic!("no failure expected from {other:?} in this file"),
    };
    matches!(e, Error::ShardFailed { shard, cause }
        if *shard == ShardId(0)
            && cause.kind() == eio
            && e.io_kind() == Some(eio)
            && (cause.op() == expected_op || cause.op() == FailedOp::PrepareSegment))
}

struct Outcome {
    /// Every payload appended, by LSN.
    appended: BTreeMap<u64, Vec<u8>>,
    /// The highest LSN whose commit returned `Ok`.
    acked: u64,
}

fn scenario(op: FaultOp, nth: u64, forever: bool) {
    let what = format!("{op:?} nth={nth} forever={forever}");
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let fault = Fault::eio(op, nth, forever);
    let outcome = run(&cfg, || async {
        let storage = FaultyStorage::new(DmaStorage::new(false), fault);
        let probe = storage.probe();
        let s = match Shard::open_with_storage(&cfg, ShardId(0), Rc::new(storage)).await {
            Ok(s) => s,
            Err(e) => {
                // The fault hit the first segment's preparation: open reports it.
                assert!(matches!(e, Error::Io { .. }), "{what}: {e:?}");
                assert!(probe.injected() >= 1, "{what}");
                return Outcome {
                    appended: BTreeMap::new(),
                    acked: 0,
                };
            }
        };
        let mut appended = BTreeMap::new();
        let mut acked = 0u64;
        let mut reported = false;
        for round in 0..ROUNDS {
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let s = s.clone();
                    glommio::spawn_local(async move {
                        let mut out = Vec::new();
                        for k in 0..PER_TASK {
                            let p = rec(round, t, k);
                            let lsn = match s.append(&p).await {
                                Ok(lsn) => lsn,
                                Err(e) => {
                                    out.push((None, p, Err(e)));
                                    break;
                                }
                            };
                            // A second waiter on the same LSN, which must see the same outcome
                            // class.
                            let (a, b) = futures::join!(s.commit(lsn), s.commit(lsn));
                            assert_eq!(a.is_ok(), b.is_ok(), "twin waiters of lsn {lsn}");
                            out.push((Some(lsn), p, a));
                        }
                        out
                    })
                })
                .collect();
            for t in tasks {
                for (lsn, p, r) in t.await {
                    if let Some(lsn) = lsn {
                        assert!(appended.insert(lsn.0, p).is_none(), "{what}: lsn reused");
                    }
                    match r {
                        Ok(()) => acked = acked.max(lsn.unwrap().0),
                        Err(e) => {
                            assert!(is_failed_error(&e, op), "{what}: {e:?}");
                            reported = true;
                        }
                    }
                }
            }
            if s.is_failed() {
                break;
            }
        }
        assert!(probe.injected() >= 1, "{what}: the fault never hit");
        if !forever {
            assert_eq!(probe.injected(), 1, "{what}");
        }
        assert!(s.is_failed(), "{what}: an I/O error must fail the shard");
        assert!(
            reported,
            "{what}: the failure was reported by a commit or append"
        );
        assert!(s.metrics().io_errors >= 1);
        if nth >= 60 {
            assert!(
                s.metrics().rotations >= 1,
                "{what}: the late faults come after rotation"
            );
        }
        let keys: Vec<u64> = appended.keys().copied().collect();
        assert_eq!(keys, (1..=keys.len() as u64).collect::<Vec<_>>(), "{what}");
        assert!(s.durable_lsn().0 >= acked, "{what}");

        // Everything is refused from now on, also for LSNs that are durable already.
        assert!(is_failed_error(&s.append(b"more").await.unwrap_err(), op));
        assert!(is_failed_error(
            &s.append_durable(b"more").await.unwrap_err(),
            op
        ));
        let last = s.last_appended_lsn();
        assert_eq!(
            last.0,
            keys.len() as u64,
            "{what}: failed appends take no LSN"
        );
        for lsn in [Lsn(1), Lsn(acked.max(1)), last] {
            if lsn.0 >= 1 && lsn <= last {
                assert!(
                    is_failed_error(&s.commit(lsn).await.unwrap_err(), op),
                    "{what}"
                );
            }
        }
        if last.0 >= 1 {
            assert!(is_failed_error(&s.sync().await.unwrap_err(), op), "{what}");
        }
        assert!(is_failed_error(
            &s.truncate_before(Lsn(1)).await.unwrap_err(),
            op
        ));
        // Many concurrent waiters after the failure all resolve, with the error.
        let waiters: Vec<_> = (1..=last.0)
            .map(|l| {
                let s = s.clone();
                glommio::spawn_local(async move { s.commit(Lsn(l)).await })
            })
            .collect();
        for w in waiters {
            assert!(is_failed_error(&w.await.unwrap_err(), op), "{what}");
        }
        assert!(is_failed_error(&s.close().await.unwrap_err(), op), "{what}");
        assert!(is_failed_error(
            &s.append(b"after close").await.unwrap_err(),
            op
        ));
        Outcome { appended, acked }
    });

    // Reopen on the real disk: every acknowledged record is there, byte for byte; records
    // whose commit failed may or may not be there, but nothing else is.
    let Outcome { appended, acked } = outcome;
    let recovered = run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let got = read_shard(&s);
        let end = s.durable_lsn();
        assert_eq!(got.len() as u64, end.0, "{what}");
        assert!(
            end.0 >= acked,
            "{what}: acked {acked}, recovered up to {end}"
        );
        assert!(
            end.0 as usize <= appended.len(),
            "{what}: more records than appended"
        );
        for (lsn, p) in &got {
            assert_eq!(Some(p), appended.get(&lsn.0), "{what}: lsn {lsn}");
        }
        assert_eq!(s.append_durable(b"after").await.unwrap(), end.next());
        s.close().await.unwrap();
        got
    });
    let mut expected: Vec<Vec<u8>> = recovered.into_iter().map(|(_, p)| p).collect();
    expected.push(b"after".to_vec());
    assert_log_eq(&read_all(d.path(), 0), &expected, &what);
}

#[test]
fn write_fault_once() {
    for &nth in NTHS {
        scenario(FaultOp::Write, nth, false);
    }
}

#[test]
fn write_fault_forever() {
    for &nth in NTHS {
        scenario(FaultOp::Write, nth, true);
    }
}

#[test]
fn fdatasync_fault_once() {
    for &nth in NTHS {
        scenario(FaultOp::Fdatasync, nth, false);
    }
}

#[test]
fn fdatasync_fault_forever() {
    for &nth in NTHS {
        scenario(FaultOp::Fdatasync, nth, true);
    }
}

/// The probe counts what opening costs, so the sweep above is known to reach past it into
/// commits: opening reserves one segment, zeroes it (a write per zero piece) and syncs it
/// once; the swept `nth` from 0 to 11 cover all of that and the first commits after it.
#[test]
fn sweep_reaches_past_open_into_commits() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let never = Fault::eio(FaultOp::Write, u64::MAX, false);
        let storage = FaultyStorage::new(DmaStorage::new(false), never);
        let probe = storage.probe();
        let s = Shard::open_with_storage(&cfg, ShardId(0), Rc::new(storage))
            .await
            .unwrap();
        let (open_writes, open_syncs) = (probe.writes(), probe.fdatasyncs());
        assert_eq!(open_syncs, 1, "opening syncs its zeroed first segment once");
        assert!((1..=8).contains(&open_writes), "{open_writes}");
        assert_eq!(s.metrics().write_ops, 0);
        for i in 1..=5u64 {
            s.append_durable(&payload(0, i)).await.unwrap();
        }
        // Five commits, one at a time: five data writes and five syncs (plus zeroing ahead
        // whenever the shard was quiet).
        assert_eq!(s.metrics().write_ops, 5);
        assert!(probe.writes() >= open_writes + 5, "{}", probe.writes());
        assert_eq!(probe.fdatasyncs(), open_syncs + 5);
        assert_eq!(probe.injected(), 0);
        s.close().await.unwrap();
    });
}
