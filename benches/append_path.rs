//! CPU cost of the append path, without the disk in the way: one shard, one task appending
//! 256-byte records in `NoSyncBenchmarkOnly` mode (writes happen, fdatasync does not), with
//! a commit every 256 appends so the ring keeps turning. Prints ns per append and the peak
//! RSS. `cargo bench --bench append_path`. For durable throughput use `shardwal bench`.

use std::time::Instant;

use shardwal::{CpuPlacement, Durability, Shard, ShardId, WalConfig};
use shardwal_cli::stats::{median, peak_rss_mib};

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = WalConfig::builder(dir.path())
        .shard_count(1)
        .placement(CpuPlacement::Unbound)
        .durability(Durability::NoSyncBenchmarkOnly)
        .build()
        .expect("config");
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(config.io_memory_bytes())
        .make()
        .expect("executor");
    ex.run(async move {
        let shard = Shard::open(&config, ShardId(0)).await.expect("open");
        let payload = [7u8; 256];
        let mut rounds = Vec::new();
        for _ in 0..5 {
            const N: u64 = 200_000;
            let start = Instant::now();
            let mut append_ns = 0u128;
            for i in 0..N {
                let t = Instant::now();
                let lsn = shard.append(&payload).await.expect("append");
                append_ns += t.elapsed().as_nanos();
                if i % 256 == 255 {
                    shard.commit(lsn).await.expect("commit");
                }
            }
            let total = start.elapsed();
            rounds.push((append_ns as f64 / N as f64, N as f64 / total.as_secs_f64()));
        }
        let ns = median(rounds.iter().map(|r| r.0).collect());
        let rate = median(rounds.iter().map(|r| r.1).collect());
        println!(
            "append_path: median of 5 rounds: {ns:.0} ns per append (copy + checksum), {rate:.0} appends/s with a commit every 256; ring-full waits {}; peak RSS {:.1} MiB",
            shard.metrics().ring_full_waits,
            peak_rss_mib()
        );
        shard.close().await.expect("close");
    });
}
