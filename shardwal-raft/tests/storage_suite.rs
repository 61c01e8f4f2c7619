//! openraft's storage suite (`openraft::testing::log::Suite::test_all`, 45 cases in
//! 0.10.0-alpha.37) against [`ShardLogStore`] on a real shard, under the glommio runtime.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use openraft_rt::AsyncRuntime;
use shardwal::{CpuPlacement, Shard, ShardId, WalConfig};
use shardwal_raft::kv::KvStateMachine;
use shardwal_raft::types::KvConfig;
use shardwal_raft::{GlommioRuntime, ShardLogStore};
use tempfile::TempDir;

/// A fresh log directory with one shard of 1 MiB segments per case.
struct ShardStoreBuilder;

impl StoreBuilder<KvConfig, ShardLogStore<KvConfig>, KvStateMachine, TempDir>
    for ShardStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(TempDir, ShardLogStore<KvConfig>, KvStateMachine), StorageError<KvConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = WalConfig::builder(dir.path())
            .shard_count(1)
            .placement(CpuPlacement::Unbound)
            .segment_bytes(1 << 20)
            .build()
            .expect("config");
        let shard = Shard::open(&config, ShardId(0)).await.expect("open shard");
        let store = ShardLogStore::open(shard).expect("open store");
        Ok((dir, store, KvStateMachine::default()))
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
