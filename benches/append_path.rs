//! CPU cost of the append path, without the disk in the way: one shard, one task appending
//! 256-byte records in `NoSyncBenchmarkOnly` mode (writes happen, fdatasync does not), with
//! a commit every 256 appends so the ring keeps turning. Prints ns per append and the peak
//! RSS. `cargo bench --bench append_path`. For durable throughput use `shardwal bench`.

use std::time::Instant;

use shardwal::{CpuPlacement, Durability, Shard, ShardId, WalConfig};

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the zero-initialised struct we pass it.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss
    }
}

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
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ns, rate) = rounds[rounds.len() / 2];
        println!(
            "append_path: median of 5 rounds: {ns:.0} ns per append (copy + checksum), {rate:.0} appends/s with a commit every 256; ring-full waits {}; peak RSS {} KiB",
            shard.metrics().ring_full_waits,
            peak_rss_kib()
        );
        shard.close().await.expect("close");
    });
}
