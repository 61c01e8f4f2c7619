//! How long reopening a large log takes, after a clean close and after a crash.
//!
//! ```text
//! cargo run --release --example reopen_time -- fill DIR [crash]
//! cargo run --release --example reopen_time -- open DIR [crash]
//! cargo run --release --example reopen_time -- scan DIR
//! cargo run --release --example reopen_time -- segment DIR
//! ```
//! * `fill` writes `REOPEN_TIME_BYTES` bytes (default 4 GiB) of 256 KiB records into a
//!   fresh 2-shard log in `DIR` (default configuration: 64 MiB segments) and closes it.
//!   With `crash`, the writing is done by a child process (this program, `fill-child`),
//!   which the parent kills with SIGKILL once every record is durable, while the child goes
//!   on appending: the log is left as a process crash leaves it, without a final marker and
//!   with writes in flight, and the next open must judge its tail.
//! * `open` times `Wal::start` (executors, recovery of every shard, buffers, the lease);
//!   then it closes the log again, or with `crash` exits
//!   without closing, so the log stays without a final marker for the next round.
//! * `scan` times finding the end of every shard alone (`LogReader::open`: the scan
//!   opening does, without executors or buffers; it modifies nothing).
//! * `segment` times reading one full sealed 64 MiB segment of shard 0 the two ways a scan
//!   can: whole (`std::fs::read` + `format::scan_segment_bytes`) and through the reader's
//!   1 MiB window (`LogReader` over exactly that segment's records, timed after it opened).
//!
//! Every line printed is `key=value` pairs. Wall-clock figures: compare them only between
//! runs on the same machine at the same load (`cat /proc/loadavg`). The program uses only
//! API that also existed before opening stopped reading sealed segments, so the same file
//! builds against both versions.

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use shardwal::{CpuPlacement, Lsn, ShardId, Wal, WalConfig};

const SHARDS: u32 = 2;
const RECORD_BYTES: usize = 256 << 10;
const DEFAULT_BYTES: u64 = 4 << 30;

fn config(dir: &str) -> WalConfig {
    WalConfig::builder(dir)
        .shard_count(SHARDS)
        .placement(CpuPlacement::Unbound)
        .build()
        .expect("config")
}

/// `REOPEN_TIME_BYTES`, or 4 GiB.
fn fill_bytes() -> u64 {
    std::env::var("REOPEN_TIME_BYTES").map_or(DEFAULT_BYTES, |s| {
        s.parse().expect("REOPEN_TIME_BYTES: a byte count")
    })
}

/// Appends `fill_bytes()` of records round robin over the shards, the last one per shard
/// durable; then, with `keep_going`, prints `durable` and appends forever.
fn write_records(wal: &Wal, keep_going: bool) -> u64 {
    let client = wal.client();
    let records = (fill_bytes() / RECORD_BYTES as u64).max(SHARDS as u64);
    let payload = bytes::Bytes::from(vec![0x5Au8; RECORD_BYTES]);
    futures::executor::block_on(async {
        for i in 0..records {
            let shard = ShardId((i % SHARDS as u64) as u32);
            if i + SHARDS as u64 >= records {
                client.append_durable(shard, payload.clone()).await
            } else {
                client.append(shard, payload.clone()).await
            }
            .expect("append");
        }
        if keep_going {
            println!("durable records={records}");
            for i in 0.. {
                let shard = ShardId((i % SHARDS as u64) as u32);
                client.append(shard, payload.clone()).await.expect("append");
            }
        }
    });
    records
}

fn fill(dir: &str) {
    let wal = Wal::start(config(dir)).expect("start");
    let records = write_records(&wal, false);
    let cut = wal.close().expect("close");
    println!("filled records={records} closed_at={cut:?}");
}

/// Runs `fill-child` and kills it with SIGKILL once it reports every record durable (and
/// 20 ms later, so that appends are in flight).
fn fill_crash(dir: &str) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .args(["fill-child", dir])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the writer");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the child's report");
    assert!(line.starts_with("durable"), "the writer said {line:?}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("wait");
    println!("filled {} killed={status}", line.trim());
}

fn open(dir: &str, crash: bool) {
    let started = Instant::now();
    let wal = Wal::start(config(dir)).expect("start");
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    println!("open_ms={open_ms:.1}");
    if crash {
        // Leave the log as a crash would: no final marker.
        std::process::exit(0);
    }
    wal.close().expect("close");
}

fn scan(dir: &str) {
    let shards = shardwal::format::shard_count(Path::new(dir)).expect("shard count");
    let started = Instant::now();
    let mut upto = Vec::new();
    for s in 0..shards {
        let reader = shardwal::LogReader::open(Path::new(dir), ShardId(s), Lsn(1)).expect("scan");
        upto.push(reader.upto());
    }
    let scan_ms = started.elapsed().as_secs_f64() * 1e3;
    println!("scan_ms={scan_ms:.1} upto={upto:?}");
}

/// The second-newest segment of shard 0 (a full, sealed one) and the base LSNs of it and
/// of the segment after it.
fn sealed_segment(dir: &str) -> (std::path::PathBuf, Lsn, Lsn) {
    let sdir = shardwal::format::shard_dir(Path::new(dir), ShardId(0));
    let segs = shardwal::format::list_segments(&sdir).expect("list");
    assert!(segs.len() >= 3, "needs a few segments");
    let base = |p: &Path| {
        let block = std::fs::read(p).expect("read")[..shardwal::format::BLOCK_BYTES].to_vec();
        shardwal::format::SegmentHeader::decode(&block)
            .expect("header")
            .base_lsn
    };
    let (path, next) = (&segs[segs.len() - 3].1, &segs[segs.len() - 2].1);
    (path.clone(), base(path), base(next))
}

fn segment(dir: &str) {
    let (path, base, next) = sealed_segment(dir);
    let started = Instant::now();
    let bytes = std::fs::read(&path).expect("read");
    let summary = shardwal::format::scan_segment_bytes(&bytes).expect("scan");
    let whole_ms = started.elapsed().as_secs_f64() * 1e3;
    let reader = shardwal::LogReader::open(Path::new(dir), ShardId(0), base).expect("reader");
    let started = Instant::now();
    let mut walked = 0u64;
    for r in reader {
        if r.expect("record").lsn >= next {
            break;
        }
        walked += 1;
    }
    let window_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "segment={} bytes={} records={} whole_ms={whole_ms:.1} window_ms={window_ms:.1}",
        path.display(),
        bytes.len(),
        summary.record_count,
    );
    assert_eq!(walked, summary.record_count);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["fill", dir] => fill(dir),
        ["fill", dir, "crash"] => fill_crash(dir),
        ["fill-child", dir] => {
            let wal = Wal::start(config(dir)).expect("start");
            write_records(&wal, true);
        }
        ["open", dir] => open(dir, false),
        ["open", dir, "crash"] => open(dir, true),
        ["scan", dir] => scan(dir),
        ["segment", dir] => segment(dir),
        _ => {
            eprintln!(
                "usage: reopen_time fill DIR [crash] | open DIR [crash] | scan DIR | segment DIR"
            );
            std::process::exit(2);
        }
    }
}
