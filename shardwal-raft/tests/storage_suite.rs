//! openraft's storage suite (`openraft::testing::log::Suite::test_all`, 45 cases in
//! 0.10.0-alpha.37) against [`ShardLogStore`] on a real shard: natively under the glommio
//! runtime, and through the `Send` client under openraft's tokio runtime.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use openraft_rt::AsyncRuntime;
use openraft_rt_tokio::TokioRuntime;
use shardwal::{CpuPlacement, Shard, ShardId, Wal, WalConfig};
use shardwal_raft::kv::KvStateMachine;
use shardwal_raft::types::{KvConfig, KvTokioConfig};
use shardwal_raft::{ClientShard, GlommioRuntime, ShardLogStore};
use tempfile::TempDir;

/// One shard of 1 MiB segments in `dir`.
fn config(dir: &std::path::Path) -> WalConfig {
    WalConfig::builder(dir)
        .shard_count(1)
        .placement(CpuPlacement::Unbound)
        .segment_bytes(1 << 20)
        .build()
        .expect("config")
}

/// A fresh log directory per case, its shard opened on the suite's own executor.
struct ShardStoreBuilder;

type NativeStore = ShardLogStore<KvConfig>;

impl StoreBuilder<KvConfig, NativeStore, KvStateMachine<KvConfig>, TempDir> for ShardStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, NativeStore, KvStateMachine<KvConfig>), StorageError<KvConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let shard = Shard::open(&config(dir.path()), ShardId(0))
            .await
            .expect("open shard");
        let store = ShardLogStore::open(shard).await.expect("open store");
        Ok((dir, store, KvStateMachine::default()))
    }
}

/// A fresh log started with `Wal::start` per case; the store reaches shard 0 through the
/// client.
struct ClientStoreBuilder;

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
        let store = ShardLogStore::open(backend).await.expect("open store");
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
        Suite::test_all(ShardStoreBuilder)
            .await
            .expect("storage suite");
    });
}

#[test]
fn openraft_storage_suite_passes_through_the_client_under_tokio() {
    TokioRuntime::new(2).block_on(async {
        Suite::test_all(ClientStoreBuilder)
            .await
            .expect("storage suite");
    });
}
