//! The bench's report: every label's medians over the interleaved rounds ([`RunSummary`]),
//! printed as a table or as JSON, with the ratios that make one run's figures mean
//! something: to the device loop, to the sequential bandwidth, to the bare group-commit
//! ceiling of the same geometry, client to in-shard, publishing on to off, and shardwal to
//! the best peer.

use serde::Serialize;

use crate::baseline;
use crate::bench::BenchArgs;
use crate::run::{LatencySummary, RunKind, RunResult, RunSummary};
use crate::stats::{load_average, median, peak_rss_mib, quantile_us};
use crate::AnyResult;

/// Labels in first-seen order.
pub fn labels(results: &[RunResult]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in results {
        if !out.contains(&r.label.as_str()) {
            out.push(&r.label);
        }
    }
    out
}

/// For each label, the run whose throughput is the median of its rounds (what the plot
/// draws).
pub fn median_runs(results: &[RunResult]) -> Vec<&RunResult> {
    labels(results)
        .into_iter()
        .map(|l| {
            let mut runs: Vec<&RunResult> = results.iter().filter(|r| r.label == l).collect();
            runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
            runs[runs.len() / 2]
        })
        .collect()
}

/// shardwal beside the peers at one geometry (`--peers`).
#[derive(Serialize)]
pub struct PeerComparison {
    /// Writers in all (shards × writers per shard; the peers ran as many threads).
    pub writers: usize,
    /// shardwal's durable appends/s.
    pub shardwal_per_sec: f64,
    /// The fastest peer's label and appends/s.
    pub best_peer: String,
    pub best_peer_per_sec: f64,
    /// shardwal / the fastest peer.
    pub x_best_peer: f64,
    /// shardwal's commit latency p99 and p99.9, and the lowest of any peer's, in us.
    pub shardwal_p99_us: f64,
    pub lowest_peer_p99_us: f64,
    pub shardwal_p99_9_us: f64,
    pub lowest_peer_p99_9_us: f64,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    shards: u32,
    writers_per_shard: &'a [usize],
    record_bytes: String,
    durability: String,
    commit: String,
    seconds_per_run: Option<f64>,
    records_per_run: Option<u64>,
    rounds: usize,
    runs: &'a [RunSummary],
    peers: &'a [PeerComparison],
    buffers_registered: Option<bool>,
    peak_rss_mib: f64,
    load_average_start: &'a str,
    load_average_end: String,
}

/// Prints the report of `results` (as JSON with `--json`).
pub fn report(args: &BenchArgs, results: &[RunResult], load_start: &str) -> AnyResult<()> {
    let summaries = summaries(results);
    let peers = compare_peers(&summaries);
    let registered = results.iter().find_map(|r| r.registered);
    if args.json {
        let j = JsonReport {
            shards: args.shards,
            writers_per_shard: &args.writers,
            record_bytes: args.record_bytes.to_string(),
            durability: format!("{:?}", args.durability),
            commit: args.commit.describe(),
            seconds_per_run: args.records.is_none().then_some(args.seconds),
            records_per_run: args.records,
            rounds: args.rounds,
            runs: &summaries,
            peers: &peers,
            buffers_registered: registered,
            peak_rss_mib: peak_rss_mib(),
            load_average_start: load_start,
            load_average_end: load_average(),
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    print_table(&summaries);
    print_peers(&peers);
    print_notes(&summaries, registered);
    println!(
        "peak RSS {:.1} MiB; load average at start {load_start}, at end {}",
        peak_rss_mib(),
        load_average()
    );
    Ok(())
}

/// Every label's medians, with its ratios to the baselines of the same run.
fn summaries(results: &[RunResult]) -> Vec<RunSummary> {
    let median_of = |keep: &dyn Fn(&RunResult) -> bool, value: &dyn Fn(&RunResult) -> f64| {
        let v: Vec<f64> = results.iter().filter(|r| keep(r)).map(value).collect();
        if v.is_empty() {
            0.0
        } else {
            median(v)
        }
    };
    let device = median_of(&|r| r.label == baseline::SYNC_LOOP, &|r| r.rate());
    labels(results)
        .into_iter()
        .map(|l| {
            let runs: Vec<&RunResult> = results.iter().filter(|r| r.label == l).collect();
            let (kind, geometry) = (runs[0].kind, runs[0].geometry);
            let ceiling = match kind {
                RunKind::Shardwal | RunKind::ShardwalClient => median_of(
                    &|r| r.kind == RunKind::Ceiling && r.geometry == geometry,
                    &|r| r.rate(),
                ),
                _ => 0.0,
            };
            let device = if l == baseline::BANDWIDTH {
                0.0
            } else {
                device
            };
            summarize(l, &runs, device, ceiling)
        })
        .collect()
}

/// The medians of one label's runs; `device` and `ceiling` are the rates its throughput is
/// compared with (0 when there is none).
fn summarize(label: &str, runs: &[&RunResult], device: f64, ceiling: f64) -> RunSummary {
    assert!(!runs.is_empty() && runs.iter().all(|r| r.label == label));
    let optional = |f: &dyn Fn(&RunResult) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let m = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
    let q = |quantile: f64| m(&|r| quantile_us(&r.latency_ns, quantile));
    let rate = m(&|r| r.rate());
    RunSummary {
        label: label.to_string(),
        kind: runs[0].kind,
        geometry: runs[0].geometry,
        rounds: runs.len(),
        appends_per_sec: rate,
        mb_per_sec: m(&|r| r.bytes as f64 / r.seconds / 1e6),
        fdatasyncs_per_sec: m(&|r| r.fdatasyncs as f64 / r.seconds),
        records_per_flush: m(&|r| r.ops as f64 / r.flushes as f64),
        records_per_fdatasync: m(&|r| {
            r.leader_records.unwrap_or(r.ops) as f64 / r.fdatasyncs as f64
        }),
        latency_us: LatencySummary {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            max: m(&|r| r.latency_ns.max() as f64 / 1e3),
        },
        cpu_us_per_record: m(&|r| r.cpu_seconds * 1e6 / r.ops.max(1) as f64),
        ratio_to_device_loop: (device > 0.0).then(|| rate / device),
        x_ceiling: (ceiling > 0.0).then(|| rate / ceiling),
        open_ms: optional(&|r| r.open_ms),
        first_commit_us: optional(&|r| r.first_commit_us),
        cut_reads_per_sec: runs
            .iter()
            .all(|r| r.cut_reads_per_sec.is_some())
            .then(|| m(&|r| r.cut_reads_per_sec.unwrap_or(0.0))),
    }
}

/// The main table: one line per label.
fn print_table(summaries: &[RunSummary]) {
    let bandwidth_mb = summaries
        .iter()
        .find(|s| s.label == baseline::BANDWIDTH)
        .map_or(0.0, |s| s.mb_per_sec);
    println!();
    println!(
        "{:<46} {:>11} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "run (medians over rounds)",
        "ops/s",
        "MB/s",
        "fsyncs/s",
        "rec/flush",
        "rec/fsync",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "cpu us/op",
        "x fsync",
        "x seq bw",
        "x ceil"
    );
    for s in summaries {
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |r| format!("{r:.2}"));
        // Counts a run could not observe (peers report no flushes or fdatasyncs) show "-".
        let known = |v: f64, decimals: usize| match v.is_finite() && s.fdatasyncs_per_sec > 0.0 {
            true => format!("{v:.decimals$}"),
            false => "-".to_string(),
        };
        // Runs that measure no commit latency (the bandwidth test) show "-".
        let us = |v: f64| match s.latency_us.max > 0.0 {
            true => format!("{v:.1}"),
            false => "-".to_string(),
        };
        let bw = (bandwidth_mb > 0.0 && s.label != baseline::SYNC_LOOP)
            .then(|| s.mb_per_sec / bandwidth_mb);
        println!(
            "{:<46} {:>11.0} {:>8.1} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8.2} {:>8} {:>8} {:>8}",
            s.label,
            s.appends_per_sec,
            s.mb_per_sec,
            known(s.fdatasyncs_per_sec, 0),
            known(s.records_per_flush, 1),
            known(s.records_per_fdatasync, 1),
            us(s.latency_us.p50),
            us(s.latency_us.p90),
            us(s.latency_us.p99),
            us(s.latency_us.p99_9),
            us(s.latency_us.max),
            s.cpu_us_per_record,
            ratio(s.ratio_to_device_loop),
            ratio(bw),
            ratio(s.x_ceiling),
        );
    }
}

/// For every geometry with peer runs: shardwal (writers inside the shards, publishing on)
/// beside the fastest peer and the lowest peer tails.
fn compare_peers(summaries: &[RunSummary]) -> Vec<PeerComparison> {
    let shardwal_runs = summaries
        .iter()
        .filter(|s| s.kind == RunKind::Shardwal && !s.label.ends_with("(no publish)"));
    shardwal_runs
        .filter_map(|ours| {
            let peers: Vec<&RunSummary> = summaries
                .iter()
                .filter(|s| s.kind == RunKind::Peer && s.geometry == ours.geometry)
                .collect();
            let best = peers
                .iter()
                .max_by(|a, b| a.appends_per_sec.total_cmp(&b.appends_per_sec))?;
            let lowest = |f: &dyn Fn(&RunSummary) -> f64| {
                peers.iter().map(|p| f(p)).fold(f64::INFINITY, f64::min)
            };
            let (shards, writers) = ours.geometry?;
            Some(PeerComparison {
                writers: shards as usize * writers,
                shardwal_per_sec: ours.appends_per_sec,
                best_peer: best.label.clone(),
                best_peer_per_sec: best.appends_per_sec,
                x_best_peer: ours.appends_per_sec / best.appends_per_sec,
                shardwal_p99_us: ours.latency_us.p99,
                lowest_peer_p99_us: lowest(&|p| p.latency_us.p99),
                shardwal_p99_9_us: ours.latency_us.p99_9,
                lowest_peer_p99_9_us: lowest(&|p| p.latency_us.p99_9),
            })
        })
        .collect()
}

fn print_peers(peers: &[PeerComparison]) {
    if peers.is_empty() {
        return;
    }
    println!();
    println!(
        "{:>8} {:>11} {:<28} {:>11} {:>7} {:>9} {:>11} {:>10} {:>12}",
        "writers",
        "shardwal/s",
        "best peer",
        "peer/s",
        "x best",
        "p99 us",
        "peer p99 us",
        "p99.9 us",
        "peer p99.9 us"
    );
    for p in peers {
        println!(
            "{:>8} {:>11.0} {:<28} {:>11.0} {:>7.2} {:>9.1} {:>11.1} {:>10.1} {:>12.1}",
            p.writers,
            p.shardwal_per_sec,
            p.best_peer,
            p.best_peer_per_sec,
            p.x_best_peer,
            p.shardwal_p99_us,
            p.lowest_peer_p99_us,
            p.shardwal_p99_9_us,
            p.lowest_peer_p99_9_us
        );
    }
    println!("(peer p99 / p99.9: the lowest of any peer at that concurrency)");
}

/// The lines under the table: registered buffers, start-up, cut reads, the on/off and
/// client/in-shard ratios.
fn print_notes(summaries: &[RunSummary], registered: Option<bool>) {
    if let Some(reg) = registered {
        let how = if reg {
            "yes"
        } else {
            "no (memlock limit too small?)"
        };
        println!("flush buffers in io_uring-registered memory: {how}");
    }
    for s in summaries {
        if let (Some(open), Some(first)) = (s.open_ms, s.first_commit_us) {
            println!(
                "{}: opened in {open:.1} ms, first durable commit in {first:.0} us (slowest shard, median over rounds)",
                s.label
            );
        }
        if let Some(c) = s.cut_reads_per_sec {
            println!(
                "{}: a second process took {c:.0} consistent cuts/s from the shared header",
                s.label
            );
        }
    }
    paired_ratio(summaries, " (no publish)", "publishing on/off");
    paired_ratio(summaries, " via client", "client/in-shard");
    paired_ratio(summaries, " (memory log)", "durable/in-memory");
    paired_ratio(summaries, " (memstore)", "durable/memstore");
}

/// For each label `L` with a partner `L + suffix`: the throughput ratio between them
/// (`--publishing on,off`: on / off; `--via shard,client`: client / in-shard).
fn paired_ratio(summaries: &[RunSummary], suffix: &str, what: &str) {
    for base in summaries {
        let partner_label = format!("{}{suffix}", base.label);
        let Some(partner) = summaries.iter().find(|s| s.label == partner_label) else {
            continue;
        };
        let (num, den) = match suffix {
            " via client" => (partner, base),
            _ => (base, partner),
        };
        println!(
            "{}: {what} throughput ratio {:.3} ({:.0} vs {:.0} appends/s)",
            base.label,
            num.appends_per_sec / den.appends_per_sec,
            num.appends_per_sec,
            den.appends_per_sec
        );
    }
}
