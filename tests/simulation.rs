//! Deterministic simulation: random workloads on the storage simulator, a crash at a random
//! point that drops or tears every write that was not synced, recovery, and the checks:
//!
//! * every acknowledged record is present and intact;
//! * every record present was appended, with exactly that payload, at that LSN (no ghosts);
//! * LSNs are contiguous;
//! * the log always reopens (a crash is never mistaken for corruption), also after a failed
//!   commit, and keeps working for the next session.
//!
//! Each seed picks a segment size and a number of spare segments (0 ..= 3), and the workload
//! truncates, so segments are retired as spares and recycled, with crashes at every step.
//! New segments are reserved with `allocate` (which a crash may undo) and zeroed ahead of
//! the write head while the shard is quiet (the workload sleeps now and then), so crashes
//! also land between allocations, zero pieces and the records written over them.
//!
//! Every fourth seed (`seed % 4 == 3`, see [`pieces`]) runs 1 MiB flush buffers, 2-3 MiB
//! segments and records of 16-70 KB, so that batches no commit waits for are sealed as
//! 512 KiB pieces and their fdatasyncs are held (`shard/overlap.rs`), with crashes between
//! pieces, their writes and the commit that syncs them.
//!
//! `SHARDWAL_SIM_SEEDS=N` runs N seeds (default 200); `SHARDWAL_SIM_SEED=S` replays one.

mod common;
use common::*;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardwal::storage::{Fault, FaultKind, FaultOp, FaultPlan, SimStorage};
use shardwal::{Error, LogReader, Lsn, Shard, ShardId};

/// What the workload did, as far as the callers could tell.
#[derive(Default)]
struct Model {
    /// Every payload handed to `append` that got an LSN.
    appended: BTreeMap<u64, Vec<u8>>,
    /// The highest LSN a successful commit covered.
    acked: u64,
    /// The highest `before` of any truncation started: one that failed (a crash or an I/O
    /// error in the middle) has an unknown outcome, like a failed commit, so records below
    /// it may be gone.
    truncated_before: u64,
    /// Appends that got an LSN in the current session.
    appends_this_session: u64,
}

#[derive(Default)]
struct Totals {
    sessions: u64,
    crashes: u64,
    faults_injected: u64,
    records_acked: u64,
    records_checked: u64,
    writes_dropped: u64,
    writes_torn: u64,
    writes_kept: u64,
    files_lost: u64,
    files_restored: u64,
    segments_recycled: u64,
    segments_retired_as_spares: u64,
    allocations_dropped: u64,
    zeroed_bytes: u64,
    piece_seals: u64,
}

/// Whether `seed` runs the large-record configuration that seals pieces.
fn pieces(seed: u64) -> bool {
    seed % 4 == 3
}

fn record(rng: &mut StdRng, seed: u64, n: u64) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        _ if pieces(seed) => rng.random_range(16_000..70_000),
        0 => rng.random_range(2000..9000),
        _ => rng.random_range(1..600),
    };
    let tag = format!("seed{seed}-n{n}|");
    tag.bytes().cycle().take(len).collect()
}

/// Mid-workload crashes: once `at_appends` records were appended, the power is cut after
/// `then_ops` more storage operations, so the cut lands inside the write/fdatasync pipeline.
struct CrashPlan {
    sim: SimStorage,
    at_appends: Option<u64>,
    then_ops: u64,
}

async fn workload(
    shard: Shard,
    model: Rc<RefCell<Model>>,
    seed: u64,
    rng: Rc<RefCell<StdRng>>,
    crash: Rc<CrashPlan>,
) {
    let writers = rng.borrow_mut().random_range(1..=8);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (shard, model, rng, crash) =
                (shard.clone(), model.clone(), rng.clone(), crash.clone());
            glommio::spawn_local(async move {
                let steps = rng.borrow_mut().random_range(5..60);
                for step in 0..steps {
                    let (action, payload) = {
                        let mut r = rng.borrow_mut();
                        let a = match r.random_range(0..20u32) {
                            // Large-record seeds mostly append without waiting, so that
                            // batches grow into pieces before a commit asks for them.
                            1..=9 | 16 | 17 if pieces(seed) => 10,
                            a => a,
                        };
                        (a, record(&mut r, seed, (w as u64) << 32 | step))
                    };
                    let lsn = match shard.append(&payload).await {
                        Ok(lsn) => lsn,
                        Err(_) => return,
                    };
                    let count = {
                        let mut m = model.borrow_mut();
                        m.appended.insert(lsn.0, payload);
                        m.appends_this_session += 1;
                        m.appends_this_session
                    };
                    if crash.at_appends == Some(count) {
                        crash.sim.crash_after(crash.then_ops);
                    }
                    let committed = match action {
                        0..=9 => shard.commit(lsn).await.map(|_| lsn),
                        10..=14 => continue,
                        15..=17 => shard.sync().await,
                        18 => {
                            // Half of the durable log, or all of it (every segment but the
                            // active one goes: spares for recycling, or removed).
                            let durable = shard.durable_lsn().0;
                            let before = if rng.borrow_mut().random_bool(0.5) {
                                Lsn(durable / 2 + 1)
                            } else {
                                Lsn(durable + 1)
                            };
                            {
                                let mut m = model.borrow_mut();
                                m.truncated_before = m.truncated_before.max(before.0);
                            }
                            let r = shard.truncate_before(before).await;
                            if std::env::var_os("SIM_DEBUG").is_some() {
                                eprintln!("truncate_before({before}) -> {r:?}");
                            }
                            match r {
                                Ok(_) => continue,
                                Err(Error::TruncateBeyondDurable { .. }) => continue,
                                Err(_) => return,
                            }
                        }
                        _ => {
                            glommio::timer::sleep(std::time::Duration::from_micros(50)).await;
                            continue;
                        }
                    };
                    match committed {
                        Ok(up_to) => {
                            let mut m = model.borrow_mut();
                            m.acked = m.acked.max(up_to.0);
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
}

/// Reads the log back and checks it against the model; returns how many records it held.
fn verify(dir: &std::path::Path, model: &mut Model, seed: u64, what: &str) -> u64 {
    let ctx = format!("seed {seed} ({what}); replay with SHARDWAL_SIM_SEED={seed}");
    let reader = LogReader::open_all(dir, ShardId(0))
        .unwrap_or_else(|e| panic!("{ctx}: the log does not reopen: {e}"));
    let mut first = None;
    let mut last = 0u64;
    for r in reader {
        let r = r.unwrap_or_else(|e| panic!("{ctx}: read error: {e}"));
        let lsn = r.lsn.0;
        if let Some(_f) = first {
            assert_eq!(lsn, last + 1, "{ctx}: LSNs not contiguous");
        } else {
            first = Some(lsn);
        }
        match model.appended.get(&lsn) {
            Some(p) => assert!(
                p[..] == r.payload[..],
                "{ctx}: lsn {lsn} holds a payload that was never appended there"
            ),
            None => panic!("{ctx}: ghost record at lsn {lsn}"),
        }
        last = lsn;
    }
    let first = first.unwrap_or(last + 1);
    // Acknowledged records at or above the truncation point must all be there.
    let must_from = model.truncated_before.max(1);
    if model.acked >= must_from {
        assert!(
            first <= must_from && last >= model.acked,
            "{ctx}: acknowledged lsns {must_from}..={} but the log holds {first}..={last}",
            model.acked
        );
    }
    // The log now ends at `last`: what was appended after it is gone, and the next session
    // hands out those LSNs again.
    model.appended.retain(|&l, _| l <= last);
    model.acked = model.acked.min(last);
    last + 1 - first
}

fn run_seed(seed: u64, totals: &mut Totals) {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = tempfile::tempdir().unwrap();
    let mut cfg = small(d.path(), 1)
        .flush_buffer_count(rng.random_range(2..=4))
        .segment_bytes([96 << 10, 128 << 10, 256 << 10][rng.random_range(0..3)])
        .recycled_segment_count(rng.random_range(0..=3));
    if pieces(seed) {
        cfg = cfg
            .flush_buffer_bytes(1 << 20)
            .segment_bytes([2 << 20, 3 << 20][rng.random_range(0..2)])
            .max_record_bytes(128 << 10);
    }
    let cfg = cfg.build().unwrap();
    let mut model = Model::default();
    let sessions = rng.random_range(1..=3);
    for session in 0..sessions {
        totals.sessions += 1;
        let mut faults = Vec::new();
        if rng.random_bool(0.25) {
            faults.push(Fault {
                op: FaultOp::ALL[rng.random_range(0..FaultOp::ALL.len())],
                nth: rng.random_range(0..40),
                forever: rng.random_bool(0.5),
                kind: FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())],
            });
        }
        let plan = FaultPlan::new(faults);
        let probe = plan.probe();
        let sim = SimStorage::new(seed.wrapping_mul(1000) + session, plan);
        let clean = rng.random_bool(0.2);
        let mut at_appends = None;
        if !clean {
            if rng.random_bool(0.5) {
                // Anywhere, open and segment preparation included.
                sim.crash_after(rng.random_range(3..300));
            } else {
                // In the middle of the workload, with writes and syncs in flight.
                at_appends = Some(rng.random_range(1..150));
            }
        }
        let crash = Rc::new(CrashPlan {
            sim: sim.clone(),
            at_appends,
            then_ops: rng.random_range(0..8),
        });
        model.appends_this_session = 0;
        let m = Rc::new(RefCell::new(std::mem::take(&mut model)));
        let task_rng = Rc::new(RefCell::new(StdRng::seed_from_u64(rng.random())));
        let metrics = Rc::new(RefCell::new(None));
        run(&cfg, || {
            let metrics = metrics.clone();
            let (m, sim, cfg) = (m.clone(), sim.clone(), cfg.clone());
            async move {
                let shard = match Shard::open_with_storage(&cfg, ShardId(0), Rc::new(sim)).await {
                    Ok(s) => s,
                    Err(_) => return, // the crash or a fault hit the open itself
                };
                workload(shard.clone(), m.clone(), seed, task_rng, crash).await;
                *metrics.borrow_mut() = Some(shard.metrics());
                if clean {
                    if let Ok(last) = shard.close().await {
                        let mut m = m.borrow_mut();
                        m.acked = m.acked.max(last.0);
                    }
                }
            }
        });
        model = Rc::try_unwrap(m).ok().expect("tasks finished").into_inner();
        totals.faults_injected += probe.injected();
        if let Some(m) = metrics.take() {
            totals.segments_recycled += m.segments_recycled;
            totals.segments_retired_as_spares += m.segments_retired_as_spares;
            totals.zeroed_bytes += m.zeroed_bytes;
            totals.piece_seals += m.piece_seals;
        }
        if !clean || sim.crashed() {
            totals.crashes += 1;
            let ops = sim.ops();
            let report = sim.materialize_crash().unwrap();
            if std::env::var_os("SIM_DEBUG").is_some() {
                eprintln!("seed {seed} session {session}: crash after {ops} ops: {report:?}");
            }
            totals.writes_dropped += report.writes_dropped;
            totals.writes_torn += report.writes_torn;
            totals.writes_kept += report.writes_kept;
            totals.files_lost += report.files_lost;
            totals.files_restored += report.files_restored;
            totals.allocations_dropped += report.allocations_dropped;
        }
        totals.records_acked += model.acked;
        let what = format!("session {session}, clean={clean}");
        totals.records_checked += verify(d.path(), &mut model, seed, &what);
    }
}

#[test]
fn random_workloads_survive_random_crashes() {
    let seeds: Vec<u64> = match std::env::var("SHARDWAL_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SHARDWAL_SIM_SEED")],
        Err(_) => {
            let n = std::env::var("SHARDWAL_SIM_SEEDS")
                .map(|s| s.parse().expect("SHARDWAL_SIM_SEEDS"))
                .unwrap_or(200);
            (0..n).collect()
        }
    };
    let mut totals = Totals::default();
    for &seed in &seeds {
        run_seed(seed, &mut totals);
    }
    eprintln!(
        "simulation: {} seeds, {} sessions, {} crashes, {} injected faults; unsynced writes at crash: {} dropped, {} torn, {} kept; unsynced allocations dropped {}; files lost {} restored {}; segments kept as spares {}, recycled {}; {} KiB zeroed ahead; {} pieces sealed; {} acknowledged records required, {} records verified; 0 losses, 0 ghosts",
        seeds.len(),
        totals.sessions,
        totals.crashes,
        totals.faults_injected,
        totals.writes_dropped,
        totals.writes_torn,
        totals.writes_kept,
        totals.allocations_dropped,
        totals.files_lost,
        totals.files_restored,
        totals.segments_retired_as_spares,
        totals.segments_recycled,
        totals.zeroed_bytes >> 10,
        totals.piece_seals,
        totals.records_acked,
        totals.records_checked
    );
    if seeds.len() >= 50 {
        // (A single replayed seed may well tear nothing.)
        assert!(
            totals.crashes > 0 && totals.writes_torn > 0,
            "the simulation must exercise crashes"
        );
    }
    if seeds.len() >= 50 {
        assert!(
            totals.segments_recycled > 0,
            "the simulation must exercise segment recycling"
        );
        assert!(
            totals.zeroed_bytes > 0 && totals.allocations_dropped > 0,
            "the simulation must exercise zeroing ahead and lost allocations"
        );
        assert!(
            totals.piece_seals > 0,
            "the simulation must exercise pieces"
        );
    }
}
