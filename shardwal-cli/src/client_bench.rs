//! Durable appends through the `Send` client from a tokio runtime, beside the same number of
//! writers running inside the shards, in one run with interleaved rounds.
//!
//! `cargo run --release --example client_bench -- [SECONDS] [ROUNDS] [TASKS,...]`
//! (defaults: 3 s, 3 rounds, tasks 1,64,1024). Tasks are spread over the shards round robin
//! (task `t` writes to shard `t % shards`), for the client and in-shard runs alike. Prints
//! appends/s, p50/p99 commit latency, and the client/in-shard ratio per task count, with the
//! load average.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardwal::{Shard, ShardId, Wal, WalConfig};

const SHARDS: u32 = 2;
const RECORD_BYTES: usize = 256;

struct Run {
    appends: u64,
    latency_ns: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("bounds")
}

fn config(dir: &std::path::Path) -> WalConfig {
    WalConfig::builder(dir)
        .shard_count(SHARDS)
        .build()
        .expect("config")
}

/// `tasks` tokio tasks, each looping `append_durable` through the client.
fn client_run(dir: &std::path::Path, tasks: u32, seconds: f64) -> Run {
    let wal = Wal::start(config(dir)).expect("start");
    let client = wal.client();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio");
    let total = Arc::new(Mutex::new(Run {
        appends: 0,
        latency_ns: histogram(),
    }));
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (client, total) = (client.clone(), total.clone());
                tokio::spawn(async move {
                    let shard = ShardId(t % SHARDS);
                    let payload = bytes::Bytes::from(vec![t as u8; RECORD_BYTES]);
                    // Raw samples: a histogram per task (1024 of them) would thrash the
                    // cache and tax the client run alone.
                    let mut samples = Vec::with_capacity(4096);
                    loop {
                        let start = Instant::now();
                        if start >= deadline {
                            break;
                        }
                        client
                            .append_durable(shard, payload.clone())
                            .await
                            .expect("append");
                        samples.push(start.elapsed().as_nanos() as u64);
                    }
                    let mut total = total.lock().unwrap();
                    total.appends += samples.len() as u64;
                    for s in samples {
                        total.latency_ns.saturating_record(s);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
    });
    wal.close().expect("close");
    Arc::try_unwrap(total).ok().unwrap().into_inner().unwrap()
}

/// The same number of writers, as tasks inside the shards.
fn in_shard_run(dir: &std::path::Path, tasks: u32, seconds: f64) -> Run {
    let barrier = Arc::new(std::sync::Barrier::new(SHARDS as usize + 1));
    let b = barrier.clone();
    let handle = shardwal::spawn(config(dir), move |shard: Shard| {
        let b = b.clone();
        async move {
            b.wait();
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            let mine = (0..tasks).filter(|t| t % SHARDS == shard.id().0).count();
            let samples = Rc::new(RefCell::new(Vec::with_capacity(1 << 20)));
            let writers: Vec<_> = (0..mine)
                .map(|w| {
                    let (shard, samples) = (shard.clone(), samples.clone());
                    glommio::spawn_local(async move {
                        let payload = vec![w as u8; RECORD_BYTES];
                        loop {
                            let start = Instant::now();
                            if start >= deadline {
                                break;
                            }
                            shard.append_durable(&payload).await.expect("append");
                            samples.borrow_mut().push(start.elapsed().as_nanos() as u64);
                        }
                    })
                })
                .collect();
            for w in writers {
                w.await;
            }
            let mut run = Run {
                appends: 0,
                latency_ns: histogram(),
            };
            for s in samples.borrow().iter() {
                run.appends += 1;
                run.latency_ns.saturating_record(*s);
            }
            run
        }
    })
    .expect("spawn");
    barrier.wait();
    let mut total = Run {
        appends: 0,
        latency_ns: histogram(),
    };
    for r in handle.join().expect("join") {
        total.appends += r.appends;
        total.latency_ns.add(&r.latency_ns).unwrap();
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().map_or(3.0, |s| s.parse().expect("SECONDS"));
    let rounds: usize = args.get(1).map_or(3, |s| s.parse().expect("ROUNDS"));
    let tasks: Vec<u32> = args.get(2).map_or(vec![1, 64, 1024], |s| {
        s.split(',').map(|t| t.parse().expect("TASKS")).collect()
    });
    println!(
        "client_bench: {SHARDS} shards, {RECORD_BYTES}-byte durable appends, {seconds} s per run, {rounds} rounds, load average {}",
        load_average()
    );
    let base = tempfile::tempdir().expect("temp dir");
    // (task count, through the client?, per round: (appends/s, p50 us, p99 us))
    type Series = (u32, bool, Vec<(f64, f64, f64)>);
    let mut results: Vec<Series> = Vec::new();
    for &t in &tasks {
        results.push((t, true, Vec::new()));
        results.push((t, false, Vec::new()));
    }
    let mut n = 0;
    for round in 0..rounds {
        for entry in results.iter_mut() {
            n += 1;
            let dir = base.path().join(format!("run-{n}"));
            let run = if entry.1 {
                client_run(&dir, entry.0, seconds)
            } else {
                in_shard_run(&dir, entry.0, seconds)
            };
            std::fs::remove_dir_all(&dir).expect("cleanup");
            let rate = run.appends as f64 / seconds;
            let p50 = run.latency_ns.value_at_quantile(0.5) as f64 / 1e3;
            let p99 = run.latency_ns.value_at_quantile(0.99) as f64 / 1e3;
            eprintln!(
                "round {}: {:>5} tasks {:<9} {:>10.0}/s p50 {:>7.1} us p99 {:>8.1} us",
                round + 1,
                entry.0,
                if entry.1 { "client" } else { "in-shard" },
                rate,
                p50,
                p99
            );
            entry.2.push((rate, p50, p99));
        }
    }
    println!(
        "{:>6} {:>14} {:>14} {:>8} {:>12} {:>12}",
        "tasks", "client/s", "in-shard/s", "ratio", "client p50", "client p99"
    );
    for pair in results.chunks(2) {
        let (t, _, client) = &pair[0];
        let (_, _, shard) = &pair[1];
        let c = median(client.iter().map(|r| r.0).collect());
        let s = median(shard.iter().map(|r| r.0).collect());
        println!(
            "{:>6} {:>14.0} {:>14.0} {:>8.2} {:>9.1} us {:>9.1} us",
            t,
            c,
            s,
            c / s,
            median(client.iter().map(|r| r.1).collect()),
            median(client.iter().map(|r| r.2).collect()),
        );
    }
    println!("load average at end: {}", load_average());
}
