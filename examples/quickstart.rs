//! The smallest useful program: two shards, durable appends, replay after reopening.
//!
//! `cargo run --release --example quickstart [DIR]` (a temporary directory by default).

use shardwal::{CpuPlacement, Lsn, ShardId, WalConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let config = WalConfig::builder(&dir)
        .shard_count(2)
        .placement(CpuPlacement::Unbound)
        .build()?;

    // One executor per shard; the closure runs on each with its own shard.
    let handle = shardwal::spawn(config.clone(), |shard| async move {
        let mut last = Lsn::ZERO;
        for i in 0..1000u32 {
            let record = format!("shard {} record {i}", shard.id());
            // `append` returns at once; `commit` waits until the record is durable.
            last = shard.append(record.as_bytes()).await?;
            if i % 100 == 99 {
                shard.commit(last).await?;
            }
        }
        let durable = shard.sync().await?;
        Ok::<_, shardwal::Error>((shard.id(), last, durable))
    })?;
    for result in handle.join()? {
        let (id, last, durable) = result?;
        println!("shard {id}: appended up to lsn {last}, durable up to {durable}");
    }

    // The log is closed now; read it back without an executor.
    for shard in 0..config.shard_count() {
        let mut n = 0;
        for record in shardwal::LogReader::open(&dir, ShardId(shard), Lsn(1))? {
            let record = record?;
            if n == 0 {
                println!(
                    "shard {shard}: first record {} = {:?}",
                    record.lsn,
                    String::from_utf8_lossy(&record.payload)
                );
            }
            n += 1;
        }
        println!("shard {shard}: {n} records read back");
    }
    Ok(())
}
