//! Reopening a [`ShardLogStore`]: write, close the shard, reopen from the same directory;
//! the log state, vote, committed id and entries must be the ones written, including
//! truncations and purges that crossed segment boundaries. A foreign record is refused.

mod common;
use common::config;
use std::collections::BTreeSet;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::{blank_ent, log_id, membership_ent};
use openraft::vote::RaftVote;
use openraft_rt::{AsyncRuntime, Oneshot};
use shardwal::{Shard, ShardId, WalConfig};
use shardwal_raft::types::{KvConfig, Put};
use shardwal_raft::{GlommioRuntime, ShardLogStore};

type Store = ShardLogStore<KvConfig>;

async fn open(config: &WalConfig) -> Store {
    let shard = Shard::open(config, ShardId(0)).await.unwrap();
    ShardLogStore::open(shard).await.unwrap()
}

/// A normal entry with a 4 KiB value, so a few hundred fill a 1 MiB segment.
fn put(term: u64, index: u64) -> EntryOf<KvConfig> {
    let data = Put {
        key: index.to_be_bytes().to_vec(),
        value: vec![index as u8; 4096],
    };
    EntryOf::<KvConfig>::new_normal(log_id::<KvConfig>(term, 1, index), data)
}

/// Appends and waits for the flush callback (what Raft would do).
async fn append(store: &mut Store, entries: Vec<EntryOf<KvConfig>>) {
    let (tx, rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

/// Everything a reopened store must reproduce.
async fn snapshot(
    store: &mut Store,
) -> (
    Option<LogIdOf<KvConfig>>,
    Option<LogIdOf<KvConfig>>,
    Option<VoteOf<KvConfig>>,
    Option<LogIdOf<KvConfig>>,
    Vec<EntryOf<KvConfig>>,
) {
    let state = store.get_log_state().await.unwrap();
    let vote = store.read_vote().await.unwrap();
    let committed = store.read_committed().await.unwrap();
    let entries = store.try_get_log_entries(0..u64::MAX).await.unwrap();
    (
        state.last_purged_log_id,
        state.last_log_id,
        vote,
        committed,
        entries,
    )
}

#[test]
fn state_survives_close_and_reopen_across_truncations_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    GlommioRuntime::new(1).block_on(async {
        let mut store = open(&cfg).await;
        let members = BTreeSet::from([1u64, 2, 3]);
        append(&mut store, vec![blank_ent::<KvConfig>(0, 1, 0)]).await;
        append(
            &mut store,
            vec![membership_ent::<KvConfig>(1, 1, 1, vec![members])],
        )
        .await;
        // 600 entries of 4 KiB: a few segments of 1 MiB.
        append(&mut store, (2..602).map(|i| put(1, i)).collect()).await;
        store
            .save_vote(&VoteOf::<KvConfig>::from_leader_id(
                openraft::impls::leader_id_adv::LeaderId {
                    term: 2,
                    node_id: 1,
                },
                true,
            ))
            .await
            .unwrap();
        // A new leader overwrites the tail: entries after 550 go, new ones of term 2 follow.
        store
            .truncate_after(Some(log_id::<KvConfig>(1, 1, 550)))
            .await
            .unwrap();
        append(&mut store, (551..700).map(|i| put(2, i)).collect()).await;
        store
            .save_committed(Some(log_id::<KvConfig>(2, 1, 650)))
            .await
            .unwrap();
        // Purge the first 400 (several segments) and keep the rest.
        store.purge(log_id::<KvConfig>(1, 1, 400)).await.unwrap();
        let before = snapshot(&mut store).await;
        assert_eq!(before.0, Some(log_id::<KvConfig>(1, 1, 400)));
        assert_eq!(before.1, Some(log_id::<KvConfig>(2, 1, 699)));
        assert_eq!(before.4.len(), 299);
        assert_eq!(before.4[0].index(), 401);
        assert_eq!(before.4[150].log_id(), log_id::<KvConfig>(2, 1, 551));
        let first_lsn = store.backend().first_lsn();
        assert!(
            first_lsn.0 > 1,
            "the purge truncated whole segments of the shard"
        );
        store.backend().close().await.unwrap();
        drop(store);

        let mut reopened = open(&cfg).await;
        assert_eq!(snapshot(&mut reopened).await, before);
        reopened.backend().close().await.unwrap();
    });
}

#[test]
fn a_record_that_is_not_the_stores_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    GlommioRuntime::new(1).block_on(async {
        let shard = Shard::open(&cfg, ShardId(0)).await.unwrap();
        shard.append_durable(b"not a raft record").await.unwrap();
        let err = ShardLogStore::<KvConfig>::open(shard.clone())
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("not a shardwal-raft record"),
            "{err}"
        );
        // Nothing was changed: the record is still there.
        let records: Vec<_> = shard.reader(shard.first_lsn()).unwrap().collect();
        assert_eq!(records.len(), 1);
        shard.close().await.unwrap();
    });
}

#[test]
fn an_out_of_order_append_is_refused_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    GlommioRuntime::new(1).block_on(async {
        let mut store = open(&cfg).await;
        append(&mut store, (1..=5).map(|i| put(1, i)).collect()).await;
        let before = snapshot(&mut store).await;
        for bad in [vec![put(1, 7)], vec![put(1, 6), put(1, 8)], vec![put(1, 3)]] {
            let (tx, _rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel();
            let err = store.append(bad, IOFlushed::signal(tx)).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("out-of-order append"), "{err}");
        }
        assert_eq!(snapshot(&mut store).await, before);
        store.backend().close().await.unwrap();
        drop(store);
        let mut reopened = open(&cfg).await;
        assert_eq!(snapshot(&mut reopened).await, before);
        reopened.backend().close().await.unwrap();
    });
}
