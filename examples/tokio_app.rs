//! A tokio application writing to shardwal: many tasks append durable records through one
//! `Send + Sync` [`Client`](shardwal::Client), then the log is closed.
//!
//! ```text
//! cargo run --release --example tokio_app [DIR] [TASKS]
//!     DIR    log directory (default: a temporary directory, removed at exit)
//!     TASKS  number of tokio tasks (default 64), each writing 100 orders
//! ```
//! The shards run on glommio executors of their own (one thread per shard); the tokio
//! runtime only sends requests and awaits their futures.

use std::time::Instant;

use shardwal::{CpuPlacement, Cut, Wal, WalConfig};

const ORDERS_PER_TASK: u64 = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tmp = tempfile::tempdir()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .map_or(tmp.path().into(), std::path::PathBuf::from);
    let tasks: u64 = args.get(1).map_or(Ok(64), |t| t.parse())?;

    // One shard per CPU (the default). `Unbound` lets the shard threads share the CPUs with
    // tokio's workers; on a machine of its own, keep the default (one pinned core per shard).
    let config = WalConfig::builder(&dir)
        .placement(CpuPlacement::Unbound)
        .build()?;
    // Starts one executor per shard; each recovers its part of the log first.
    let wal = Wal::start(config)?;
    let client = wal.client();

    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let client = client.clone(); // cheap: one atomic increment
            tokio::spawn(async move {
                for i in 0..ORDERS_PER_TASK {
                    let order = task * ORDERS_PER_TASK + i;
                    let customer = format!("customer-{}", order % 1000);
                    // Every record of one customer goes to one shard, in order.
                    let shard = client.shard_for_key(customer.as_bytes());
                    let record = format!("order {order} for {customer}");
                    // Resolves once the record is durable; concurrent appends share one
                    // write and one fdatasync (group commit).
                    client.append_durable(shard, record).await?;
                }
                Ok::<_, shardwal::Error>(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    let elapsed = started.elapsed();
    let records = tasks * ORDERS_PER_TASK;
    println!(
        "{records} durable records from {tasks} tasks on {} shards in {elapsed:.2?} ({:.0}/s)",
        client.shard_count(),
        records as f64 / elapsed.as_secs_f64()
    );
    println!("durable cut: {:?}", lsns(&client.durable_cut()));

    // From async code, close through the client (`Wal::close` would block this thread), then
    // drop the `Wal`. Close waits for every accepted request and returns the final cut.
    let cut = client.close().await?;
    drop(wal);
    println!("closed; final cut {:?}", lsns(&cut));
    Ok(())
}

/// A cut as plain numbers, one per shard.
fn lsns(cut: &Cut) -> Vec<u64> {
    cut.as_slice().iter().map(|l| l.get()).collect()
}
