//! Durable batches through the `Client` (from tokio tasks) against the same batches
//! appended inside the shard's executor: records per second of each.
//!
//! ```text
//! cargo run --release --example batch_throughput -- DIR MODE BATCH TASKS SECONDS
//! ```
//! MODE is `client` or `shard`; each task appends BATCH records of 128 bytes and waits for
//! them to be durable, over and over, for SECONDS. One shard. Prints one line:
//! `mode=... batch=... tasks=... records_per_s=...`. Run the modes interleaved to compare.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardwal::{CpuPlacement, ShardId, Wal, WalConfig};

const RECORD_BYTES: usize = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: batch_throughput DIR client|shard BATCH TASKS SECONDS".into());
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let (mode, batch, tasks) = (args[2].as_str(), args[3].parse()?, args[4].parse()?);
    let run_for = Duration::from_secs_f64(args[5].parse()?);
    let _ = std::fs::remove_dir_all(&dir);
    let config = WalConfig::builder(&dir)
        .shard_count(1)
        .placement(CpuPlacement::Unbound)
        .build()?;
    let records = match mode {
        "client" => via_client(config, batch, tasks, run_for)?,
        "shard" => in_shard(config, batch, tasks, run_for)?,
        other => return Err(format!("unknown mode {other}").into()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "mode={mode} batch={batch} tasks={tasks} records_per_s={:.0}",
        records as f64 / run_for.as_secs_f64()
    );
    Ok(())
}

fn via_client(
    config: WalConfig,
    batch: usize,
    tasks: usize,
    run_for: Duration,
) -> Result<u64, Box<dyn std::error::Error>> {
    let wal = Wal::start(config)?;
    let client = wal.client();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let records: Vec<Bytes> = vec![Bytes::from(vec![7u8; RECORD_BYTES]); batch];
        let workers: Vec<_> = (0..tasks)
            .map(|_| {
                let (c, done, count, records) =
                    (client.clone(), done.clone(), count.clone(), records.clone());
                tokio::spawn(async move {
                    while !done.load(Ordering::Relaxed) {
                        c.append_batch_durable(ShardId(0), records.clone())
                            .await
                            .unwrap();
                        count.fetch_add(records.len() as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(run_for).await;
        done.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
    });
    wal.close()?;
    Ok(count.load(Ordering::Relaxed))
}

fn in_shard(
    config: WalConfig,
    batch: usize,
    tasks: usize,
    run_for: Duration,
) -> Result<u64, Box<dyn std::error::Error>> {
    let handle = shardwal::spawn(config, move |shard| async move {
        let start = Instant::now();
        let workers: Vec<_> = (0..tasks)
            .map(|_| {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let records = vec![vec![7u8; RECORD_BYTES]; batch];
                    let mut n = 0u64;
                    while start.elapsed() < run_for {
                        let lsns = shard.append_batch(&records).await?;
                        shard.commit(*lsns.end()).await?;
                        n += batch as u64;
                    }
                    Ok::<u64, shardwal::Error>(n)
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            total += w.await?;
        }
        Ok::<u64, shardwal::Error>(total)
    })?;
    let per_shard = handle
        .join()?
        .into_iter()
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(per_shard.iter().sum())
}
