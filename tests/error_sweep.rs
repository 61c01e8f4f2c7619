//! Error-injection sweep in the style of SQLite's test VFS: a fixed workload is run once to
//! count its storage operations; then, for every operation kind, every index of that kind,
//! every error kind (EIO, ENOSPC, short write) and both once and forever, the same workload
//! runs with that one fault. Each run checks:
//!
//! * no false acknowledgement: every commit that returned `Ok` is in the log after reopening;
//! * no waiter left hanging: every task finishes (a watchdog fails the run otherwise);
//! * the shard refuses appends and commits after the error until it is reopened;
//! * reopening works and returns no record that was not appended (no ghosts).

mod common;
use common::*;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use shardwal::storage::{Fault, FaultKind, FaultOp, FaultPlan, SimStorage};
use shardwal::{Error, LogReader, Lsn, Shard, ShardId};

const TASKS: u32 = 4;
const PER_TASK: u64 = 8;

#[derive(Default)]
struct Outcome {
    appended: BTreeMap<u64, Vec<u8>>,
    acked: u64,
    open_failed: bool,
    refused_after: bool,
}

/// The workload: 4 tasks append and commit 8 records each (a mix of sizes so segments
/// rotate), a truncation in the middle and one of everything durable at the end, then one
/// more durable record. With `recycle`, then enough durable records to rotate through a
/// segment recycled from the spare the truncation kept, another truncation and one more
/// record.
async fn workload(shard: &Shard, out: &Rc<RefCell<Outcome>>, recycle: bool) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (shard, out) = (shard.clone(), out.clone());
            glommio::spawn_local(async move {
                for i in 0..PER_TASK {
                    let p = payload(t, i * 97 + 13);
                    let p = if i % 3 == 0 { p.repeat(12) } else { p };
                    let Ok(lsn) = shard.append(&p).await else {
                        return;
                    };
                    out.borrow_mut().appended.insert(lsn.0, p);
                    if t == 0 && i == PER_TASK / 2 {
                        let before = Lsn(shard.durable_lsn().0 / 2 + 1);
                        if shard.truncate_before(before).await.is_err() {
                            return;
                        }
                    }
                    match shard.commit(lsn).await {
                        Ok(()) => {
                            let mut o = out.borrow_mut();
                            o.acked = o.acked.max(lsn.0);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    // Truncate everything durable (whole old segments go), then write once more.
    let before = Lsn(shard.durable_lsn().0 + 1);
    if shard.truncate_before(before).await.is_err() {
        return;
    }
    if !durable_record(shard, out, payload(99, 1)).await || !recycle {
        return;
    }
    for i in 0..16 {
        if !durable_record(shard, out, payload(98, i).repeat(6)).await {
            return;
        }
    }
    let before = Lsn(shard.durable_lsn().0 + 1);
    if shard.truncate_before(before).await.is_err() {
        return;
    }
    durable_record(shard, out, payload(99, 2)).await;
}

/// Appends `p` and commits it; `false` once anything failed.
async fn durable_record(shard: &Shard, out: &Rc<RefCell<Outcome>>, p: Vec<u8>) -> bool {
    let Ok(lsn) = shard.append(&p).await else {
        return false;
    };
    out.borrow_mut().appended.insert(lsn.0, p);
    if shard.commit(lsn).await.is_err() {
        return false;
    }
    out.borrow_mut().acked = lsn.0;
    true
}

/// Runs the workload once with `fault` (if any); `recycle` keeps one spare segment (else
/// none: truncation removes every dropped segment) and runs the longer workload.
fn run_once(fault: Option<Fault>, what: &str, recycle: bool) -> (Outcome, FaultPlan) {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1)
        .segment_bytes(32 << 10)
        .flush_buffer_bytes(16 << 10)
        .max_record_bytes(8 << 10)
        // One spare: truncation keeps one dropped segment (a rename) and removes the others,
        // and a later segment is recycled from it (open, write, fdatasync, rename, dir sync).
        .recycled_segment_count(usize::from(recycle))
        .build()
        .unwrap();
    let plan = FaultPlan::new(fault.into_iter().collect());
    let out = Rc::new(RefCell::new(Outcome::default()));
    run(&cfg, || {
        let (cfg, out, plan) = (cfg.clone(), out.clone(), plan.clone());
        async move {
            let sim = SimStorage::new(7, plan.clone());
            let shard = match Shard::open_with_storage(&cfg, ShardId(0), Rc::new(sim)).await {
                Ok(s) => s,
                Err(e) => {
                    assert!(
                        plan.probe().injected() > 0,
                        "{what}: open failed by itself: {e}"
                    );
                    out.borrow_mut().open_failed = true;
                    return;
                }
            };
            let watchdog = glommio::timer::sleep(Duration::from_secs(60)).fuse();
            let work = workload(&shard, &out, recycle).fuse();
            futures::pin_mut!(watchdog, work);
            futures::select! {
                _ = work => {}
                _ = watchdog => panic!("{what}: a task hung"),
            }
            if plan.probe().injected() == 0 {
                // The fault may still hit while closing (the final marker's write and sync):
                // then close must report it.
                if let Err(e) = shard.close().await {
                    assert!(
                        plan.probe().injected() > 0 && matches!(e, Error::ShardFailed { .. }),
                        "{what}: close failed by itself: {e}"
                    );
                }
            }
            if plan.probe().injected() > 0 {
                // Whatever happened, the shard must now refuse to acknowledge anything.
                let refused_append =
                    matches!(shard.append(b"after").await, Err(Error::ShardFailed { .. }));
                let refused_commit = matches!(
                    shard.commit(Lsn(1)).await,
                    Err(Error::ShardFailed { .. }) | Err(Error::LsnNotAppended { .. })
                );
                out.borrow_mut().refused_after =
                    shard.is_failed() && refused_append && refused_commit;
            }
        }
    });
    let outcome = Rc::try_unwrap(out).ok().unwrap().into_inner();
    // Reopen for real and check.
    let reader = LogReader::open_all(d.path(), ShardId(0))
        .unwrap_or_else(|e| panic!("{what}: the log does not reopen: {e}"));
    let mut seen = BTreeMap::new();
    for r in reader {
        let r = r.unwrap_or_else(|e| panic!("{what}: read error: {e}"));
        let expected = outcome
            .appended
            .get(&r.lsn.0)
            .unwrap_or_else(|| panic!("{what}: ghost record at lsn {}", r.lsn));
        assert!(
            expected[..] == r.payload[..],
            "{what}: wrong payload at lsn {}",
            r.lsn
        );
        seen.insert(r.lsn.0, ());
    }
    let first = seen.keys().next().copied().unwrap_or(u64::MAX);
    for lsn in first.min(outcome.acked + 1)..=outcome.acked {
        assert!(
            seen.contains_key(&lsn),
            "{what}: acknowledged lsn {lsn} lost (log holds {:?}..)",
            seen.keys().next()
        );
    }
    (outcome, plan)
}

#[test]
fn every_fault_at_every_operation_index() {
    sweep(false, TASKS as u64 * PER_TASK + 1, &[FaultOp::Remove]);
}

/// The same sweep over a workload that recycles a segment: a fault at every step of
/// retiring a segment as a spare (rename, directory sync) and of turning the spare into a
/// new segment (open, header write, fdatasync, rename, directory sync).
#[test]
fn every_fault_at_every_operation_index_while_recycling() {
    sweep(
        true,
        TASKS as u64 * PER_TASK + 18,
        &[FaultOp::Remove, FaultOp::Rename, FaultOp::Open],
    );
}

fn sweep(recycle: bool, records: u64, needed: &[FaultOp]) {
    let (clean, plan) = run_once(None, "no fault", recycle);
    assert_eq!(clean.acked, records, "the fault-free run acknowledges all");
    let probe = plan.probe();
    let counts: Vec<(FaultOp, u64)> = FaultOp::ALL
        .iter()
        .map(|&op| (op, probe.calls(op)))
        .collect();
    for &needed in needed {
        assert!(
            counts.iter().any(|&(op, n)| op == needed && n > 0),
            "{needed:?} never happens: {counts:?}"
        );
    }
    let mut runs = 0u64;
    let mut hits = 0u64;
    for &(op, calls) in &counts {
        for nth in 0..calls {
            for kind in FaultKind::ALL {
                for forever in [false, true] {
                    let fault = Fault {
                        op,
                        nth,
                        forever,
                        kind,
                    };
                    let what = format!("{fault:?} (recycle: {recycle})");
                    let (outcome, plan) = run_once(Some(fault), &what, recycle);
                    runs += 1;
                    if plan.probe().injected() > 0 {
                        hits += 1;
                        assert!(
                            outcome.open_failed || outcome.refused_after,
                            "{what}: the shard acknowledged or accepted work after an I/O error"
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "error sweep (recycle: {recycle}): operations per run {counts:?}; {runs} runs, {hits} with the fault hit; 0 false acknowledgements, 0 hung waiters, 0 lost records"
    );
    assert!(
        hits * 10 >= runs * 9,
        "most planned faults must actually hit: {hits}/{runs}"
    );
}

/// Reopening resumes in the last segment through `Storage::open`, the one operation the sweep
/// above never reaches (its log is new). A fault there must fail the open with an error,
/// and a later healthy open must find every record.
#[test]
fn a_fault_when_reopening_a_segment_fails_the_open_and_loses_nothing() {
    for kind in FaultKind::ALL {
        let d = tempfile::tempdir().unwrap();
        let cfg = small(d.path(), 1).build().unwrap();
        let written = run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            for i in 0..20 {
                s.append(&payload(0, i)).await.unwrap();
            }
            s.close().await.unwrap()
        });
        assert_eq!(written, Lsn(20));
        let plan = FaultPlan::new(vec![Fault {
            op: FaultOp::Open,
            nth: 0,
            forever: false,
            kind,
        }]);
        let probe = plan.probe();
        run(&cfg, || async {
            let sim = SimStorage::new(1, plan.clone());
            match Shard::open_with_storage(&cfg, ShardId(0), Rc::new(sim)).await {
                Err(Error::Io { op, .. }) => assert_eq!(op, "opening segment"),
                Err(e) => panic!("{kind:?}: unexpected error {e}"),
                Ok(_) => panic!("{kind:?}: the open succeeded despite the fault"),
            }
        });
        assert_eq!(
            probe.calls(FaultOp::Open),
            1,
            "{kind:?}: the resume path was taken"
        );
        let n = LogReader::open_all(d.path(), ShardId(0)).unwrap().count();
        assert_eq!(n, 20, "{kind:?}: records lost after a failed open");
        // And a healthy reopen resumes and appends.
        run(&cfg, || async {
            let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
            assert_eq!(s.append_durable(b"after").await.unwrap(), Lsn(21));
            s.close().await.unwrap();
        });
    }
}
