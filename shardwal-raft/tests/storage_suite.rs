//! openraft's storage suite (`openraft::testing::log::Suite::test_all`, 45 cases in
//! 0.10.0-alpha.37) against [`ShardLogStore`] on a real shard: natively under the glommio
//! runtime, and through the `Send` client under openraft's tokio runtime; each with the
//! default entry cache, and with none (every durable entry is then read back from the
//! shard).

mod common;
use common::config;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use openraft_rt::AsyncRuntime;
use openraft_rt_tokio::TokioRuntime;
use shardwal::{Shard, ShardId, Wal};
use shardwal_raft::kv::KvStateMachine;
use shardwal_raft::types::{KvConfig, KvTokioConfig};
use shardwal_raft::{ClientShard, GlommioRuntime, ShardLogStore, DEFAULT_CACHE_BYTES};
use tempfile::TempDir;

/// One shard of 1 MiB segments in `dir`.
/// A fresh log directory per case, its shard opened on the suite's own executor; the
/// store's entry cache budget in bytes.
struct ShardStoreBuilder(usize);

type NativeStore = ShardLogStore<KvConfig>;

thread_local! {
    /// The shards of the native cases still running, by case (the guard must be `Send`,
    /// a shard is not: it stays on its executor's thread).
    static SHARDS: std::cell::RefCell<std::collections::HashMap<u64, Shard>> = Default::default();
    static NEXT_CASE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What a native case keeps alive: its shard (in `SHARDS`) and directory. When the case
/// ends, the shard is closed before the directory goes (on a task of the suite's
/// executor), so that none of the shard's background work (segment preparation) runs in a
/// removed directory.
struct NativeGuard {
    case: u64,
    dir: std::sync::Mutex<Option<TempDir>>,
}

impl Drop for NativeGuard {
    fn drop(&mut self) {
        let shard = SHARDS.with(|s| s.borrow_mut().remove(&self.case));
        let dir = self.dir.lock().unwrap_or_else(|p| p.into_inner()).take();
        glommio::spawn_local(async move {
            if let Some(shard) = shard {
                let _ = shard.close().await;
            }
            drop(dir);
        })
        .detach();
    }
}

impl StoreBuilder<KvConfig, NativeStore, KvStateMachine<KvConfig>, NativeGuard>
    for ShardStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(NativeGuard, NativeStore, KvStateMachine<KvConfig>), StorageError<KvConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let shard = Shard::open(&config(dir.path()), ShardId(0))
            .await
            .expect("open shard");
        let store = ShardLogStore::open_with_cache(shard.clone(), self.0)
            .await
            .expect("open store");
        let case = NEXT_CASE.with(|n| n.replace(n.get() + 1));
        SHARDS.with(|s| s.borrow_mut().insert(case, shard));
        let guard = NativeGuard {
            case,
            dir: std::sync::Mutex::new(Some(dir)),
        };
        Ok((guard, store, KvStateMachine::default()))
    }
}

/// A fresh log started with `Wal::start` per case; the store reaches shard 0 through the
/// client. The store's entry cache budget in bytes.
struct ClientStoreBuilder(usize);

type ClientStore = ShardLogStore<KvTokioConfig, ClientShard>;

/// What a client-store case keeps alive: the running log (closed when the case ends), then
/// its directory.
struct RunningLog {
    wal: std::sync::Mutex<Option<Wal>>,
    _dir: TempDir,
}

impl Drop for RunningLog {
    fn drop(&mut self) {
        let wal = self.wal.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(wal) = wal {
            wal.close().expect("close the log");
        }
    }
}

impl StoreBuilder<KvTokioConfig, ClientStore, KvStateMachine<KvTokioConfig>, RunningLog>
    for ClientStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(RunningLog, ClientStore, KvStateMachine<KvTokioConfig>), StorageError<KvTokioConfig>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::start(config(dir.path())).expect("start the log");
        let backend = ClientShard {
            client: wal.client(),
            shard: ShardId(0),
        };
        let store = ShardLogStore::open_with_cache(backend, self.0)
            .await
            .expect("open store");
        let guard = RunningLog {
            wal: std::sync::Mutex::new(Some(wal)),
            _dir: dir,
        };
        Ok((guard, store, KvStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite_passes_under_the_glommio_runtime() {
    GlommioRuntime::new(1).block_on(async {
        Suite::test_all(ShardStoreBuilder(DEFAULT_CACHE_BYTES))
            .await
            .expect("storage suite");
    });
}

#[test]
fn openraft_storage_suite_passes_under_the_glommio_runtime_without_a_cache() {
    GlommioRuntime::new(1).block_on(async {
        Suite::test_all(ShardStoreBuilder(0))
            .await
            .expect("storage suite");
    });
}

#[test]
fn openraft_storage_suite_passes_through_the_client_under_tokio() {
    TokioRuntime::new(2).block_on(async {
        Suite::test_all(ClientStoreBuilder(DEFAULT_CACHE_BYTES))
            .await
            .expect("storage suite");
    });
}

#[test]
fn openraft_storage_suite_passes_through_the_client_under_tokio_without_a_cache() {
    TokioRuntime::new(2).block_on(async {
        Suite::test_all(ClientStoreBuilder(0))
            .await
            .expect("storage suite");
    });
}
