//! The `shardwal` binary: the bench runs and reports, `verify` reads a log back and fails
//! loudly on damage.

// The library's test helpers (small geometries, an executor per test, payloads).
#[path = "../../tests/common/mod.rs"]
mod common;
use common::*;

use std::process::Command;

use shardwal::{HeaderView, Shard, ShardId};

fn shardwal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardwal"))
}

/// Runs `shardwal bench ARGS --dir DIR`, asserts that it succeeded and returns its stdout.
fn bench_ok(args: &[&str], dir: &std::path::Path) -> String {
    let out = shardwal()
        .arg("bench")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_runs_and_reports_every_configuration() {
    let d = tempfile::tempdir().unwrap();
    let stdout = bench_ok(
        &["--seconds", "0.3", "--writers", "1,8", "--unbound"],
        d.path(),
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
    for (args, needle) in [
        (&["bench", "--writers", "0"][..], "--writers"),
        (&["bench", "--commit", "sometimes"][..], "commit pattern"),
        (&["bench", "--commit", "sync-every:0"][..], "above 0"),
        (&["bench", "--record-bytes", "0"][..], "at least 1 byte"),
        (&["bench", "--record-bytes", "90..10"][..], "range"),
        (&["bench", "--records", "0"][..], "above 0"),
    ] {
        let out = shardwal().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_via_shard_and_client_reports_both_and_their_ratio() {
    let d = tempfile::tempdir().unwrap();
    let stdout = bench_ok(
        &[
            "--seconds",
            "0.3",
            "--writers",
            "4",
            "--via",
            "shard,client",
            "--batch",
            "1,8",
            "--no-baseline",
            "--unbound",
        ],
        d.path(),
    );
    for needle in [
        "shardwal 2x4 append_durable ",
        "shardwal 2x4 append_durable via client",
        "shardwal 2x4 append_durable batch 8 ",
        "shardwal 2x4 append_durable batch 8 via client",
        "client/in-shard throughput ratio",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // The client run is refused where it cannot measure what was asked.
    let out = shardwal()
        .args(["bench", "--via", "client", "--commit", "sync-every:4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--via client"));
    let out = shardwal()
        .args(["bench", "--batch", "4", "--commit", "sync-every:4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch"));
}

#[test]
fn bench_json_sync_every_range_and_plot() {
    let d = tempfile::tempdir().unwrap();
    let plot = d.path().join("bench.svg");
    let stdout = bench_ok(
        &[
            "--json",
            "--unbound",
            "--no-baseline",
            "--writers",
            "2",
            "--records",
            "400",
            "--commit",
            "sync-every:10",
            "--record-bytes",
            "10..3000",
            "--plot",
            plot.to_str().unwrap(),
        ],
        d.path(),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["label"], "shardwal 2x2 sync every 10");
    assert!(run["appends_per_sec"].as_f64().unwrap() > 0.0);
    // 4 writers x 100 records, each synced 10 at a time (a sync may also cover the other
    // writers' pending records, so a fdatasync covers 1 record or more).
    assert!(run["records_per_fdatasync"].as_f64().unwrap() >= 1.0);
    for p in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(run["latency_us"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(report["records_per_run"], 400);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("shardwal 2x2 sync every 10"));
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
    let seg = shardwal::format::list_segments(&shardwal::format::shard_dir(d.path(), ShardId(0)))
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

/// Damage in a sealed segment (the oldest of many, vouched for by later markers): opening
/// does not read it and succeeds, but `verify` reads every record and reports it.
#[test]
fn verify_reports_corruption_in_a_sealed_segment_that_opening_does_not_read() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        fill_segments(&s, 2000).await;
        s.close().await.unwrap();
    });
    let segs = shardwal::format::list_segments(&shardwal::format::shard_dir(d.path(), ShardId(0)))
        .unwrap();
    assert!(segs.len() >= 5, "the log spans many segments");
    let mut bytes = std::fs::read(&segs[0].1).unwrap();
    // The first write: the marker (24 bytes) at 4096, then record 1's header and payload.
    bytes[4096 + 24 + 24 + 5] ^= 0xFF;
    std::fs::write(&segs[0].1, &bytes).unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        assert_eq!(s.durable_lsn(), shardwal::Lsn(2000));
        s.close().await.unwrap();
    });
    let out = shardwal().arg("verify").arg(d.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corruption"), "{stderr}");
    assert!(stderr.contains(&*segs[0].1.to_string_lossy()), "{stderr}");
}

#[test]
fn inspect_shows_owner_positions_pins_and_segments_while_a_writer_runs() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let dir = d.path().to_path_buf();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        fill_segments(&s, 600).await;
        let snap = HeaderView::open(&dir).unwrap().snapshot().unwrap();
        let out = shardwal()
            .args(["inspect", "--json"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["owner"]["pid"], std::process::id());
        assert_eq!(v["owner"]["alive"], true);
        assert_eq!(v["cut"][0], s.durable_lsn().0);
        assert_eq!(v["shards"][0]["state"], "open");
        assert_eq!(v["pins"][0]["pid"], std::process::id());
        let segments = v["segments"].as_array().unwrap();
        assert!(segments.len() >= 2, "{segments:?}");
        assert_eq!(segments[0]["base_lsn"], 1);
        assert_eq!(
            segments[1]["base_lsn"].as_u64().unwrap(),
            segments[0]["last_lsn"].as_u64().unwrap() + 1
        );

        let text = shardwal().arg("inspect").arg(&dir).output().unwrap();
        let text = String::from_utf8(text.stdout).unwrap();
        for needle in [
            format!("owner: pid {} (running)", std::process::id()),
            format!("cut: [{}]", s.durable_lsn()),
            "pin slot 0".to_string(),
            "shard 0 generation".to_string(),
        ] {
            assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
        }
        drop(snap);
        s.close().await.unwrap();
    });
    // A directory without a header is reported, not an error.
    let empty = tempfile::tempdir().unwrap();
    let out = shardwal()
        .arg("inspect")
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("header: unusable"));
}

/// `--asleep-ceiling` adds the bare loop waiting asleep beside the usual (polling) one, and
/// `x ceiling` stays against the polling one.
#[test]
fn the_asleep_ceiling_is_shown_but_not_compared_against() {
    let d = tempfile::tempdir().unwrap();
    let stdout = bench_ok(
        &[
            "--seconds",
            "0.3",
            "--shards",
            "1",
            "--writers",
            "2",
            "--unbound",
            "--asleep-ceiling",
            "--poll-write-completions",
            "--json",
        ],
        d.path(),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    let rate = |label: &str| {
        let r = runs.iter().find(|r| r["label"] == label);
        let r = r.unwrap_or_else(|| panic!("no run {label:?} in {runs:?}"));
        r["appends_per_sec"].as_f64().unwrap()
    };
    let polling = rate("ceiling 1x2 bare group commit");
    assert!(rate("ceiling 1x2 bare group commit asleep") > 0.0);
    let shard = runs
        .iter()
        .find(|r| r["label"] == "shardwal 1x2 append_durable polled")
        .unwrap();
    let x = shard["x_ceiling"].as_f64().unwrap();
    let expected = shard["appends_per_sec"].as_f64().unwrap() / polling;
    assert!(
        (x - expected).abs() < 1e-9,
        "x_ceiling {x}, expected {expected}"
    );
}
