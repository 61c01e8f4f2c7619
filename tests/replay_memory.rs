//! Replay memory does not depend on the segment size: replaying a 1 GiB log of 64 MiB
//! segments allocates at most 16 MiB more, at its peak, than replaying an empty log. Both
//! replays are measured: the live reader of an open shard, and [`LogReader::open`] on the
//! closed directory. Set `SHARDWAL_REPLAY_MIB` to replay a smaller log (the bound is the
//! same).

#[path = "common/peak_alloc.rs"]
mod peak_alloc;

mod common;
use common::*;

use peak_alloc::peak_above_start;
use shardwal::{LogReader, Lsn, Shard, ShardId, WalConfig};

const RECORD_BYTES: usize = 512 << 10;
const BOUND_BYTES: usize = 16 << 20;

/// Replays every record of `reader`, checking each payload; returns (records, bytes).
fn replay(reader: LogReader) -> (u64, u64) {
    let (mut n, mut bytes) = (0u64, 0u64);
    for r in reader {
        let r = r.unwrap();
        assert_eq!(r.lsn, Lsn(n + 1));
        assert_eq!(r.payload.len(), RECORD_BYTES);
        assert_eq!(r.payload[0], (r.lsn.0 % 251) as u8);
        n += 1;
        bytes += r.payload.len() as u64;
    }
    (n, bytes)
}

fn config(dir: &std::path::Path) -> WalConfig {
    WalConfig::builder(dir)
        .placement(shardwal::CpuPlacement::Unbound)
        .segment_bytes(64 << 20)
        .build()
        .unwrap()
}

#[test]
fn replaying_a_gib_of_64_mib_segments_stays_within_16_mib_of_an_empty_replay() {
    let mib: u64 = std::env::var("SHARDWAL_REPLAY_MIB")
        .map(|s| s.parse().expect("SHARDWAL_REPLAY_MIB"))
        .unwrap_or(1024);
    let records = mib * (1 << 20) / RECORD_BYTES as u64;

    // An empty log: the baseline.
    let empty = tempfile::tempdir().unwrap();
    let cfg = config(empty.path());
    run(&cfg, || async {
        Shard::open(&cfg, ShardId(0))
            .await
            .unwrap()
            .close()
            .await
            .unwrap()
    });
    let (_, empty_open) =
        peak_above_start(|| replay(LogReader::open(empty.path(), ShardId(0), Lsn(1)).unwrap()));

    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let (live, empty_live) = run(&cfg, || async {
        let shard = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let (_, empty_live) = peak_above_start(|| replay(shard.reader(Lsn(1)).unwrap()));
        let mut payload = vec![0u8; RECORD_BYTES];
        for i in 1..=records {
            payload.fill((i % 251) as u8);
            shard.append(&payload).await.unwrap();
        }
        shard.sync().await.unwrap();
        let live = peak_above_start(|| replay(shard.reader(Lsn(1)).unwrap()));
        shard.close().await.unwrap();
        (live, empty_live)
    });
    let segments = seg_files(d.path(), 0).len();
    assert!(segments as u64 >= mib / 64, "{segments} segments");
    let ((n, bytes), live_peak) = live;
    assert_eq!(n, records);
    assert_eq!(bytes, records * RECORD_BYTES as u64);
    let ((n, _), open_peak) =
        peak_above_start(|| replay(LogReader::open(d.path(), ShardId(0), Lsn(1)).unwrap()));
    assert_eq!(n, records);
    eprintln!(
        "replay of {mib} MiB in {segments} segments of 64 MiB: peak allocation above start: live reader {} KiB (empty {} KiB), LogReader::open {} KiB (empty {} KiB)",
        live_peak >> 10, empty_live >> 10, open_peak >> 10, empty_open >> 10
    );
    assert!(
        live_peak <= empty_live + BOUND_BYTES,
        "live reader: {live_peak} bytes"
    );
    assert!(
        open_peak <= empty_open + BOUND_BYTES,
        "LogReader::open: {open_peak} bytes"
    );
}
