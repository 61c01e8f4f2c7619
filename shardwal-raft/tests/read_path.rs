//! The store's read path: an index of LSNs, a bounded cache of the newest entries, and
//! reads through the shard for the rest. Entries read back after the cache evicted them
//! must be the entries written; the cache must stay within its budget however much is
//! written; entries not yet durable must be served; reads must cross truncations and
//! purges; a sequential scan must continue on one reader instead of opening one per call;
//! after a reopen, a miss into a segment written before it must begin near its entry (the
//! store's replay taught the shard where that segment's batches start).

mod common;
use common::config;
use openraft::alias::EntryOf;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;
use openraft_rt::{AsyncRuntime, Oneshot};
use shardwal::{Shard, ShardId, WalConfig};
use shardwal_raft::types::{KvConfig, Put};
use shardwal_raft::{GlommioRuntime, ShardLogStore, DEFAULT_CACHE_BYTES};

type Store = ShardLogStore<KvConfig>;

async fn open(config: &WalConfig, cache_bytes: usize) -> Store {
    let shard = Shard::open(config, ShardId(0)).await.unwrap();
    ShardLogStore::open_with_cache(shard, cache_bytes)
        .await
        .unwrap()
}

/// A normal entry with a 1 KiB value that depends on its term and index.
fn put(term: u64, index: u64) -> EntryOf<KvConfig> {
    let data = Put {
        key: index.to_be_bytes().to_vec(),
        value: vec![(index as u8) ^ (term as u8); 1024],
    };
    EntryOf::<KvConfig>::new_normal(log_id::<KvConfig>(term, 1, index), data)
}

/// Appends and waits for the flush callback (what Raft would do).
async fn append(store: &mut Store, entries: Vec<EntryOf<KvConfig>>) {
    let (tx, rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

#[test]
fn entries_read_back_after_eviction_are_the_entries_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    GlommioRuntime::new(1).block_on(async {
        let budget = 16 << 10;
        let mut store = open(&cfg, budget).await;
        let written: Vec<_> = (1..=2000).map(|i| put(1, i)).collect();
        for chunk in written.chunks(50) {
            append(&mut store, chunk.to_vec()).await;
        }
        // 2000 entries of over 1 KiB: most were evicted, several segments hold them.
        let stats = store.read_path_stats();
        assert_eq!(stats.indexed_entries, 2000);
        assert!(stats.cached_entries < 20, "{stats:?}");
        let all = store.try_get_log_entries(0..u64::MAX).await.unwrap();
        assert_eq!(all, written);
        let stats = store.read_path_stats();
        assert!(stats.entries_from_shard >= 1980, "{stats:?}");
        assert!(stats.entries_from_cache >= 1, "{stats:?}");
        // Any window, inclusive or exclusive bounds, equals the slice written.
        for (lo, hi) in [(1, 2), (17, 400), (1500, 1990), (1990, 2001), (2000, 2001)] {
            let got = store.try_get_log_entries(lo..hi).await.unwrap();
            assert_eq!(
                got,
                written[(lo - 1) as usize..(hi - 1) as usize],
                "{lo}..{hi}"
            );
        }
        let got = store.try_get_log_entries(100..=199).await.unwrap();
        assert_eq!(got, written[99..199]);

        // A store with the default cache over the same shard reads the same entries.
        let shard = store.backend().clone();
        drop(store);
        let mut cached = ShardLogStore::<KvConfig>::open(shard.clone())
            .await
            .unwrap();
        assert_eq!(
            cached.read_path_stats().budget_bytes,
            DEFAULT_CACHE_BYTES as u64
        );
        assert_eq!(
            cached.try_get_log_entries(0..u64::MAX).await.unwrap(),
            written
        );
        assert_eq!(cached.read_path_stats().entries_from_shard, 0);
        shard.close().await.unwrap();
    });
}

#[test]
fn the_cache_stays_within_its_budget_and_holds_what_is_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    GlommioRuntime::new(1).block_on(async {
        let budget = 64 << 10;
        let mut store = open(&cfg, budget).await;
        // 8000 entries of over 1 KiB: over 8 MiB written, 128 times the budget.
        for first in (1..=8000).step_by(100) {
            let entries: Vec<_> = (first..first + 100).map(|i| put(1, i)).collect();
            let (tx, rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel();
            store
                .append(entries.clone(), IOFlushed::signal(tx))
                .await
                .unwrap();
            // Readable before they are durable (the cache holds them whatever the budget).
            let got = store.try_get_log_entries(first..first + 100).await.unwrap();
            assert_eq!(got, entries);
            rx.await.unwrap().unwrap();
            let stats = store.read_path_stats();
            assert!(stats.cached_bytes <= budget as u64, "{stats:?}");
        }
        let stats = store.read_path_stats();
        assert_eq!(stats.indexed_entries, 8000);
        assert!(stats.cached_entries > 0, "{stats:?}");
        assert!(stats.cached_bytes <= budget as u64, "{stats:?}");

        // A reopened store rebuilds the index and keeps only the budget's worth.
        let shard = store.backend().clone();
        drop(store);
        let reopened = ShardLogStore::<KvConfig>::open_with_cache(shard.clone(), budget)
            .await
            .unwrap();
        let stats = reopened.read_path_stats();
        assert_eq!(stats.indexed_entries, 8000);
        assert!(stats.cached_bytes <= budget as u64, "{stats:?}");
        shard.close().await.unwrap();
    });
}

#[test]
fn reads_cross_truncations_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    GlommioRuntime::new(1).block_on(async {
        // No cache: every durable entry comes back from the shard.
        let mut store = open(&cfg, 0).await;
        append(&mut store, (1..=1200).map(|i| put(1, i)).collect()).await;
        // A new leader overwrites the tail after 1100 (the overwritten entries stay in the
        // shard between the kept ones and the new ones, and must be skipped).
        store
            .truncate_after(Some(log_id::<KvConfig>(1, 1, 1100)))
            .await
            .unwrap();
        append(&mut store, (1101..=1500).map(|i| put(2, i)).collect()).await;
        let model = |i: u64| if i <= 1100 { put(1, i) } else { put(2, i) };
        let expect = |lo: u64, hi: u64| (lo..hi).map(model).collect::<Vec<_>>();
        assert_eq!(
            store.try_get_log_entries(1090..1110).await.unwrap(),
            expect(1090, 1110)
        );
        // Purge the first 1000 (whole segments go): a range across the purge point returns
        // what is live.
        store.purge(log_id::<KvConfig>(1, 1, 1000)).await.unwrap();
        assert!(store.backend().first_lsn().0 > 1, "segments were removed");
        assert_eq!(
            store.try_get_log_entries(990..1020).await.unwrap(),
            expect(1001, 1020)
        );
        assert_eq!(
            store.try_get_log_entries(0..u64::MAX).await.unwrap(),
            expect(1001, 1501)
        );
        assert!(store.try_get_log_entries(1..1000).await.unwrap().is_empty());
        assert!(store
            .try_get_log_entries(1501..1600)
            .await
            .unwrap()
            .is_empty());

        // A sequential scan in small ranges (a follower catching up) continues on the
        // reader the previous call left: a few readers, not one per call.
        let opened = store.read_path_stats().readers_opened;
        let mut got = Vec::new();
        for lo in (1001..1501).step_by(16) {
            got.extend(store.try_get_log_entries(lo..lo + 16).await.unwrap());
        }
        assert_eq!(got, expect(1001, 1501));
        let readers = store.read_path_stats().readers_opened - opened;
        assert!(readers <= 2, "{readers} readers for 32 sequential reads");

        // After reopening (the kept and the re-written entries, the purge), the same.
        let shard = store.backend().clone();
        drop(store);
        let mut reopened = ShardLogStore::<KvConfig>::open_with_cache(shard.clone(), 0)
            .await
            .unwrap();
        assert_eq!(
            reopened.try_get_log_entries(0..u64::MAX).await.unwrap(),
            expect(1001, 1501)
        );
        let state = reopened.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<KvConfig>(1, 1, 1000))
        );
        assert_eq!(state.last_log_id, Some(log_id::<KvConfig>(2, 1, 1500)));
        assert_eq!(
            reopened.try_get_log_entries(1099..1102).await.unwrap()[2].index(),
            1101
        );
        shard.close().await.unwrap();
    });
}

/// Through the client (openraft on tokio): entries read back after eviction are those
/// written, a sequential scan continues on one read stream, and a purge still removes the
/// segments that stream was reading (the store drops its kept stream, and with it the read
/// pin, before it truncates).
#[test]
fn through_the_client_reads_match_and_a_kept_stream_does_not_block_a_purge() {
    use openraft_rt_tokio::TokioRuntime;
    use shardwal::{Lsn, Wal};
    use shardwal_raft::types::KvTokioConfig;
    use shardwal_raft::ClientShard;

    fn put(term: u64, index: u64) -> EntryOf<KvTokioConfig> {
        let data = Put {
            key: index.to_be_bytes().to_vec(),
            value: vec![(index as u8) ^ (term as u8); 1024],
        };
        EntryOf::<KvTokioConfig>::new_normal(log_id::<KvTokioConfig>(term, 1, index), data)
    }

    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::start(config(dir.path())).unwrap();
    let client = wal.client();
    TokioRuntime::new(2).block_on(async {
        let backend = ClientShard {
            client: client.clone(),
            shard: ShardId(0),
        };
        let mut store = ShardLogStore::<KvTokioConfig, _>::open_with_cache(backend, 0)
            .await
            .unwrap();
        let written: Vec<_> = (1..=2000).map(|i| put(1, i)).collect();
        for chunk in written.chunks(100) {
            let (tx, rx) = <TokioRuntime as AsyncRuntime>::Oneshot::channel();
            store
                .append(chunk.to_vec(), IOFlushed::signal(tx))
                .await
                .unwrap();
            rx.await.unwrap().unwrap();
        }
        let opened = store.read_path_stats().readers_opened;
        let mut got = Vec::new();
        for lo in (1..=2000).step_by(25) {
            got.extend(store.try_get_log_entries(lo..lo + 25).await.unwrap());
        }
        assert_eq!(got, written);
        let stats = store.read_path_stats();
        assert_eq!(stats.entries_from_shard, 2000, "{stats:?}");
        assert!(stats.readers_opened - opened <= 2, "{stats:?}");
        // Leave the kept stream (and its read pin) at the start of the log; purging most
        // of the log must still remove whole segments.
        assert_eq!(
            store.try_get_log_entries(1..26).await.unwrap(),
            written[..25]
        );
        store
            .purge(log_id::<KvTokioConfig>(1, 1, 1900))
            .await
            .unwrap();
        // Entry i is at LSN i here (nothing else was written). Entry 1000 lies beyond the
        // kept stream's first batch and in a segment wholly below the purge point.
        let mut old = client.read(ShardId(0), Lsn(1000));
        let truncated = futures::StreamExt::next(&mut old).await;
        assert!(
            matches!(truncated, Some(Err(shardwal::Error::Truncated { .. }))),
            "segments below the purge were removed: {:?}",
            truncated.map(|r| r.map(|batch| batch.len()))
        );
        assert_eq!(
            store.try_get_log_entries(0..u64::MAX).await.unwrap(),
            written[1900..]
        );
    });
    wal.close().unwrap();
}

#[test]
fn after_a_reopen_a_miss_into_an_older_segment_begins_near_its_entry() {
    const ENTRIES: u64 = 12_000; // over 12 MB: an 8 MiB first segment, then the next
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB flush buffers make the first segment two buffers, 8 MiB (with the default 1 MiB
    // it would be 2 MiB, and entry 5000 would lie in a later segment than the damage).
    let cfg = WalConfig::builder(dir.path())
        .shard_count(1)
        .placement(shardwal::CpuPlacement::Unbound)
        .segment_bytes(64 << 20)
        .flush_buffer_bytes(4 << 20)
        .build()
        .unwrap();
    GlommioRuntime::new(1).block_on(async {
        let mut store = open(&cfg, 0).await;
        for lo in (1..=ENTRIES).step_by(100) {
            append(&mut store, (lo..lo + 100).map(|i| put(1, i)).collect()).await;
        }
        store.backend().close().await.unwrap();
    });
    let segments =
        shardwal::format::list_segments(&shardwal::format::shard_dir(dir.path(), ShardId(0)))
            .unwrap();
    assert!(segments.len() >= 2, "a sealed segment exists: {segments:?}");
    let first_segment = segments[0].1.clone();

    GlommioRuntime::new(1).block_on(async {
        // Opening replays the whole shard: every older segment is walked from its start.
        let mut store = open(&cfg, 0).await;
        // Damage 200 KiB into the first segment: only a read that walks that segment from
        // its start meets it.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&first_segment)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0xA5; 64], 200 << 10).unwrap();
        drop(f);
        // Entry 5000 is about 5 MB into the first segment: the read begins at a batch the
        // replay noted, past the damage.
        let got = store.try_get_log_entries(5000..5010).await.unwrap();
        assert_eq!(got, (5000..5010).map(|i| put(1, i)).collect::<Vec<_>>());
        // A read from the start walks into the damage and says so.
        assert!(store.try_get_log_entries(1..500).await.is_err());
        store.backend().close().await.unwrap();
    });
}
