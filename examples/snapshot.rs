//! A consistent backup of a running log: a writer keeps appending through the client while a
//! reader thread (it could as well be another process) takes a pinned snapshot from the
//! shared header and reads every shard up to its cut.
//!
//! `cargo run --release --example snapshot [DIR]` (a temporary directory by default).

use shardwal::{CpuPlacement, HeaderView, ShardId, Wal, WalConfig};

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
    let wal = Wal::start(config)?;
    let client = wal.client();

    // The writer: 64 concurrent durable appends at a time, for a while.
    let writer = std::thread::spawn(move || {
        futures::executor::block_on(async {
            for round in 0..100u32 {
                let batch = (0..64u32).map(|i| {
                    let key = format!("key-{}", round * 64 + i);
                    let shard = client.shard_for_key(key.as_bytes());
                    client.append_durable(shard, key.into_bytes())
                });
                futures::future::try_join_all(batch).await?;
            }
            Ok::<_, shardwal::Error>(())
        })
    });

    // The backup (`Wal::start` returned, so the shards are open and the header exists): wait
    // until something is durable, then pin a cut and read up to it.
    let view = HeaderView::open(&dir)?;
    while view.cut()?.as_slice().iter().all(|lsn| lsn.get() < 1000) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let snapshot = view.snapshot()?;
    println!("pinned cut {:?} (the writer goes on)", snapshot.cut());
    for shard in 0..view.shard_count() {
        let shard = ShardId(shard);
        let mut count = 0u64;
        for record in snapshot.reader_all(shard)? {
            record?; // checksum verified
            count += 1;
        }
        println!(
            "shard {shard}: {count} records up to lsn {}",
            snapshot.cut().get(shard).unwrap()
        );
    }
    drop(snapshot); // unpin: truncation may remove those segments now

    writer.join().expect("writer thread")?;
    let final_cut = wal.close()?;
    println!("closed at cut {final_cut:?}");
    Ok(())
}
