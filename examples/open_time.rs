//! How long opening takes, and how soon the first commit is durable after it.
//!
//! `cargo run --release --example open_time [ROUNDS] [DIR]` (5 rounds, $TMPDIR or /tmp by
//! default). Each round, in a fresh directory inside DIR:
//!
//! 1. a glommio executor with the shard's `io_memory` (`executor_ms`, not part of the open),
//!    `Shard::open` on the empty directory (`open_ms`), then one 256-byte
//!    `append_durable` (`first_commit_us`), then 99 more (`next_commit_us`, the median);
//! 2. close, `Shard::open` of the same directory again (`reopen_ms`) and one more commit;
//! 3. `Wal::start` with 2 shards on another empty directory (`wal_start_ms`: two threads,
//!    their executors and both opens) and a first durable append through its `Client`
//!    (`wal_first_commit_us`).
//!
//! Prints every round and the medians. Wall-clock figures: compare them only with runs on
//! the same machine at the same load (it prints the load average).

use std::time::{Duration, Instant};

use shardwal::{CpuPlacement, Shard, ShardId, Wal, WalConfig};

#[derive(Clone, Copy, Debug, Default)]
struct Round {
    executor_ms: f64,
    open_ms: f64,
    first_commit_us: f64,
    next_commit_us: f64,
    reopen_ms: f64,
    reopen_first_commit_us: f64,
    wal_start_ms: f64,
    wal_first_commit_us: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One shard on a glommio executor of this thread: open, commits, close, reopen.
fn shard_round(dir: &std::path::Path, round: &mut Round) -> Result<(), shardwal::Error> {
    let config = WalConfig::builder(dir)
        .shard_count(1)
        .placement(CpuPlacement::Unbound)
        .build()?;
    let t = Instant::now();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(config.io_memory_bytes())
        .make()
        .expect("a glommio executor");
    round.executor_ms = ms(t.elapsed());
    let record = [0x5Au8; 256];
    let r = ex.run(async {
        let t = Instant::now();
        let shard = Shard::open(&config, ShardId(0)).await?;
        round.open_ms = ms(t.elapsed());
        let t = Instant::now();
        shard.append_durable(&record).await?;
        round.first_commit_us = us(t.elapsed());
        let mut next = Vec::with_capacity(99);
        for _ in 0..99 {
            let t = Instant::now();
            shard.append_durable(&record).await?;
            next.push(us(t.elapsed()));
        }
        round.next_commit_us = median(next);
        shard.close().await?;
        drop(shard);

        let t = Instant::now();
        let shard = Shard::open(&config, ShardId(0)).await?;
        round.reopen_ms = ms(t.elapsed());
        let t = Instant::now();
        shard.append_durable(&record).await?;
        round.reopen_first_commit_us = us(t.elapsed());
        shard.close().await?;
        Ok(())
    });
    r
}

/// `Wal::start` with two shards and a first durable append through the client.
fn wal_round(dir: &std::path::Path, round: &mut Round) -> Result<(), shardwal::Error> {
    let config = WalConfig::builder(dir)
        .shard_count(2)
        .placement(CpuPlacement::Unbound)
        .build()?;
    let t = Instant::now();
    let wal = Wal::start(config)?;
    round.wal_start_ms = ms(t.elapsed());
    let client = wal.client();
    let t = Instant::now();
    futures::executor::block_on(client.append_durable(ShardId(0), vec![0x5Au8; 256]))?;
    round.wal_first_commit_us = us(t.elapsed());
    wal.close()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    let mut all = Vec::new();
    for i in 0..rounds {
        let mut round = Round::default();
        let d = tempfile::tempdir_in(&base)?;
        shard_round(&d.path().join("shard"), &mut round)?;
        wal_round(&d.path().join("wal"), &mut round)?;
        println!("round {i}: {round:?}");
        all.push(round);
    }
    let med = |f: fn(&Round) -> f64| median(all.iter().map(f).collect());
    println!(
        "medians of {rounds}: executor_ms {:.1}, open_ms {:.1}, first_commit_us {:.0}, next_commit_us {:.0}, reopen_ms {:.1}, reopen_first_commit_us {:.0}, wal_start_ms {:.1}, wal_first_commit_us {:.0}",
        med(|r| r.executor_ms),
        med(|r| r.open_ms),
        med(|r| r.first_commit_us),
        med(|r| r.next_commit_us),
        med(|r| r.reopen_ms),
        med(|r| r.reopen_first_commit_us),
        med(|r| r.wal_start_ms),
        med(|r| r.wal_first_commit_us),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
    Ok(())
}
