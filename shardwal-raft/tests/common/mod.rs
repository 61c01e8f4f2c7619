//! Helpers shared by the `shardwal-raft` integration tests.

use shardwal::{CpuPlacement, WalConfig};

/// One unbound shard with 1 MiB segments, so that tests cross segment boundaries quickly.
pub fn config(dir: &std::path::Path) -> WalConfig {
    WalConfig::builder(dir)
        .shard_count(1)
        .placement(CpuPlacement::Unbound)
        .segment_bytes(1 << 20)
        .build()
        .expect("config")
}
