//! [`ShardLogStore`] on the crash simulator: random Raft-like workloads (appends whose
//! flush callbacks are awaited later, votes, truncations, purges) on a shard whose storage
//! loses power after a random operation; the simulator then drops, keeps or tears every
//! unsynced write. After each crash the store is reopened and must still hold every entry
//! whose `io_completed` fired with `Ok`, every vote `save_vote` returned `Ok` for, and every
//! truncation and purge that returned `Ok`.
//!
//! Odd seeds run the store without an entry cache, so that every durable entry the checks
//! read comes back from the shard's files.
//!
//! `SHARDWAL_RAFT_CRASH_SEEDS=N` (default 20) sets the number of seeds; each runs three
//! sessions (crash, reopen, crash, ...).

use std::collections::BTreeMap;
use std::rc::Rc;

use openraft::alias::{EntryOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;
use openraft::vote::RaftVote;
use openraft_rt::{AsyncRuntime, Oneshot};
use rand::{RngExt, SeedableRng};
use shardwal::storage::{FaultPlan, SimStorage};
use shardwal::{CpuPlacement, Shard, ShardId, WalConfig};
use shardwal_raft::types::{KvConfig, Put};
use shardwal_raft::{GlommioRuntime, ShardLogStore, DEFAULT_CACHE_BYTES};

type Store = ShardLogStore<KvConfig>;

/// What the store must hold after any crash.
#[derive(Default, Debug)]
struct Model {
    /// Entries acknowledged durable (index -> term), minus truncated and purged ones.
    entries: BTreeMap<u64, u64>,
    /// The term of the last vote saved with `Ok`.
    vote_term: u64,
    /// Everything up to this index was purged with `Ok`.
    purged: Option<u64>,
}

fn entry(term: u64, index: u64) -> EntryOf<KvConfig> {
    let put = Put {
        key: index.to_le_bytes().to_vec(),
        value: vec![term as u8; 200],
    };
    EntryOf::<KvConfig>::new_normal(log_id::<KvConfig>(term, 1, index), put)
}

fn vote(term: u64) -> VoteOf<KvConfig> {
    VoteOf::<KvConfig>::from_leader_id(
        openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 },
        true,
    )
}

/// Checks the reopened store against the model.
async fn verify(store: &mut Store, model: &Model, what: &str) {
    let entries = store.try_get_log_entries(0..u64::MAX).await.unwrap();
    let held: BTreeMap<u64, u64> = entries
        .iter()
        .map(|e| (e.index(), e.log_id().leader_id.term))
        .collect();
    for (index, term) in &model.entries {
        assert_eq!(
            held.get(index),
            Some(term),
            "{what}: acknowledged entry {index} lost"
        );
    }
    let vote = store.read_vote().await.unwrap();
    let term = vote.map_or(0, |v| v.leader_id().term);
    assert!(
        term >= model.vote_term,
        "{what}: saved vote {} lost (have {term})",
        model.vote_term
    );
    let state = store.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id.map(|l| l.index);
    assert!(
        purged >= model.purged,
        "{what}: purge to {:?} lost ({purged:?})",
        model.purged
    );
}

/// One session's workload until the simulated power cut (or 60 steps).
async fn workload(store: &mut Store, model: &mut Model, rng: &mut rand::rngs::StdRng) {
    let mut pending: Vec<(Vec<(u64, u64)>, _)> = Vec::new();
    let mut term = model.vote_term.max(1);
    for _ in 0..60 {
        let last = store
            .get_log_state()
            .await
            .unwrap()
            .last_log_id
            .map_or(0, |l| l.index);
        match rng.random_range(0..10) {
            0..=5 => {
                let batch: Vec<(u64, u64)> = (1..=rng.random_range(1..6))
                    .map(|i| (last + i, term))
                    .collect();
                let (tx, rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel();
                let entries = batch.iter().map(|&(i, t)| entry(t, i));
                if store.append(entries, IOFlushed::signal(tx)).await.is_err() {
                    return;
                }
                pending.push((batch, rx));
            }
            step => {
                // Raft settles its appends before it votes, truncates or purges.
                for (batch, rx) in pending.drain(..) {
                    if let Ok(Ok(())) = rx.await {
                        model.entries.extend(batch);
                    }
                }
                let ok = match step {
                    6 | 7 => {
                        term += 1;
                        let ok = store.save_vote(&vote(term)).await.is_ok();
                        if ok {
                            model.vote_term = term;
                        }
                        ok
                    }
                    8 => {
                        let keep = rng.random_range(0..=last);
                        let after = (keep > 0).then(|| log_id::<KvConfig>(term, 1, keep));
                        // Whether or not it succeeds, entries after `keep` may be gone.
                        model.entries.split_off(&(keep + 1));
                        store.truncate_after(after).await.is_ok()
                    }
                    _ => {
                        let Some((&upto, &t)) = model.entries.iter().next() else {
                            continue;
                        };
                        let upto = upto + rng.random_range(0..3).min(last.saturating_sub(upto));
                        let ok = store.purge(log_id::<KvConfig>(t, 1, upto)).await.is_ok();
                        // Purged entries are gone either way.
                        model.entries = model.entries.split_off(&(upto + 1));
                        if ok {
                            model.purged = Some(upto).max(model.purged);
                        }
                        ok
                    }
                };
                if !ok {
                    return;
                }
            }
        }
    }
    for (batch, rx) in pending.drain(..) {
        if let Ok(Ok(())) = rx.await {
            model.entries.extend(batch);
        }
    }
}

/// Runs one seed; returns (power cuts, acknowledged entries checked, vote terms checked).
fn run_seed(seed: u64) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::builder(dir.path())
        .shard_count(1)
        .placement(CpuPlacement::Unbound)
        .segment_bytes(96 << 10)
        .flush_buffer_bytes(16 << 10)
        .max_record_bytes(4 << 10)
        .build()
        .unwrap();
    let cache = if seed % 2 == 1 {
        0
    } else {
        DEFAULT_CACHE_BYTES
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut crashes = 0;
    let mut checked = (0u64, 0u64);
    for session in 0..3u64 {
        let sim = SimStorage::new(seed * 10 + session, FaultPlan::new(Vec::new()));
        // A power cut after a random operation, or else at the end of the session.
        sim.crash_after(rng.random_range(5..300));
        let mut session_rng = rand::rngs::StdRng::seed_from_u64(rng.random());
        let what = format!("seed {seed} session {session}");
        GlommioRuntime::new(1).block_on(async {
            let Ok(shard) = Shard::open_with_storage(&cfg, ShardId(0), Rc::new(sim.clone())).await
            else {
                return; // the power cut hit the open itself
            };
            let mut store = ShardLogStore::open_with_cache(shard, cache).await.unwrap();
            verify(&mut store, &model, &what).await;
            workload(&mut store, &mut model, &mut session_rng).await;
            sim.crash_now();
            // The store and its shard die with the "process": no close, no final marker.
            std::mem::forget(store);
        });
        assert!(sim.crashed());
        crashes += 1;
        checked.0 += model.entries.len() as u64;
        checked.1 += model.vote_term;
        shardwal::shm::simulate_process_death(dir.path());
        sim.materialize_crash().unwrap();
    }
    // A last reopen on the real storage after the last crash.
    GlommioRuntime::new(1).block_on(async {
        let shard = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let mut store = ShardLogStore::open_with_cache(shard.clone(), cache)
            .await
            .unwrap();
        verify(&mut store, &model, &format!("seed {seed} final")).await;
        shard.close().await.unwrap();
    });
    (crashes, checked.0, checked.1)
}

#[test]
fn acknowledged_entries_votes_truncations_and_purges_survive_power_cuts() {
    let seeds: u64 = std::env::var("SHARDWAL_RAFT_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (mut crashes, mut entries, mut votes) = (0, 0, 0);
    for seed in 0..seeds {
        let (c, e, v) = run_seed(seed);
        (crashes, entries, votes) = (crashes + c, entries + e, votes + v);
    }
    eprintln!(
        "raft store crash simulation: {seeds} seeds, {crashes} power cuts; {entries} acknowledged entries and {votes} vote terms checked after them, 0 lost"
    );
    assert!(
        entries > 0 && votes > 0,
        "the workload acknowledged nothing: it proved nothing"
    );
}
