//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;

use shardwal::{CpuPlacement, WalConfig, WalConfigBuilder};

/// A small geometry so that tests rotate segments and fill buffers quickly.
pub fn small(dir: &std::path::Path, shards: u32) -> WalConfigBuilder {
    WalConfig::builder(dir)
        .shard_count(shards)
        .placement(CpuPlacement::Unbound)
        .flush_buffer_bytes(64 << 10)
        .flush_buffer_count(4)
        .segment_bytes(256 << 10)
        .max_record_bytes(16 << 10)
}

/// Runs `f` on a fresh glommio executor on this thread.
pub fn run<F, Fut, T>(config: &WalConfig, f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(config.io_memory_bytes())
        .make()
        .expect("glommio executor");
    ex.run(f())
}

/// A payload that encodes its shard and sequence number, of a length that varies.
pub fn payload(shard: u32, seq: u64) -> Vec<u8> {
    let len = 1 + ((seq * 7919 + shard as u64 * 31) % 700) as usize;
    let mut v = Vec::with_capacity(len);
    let tag = format!("s{shard}-n{seq}:");
    v.extend(tag.bytes().cycle().take(len));
    v
}
