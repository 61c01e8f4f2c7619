//! The `shardwal` binary: the bench runs and reports, `verify` reads a log back and fails
//! loudly on damage.

mod common;
use common::*;

use std::process::Command;

use shardwal::{Shard, ShardId};

fn shardwal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardwal"))
}

#[test]
fn bench_runs_and_reports_every_configuration() {
    let d = tempfile::tempdir().unwrap();
    let out = shardwal()
        .args([
            "bench",
            "--seconds",
            "0.3",
            "--writers",
            "1,8",
            "--unbound",
            "--dir",
        ])
        .arg(d.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "device 4K write+fdatasync",
        "shardwal 2x1 append_durable",
        "shardwal 2x8 append_durable",
        "peak RSS",
        "load average",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Each run's directory is removed; only the (empty) temp dir is left.
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bench_rejects_bad_arguments() {
    let out = shardwal()
        .args(["bench", "--writers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--writers"));
}

#[test]
fn verify_counts_records_and_reports_corruption() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for i in 1..=500 {
            s.append(&payload(0, i)).await.unwrap();
        }
        s.sync().await.unwrap();
        s.close().await.unwrap();
    });
    let out = shardwal().arg("verify").arg(d.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("shard 0: 500 records, lsn 1 ..= 500"),
        "{stdout}"
    );

    // Damage the first record's payload: the close marker vouches for it, so verify must
    // fail instead of reporting a shorter log.
    let seg = shardwal::segment::list_segments(&shardwal::segment::shard_dir(d.path(), ShardId(0)))
        .unwrap()[0]
        .1
        .clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[4096 + 24 + 24] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    let out = shardwal().arg("verify").arg(d.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corruption"), "{stderr}");
}
