//! `shardwal bench`: durable appends from S shards × W writer tasks, with the device's own
//! limits and (with the `peers` feature) other logs in the same run, interleaved round by
//! round (A B A B ...), reported as medians and ratios.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use shardwal::{CpuPlacement, Durability, Shard, WalConfig};

use crate::baseline;
use crate::run::{Meter, RecordSize, RunKind, RunResult};
use crate::stats::{cpu_seconds, load_average, new_histogram, quantile_us};
use crate::AnyResult;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    Fdatasync,
    Dsync,
    Nosync,
}

/// How writers make their records durable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CommitPattern {
    /// Every append is awaited until durable (`append_durable`).
    Every,
    /// Append N records without waiting, then `sync` (one latency sample per sync).
    SyncEvery(u64),
    /// Open loop: writers send at a fixed total rate (appends/s) whatever the latency; a
    /// record's latency counts from when it was due, so falling behind shows.
    Rate(f64),
}

impl CommitPattern {
    fn parse(s: &str) -> Result<CommitPattern, String> {
        if s == "every" {
            return Ok(CommitPattern::Every);
        }
        if let Some(n) = s.strip_prefix("sync-every:") {
            let n: u64 = n.parse().map_err(|_| format!("bad count in {s:?}"))?;
            if n == 0 {
                return Err("sync-every needs a count above 0".into());
            }
            return Ok(CommitPattern::SyncEvery(n));
        }
        if let Some(r) = s.strip_prefix("rate:") {
            let r: f64 = r.parse().map_err(|_| format!("bad rate in {s:?}"))?;
            if !(r > 0.0 && r.is_finite()) {
                return Err("rate needs a positive number of appends/s".into());
            }
            return Ok(CommitPattern::Rate(r));
        }
        Err(format!(
            "bad commit pattern {s:?}: use every, sync-every:N or rate:APPENDS_PER_SEC"
        ))
    }

    /// A short description for labels and headers ("append_durable", "sync every 16", ...).
    pub fn describe(&self) -> String {
        match self {
            CommitPattern::Every => "append_durable".into(),
            CommitPattern::SyncEvery(n) => format!("sync every {n}"),
            CommitPattern::Rate(r) => format!("open loop {r:.0}/s"),
        }
    }
}

#[derive(Parser, Clone, Debug)]
pub struct BenchArgs {
    /// Number of shards (one executor each).
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    /// Concurrent writer tasks per shard; a comma list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub writers: Vec<usize>,
    /// Payload bytes per record: a number (256) or an inclusive range (100..4096).
    #[arg(long, default_value = "256", value_parser = RecordSize::parse)]
    pub record_bytes: RecordSize,
    /// Seconds per measured run (ignored with --records).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Durable records per run instead of a duration (split evenly over the writers).
    #[arg(long)]
    pub records: Option<u64>,
    /// Rounds; each round runs every configuration once, interleaved.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Durability mode.
    #[arg(long, value_enum, default_value = "fdatasync")]
    pub durability: DurabilityArg,
    /// Commit pattern: every | sync-every:N | rate:APPENDS_PER_SEC (open loop).
    #[arg(long, default_value = "every", value_parser = CommitPattern::parse)]
    pub commit: CommitPattern,
    /// Directory to run in (a fresh temporary directory inside it). Default: $TMPDIR or /tmp.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON on stdout (progress and notes go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Draw throughput over time and the latency distribution into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Skip the device baselines (bare write+fdatasync loop, sequential O_DIRECT bandwidth).
    #[arg(long)]
    pub no_baseline: bool,
    /// Also run the peers (okaywal, raft-engine; RocksDB with `peers-rocksdb`) with
    /// shards × writers threads each. Needs `--features peers`.
    #[arg(long)]
    pub peers: bool,
    /// Let shard executors float instead of pinning shard i to CPU i.
    #[arg(long)]
    pub unbound: bool,
    /// Size of each flush buffer in bytes (a power of two, 8 KiB ..= 64 MiB). Default: 1 MiB,
    /// or with `--commit sync-every:N` the smallest power of two that holds N records of the
    /// largest size plus their frame headers, the batch marker and a segment header block,
    /// so one commit is one batch (one write, one fdatasync).
    #[arg(long)]
    pub flush_buffer_bytes: Option<usize>,
    /// Like a checkpointing service: each shard also runs a task that, every millisecond,
    /// truncates its log behind the durable LSN (`truncate_before(durable + 1)`), so old
    /// segments become spares and, in the steady state, new segments are recycled spares
    /// instead of zero-filled files. Without it the log grows for the whole run.
    #[arg(long)]
    pub truncate_behind: bool,
    /// Spare segment files each shard keeps for recycling (`recycled_segment_count`, 0 ..= 64).
    #[arg(long, default_value_t = 2)]
    pub recycled_segments: usize,
    /// Shard executors busy-poll for their segment writes' completions instead of sleeping
    /// (`poll_write_completions`); runs are labelled "polled".
    #[arg(long)]
    pub poll_write_completions: bool,
    /// Also run the bare group-commit loop with its writes waited for asleep (glommio's
    /// main ring), like a shard with default settings; for comparison only (`x ceiling`
    /// stays against the usual, busy-polling loop).
    #[arg(long)]
    pub asleep_ceiling: bool,
    /// Shared-header publishing after every group commit: on, off, or on,off to run each
    /// configuration both ways, interleaved (measures what publishing costs).
    #[arg(long, value_delimiter = ',', default_value = "on")]
    pub publishing: Vec<Switch>,
    /// During every shardwal run, a second process takes consistent cuts from the shared
    /// header in a loop; the report shows cuts per second.
    #[arg(long)]
    pub cut_reader: bool,
    /// Where the writers run: `shard` (tasks inside each shard's executor), `client` (tokio
    /// tasks on another runtime, through the `Send` client), or `shard,client` for both,
    /// interleaved, with the client/in-shard throughput ratio.
    #[arg(long, value_delimiter = ',', default_value = "shard")]
    pub via: Vec<Via>,
    /// Replicated durable writes on a 3-node openraft cluster over loopback TCP, beside the
    /// same cluster with its Raft log in memory (`--raft-logs`), for each `--raft-clients`
    /// count, interleaved round by round (the shard options do not apply).
    #[arg(long)]
    pub raft: bool,
    /// Concurrent clients of `--raft` runs; a comma list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    pub raft_clients: Vec<usize>,
    /// The Raft logs `--raft` runs, in this order for each client count: `shardwal`
    /// (durable), `memstore` (openraft-memstore's in-memory `MemLogStore`, the
    /// no-durability ceiling), `memory` (shardwal's store on an in-memory backend).
    #[arg(long, value_delimiter = ',', default_value = "shardwal,memstore")]
    pub raft_logs: Vec<String>,
    /// Records per request with `--commit every`: each writer appends a batch of N records
    /// (`Shard::append_batch` + `commit`, or `Client::append_batch_durable`) and waits until
    /// the batch is durable; a comma list runs each in turn. 1 = `append_durable`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
}

/// One shardwal configuration of a round: what varies between runs of one invocation.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Writer tasks per shard.
    writers: usize,
    /// Records per request (1 = single appends).
    batch: usize,
    /// Whether positions are published to the shared header.
    publishing: bool,
    /// Where the writers run.
    via: Via,
}

/// Where `bench` runs its writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Tasks on the shard's own executor, calling `Shard` directly.
    Shard,
    /// Tokio tasks on another runtime, calling `Client`.
    Client,
}

/// An on/off option value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Runs the benchmark described by `args` and prints its report.
pub fn bench(args: &BenchArgs) -> AnyResult<()> {
    if args.writers.is_empty() || args.writers.contains(&0) {
        return Err("--writers needs one or more counts above 0".into());
    }
    let seconds_ok = args.seconds > 0.0 && args.seconds.is_finite();
    if !seconds_ok || args.rounds == 0 || args.records == Some(0) {
        return Err("--seconds, --rounds and --records must be above 0".into());
    }
    let client_ok = args.commit == CommitPattern::Every
        && args.records.is_none()
        && !args.truncate_behind
        && !args.cut_reader;
    if args.via.contains(&Via::Client) && !client_ok {
        return Err("--via client runs `--commit every` for a fixed duration only (no --records, --truncate-behind or --cut-reader)".into());
    }
    if args.via.is_empty() {
        return Err("--via needs shard, client or both".into());
    }
    if args.raft && (args.peers || args.raft_clients.is_empty() || args.raft_clients.contains(&0)) {
        return Err("--raft needs --raft-clients counts above 0 and no --peers".into());
    }
    if args.raft && args.raft_logs.is_empty() {
        return Err("--raft needs one or more --raft-logs".into());
    }
    for log in &args.raft_logs {
        shardwal_raft::cluster::NodeLog::parse(log)?;
    }
    if args.batch.is_empty() || args.batch.contains(&0) {
        return Err("--batch needs one or more counts above 0".into());
    }
    let batching = args.batch.iter().any(|&b| b > 1);
    if batching && (args.commit != CommitPattern::Every || args.peers) {
        return Err("--batch above 1 works with `--commit every` and without --peers".into());
    }
    if args.peers && (args.commit != CommitPattern::Every || args.records.is_some()) {
        return Err("--peers compares `--commit every` runs of a fixed duration only".into());
    }
    #[cfg(not(feature = "peers"))]
    if args.peers {
        return Err(
            "this shardwal was built without the `peers` feature: cargo run --release --features peers -- bench --peers"
                .into(),
        );
    }
    let durability = match args.durability {
        DurabilityArg::Fdatasync => Durability::Fdatasync,
        DurabilityArg::Dsync => Durability::Dsync,
        DurabilityArg::Nosync => Durability::NoSyncBenchmarkOnly,
    };
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let load_start = load_average();
    let say = |line: String| {
        if args.json {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
    };
    say(format!(
        "shardwal bench: {} shards, writers per shard {:?}, {}-byte records, durability {:?}, commit {}, {}, {} round(s)",
        args.shards,
        args.writers,
        args.record_bytes,
        durability,
        args.commit.describe(),
        match args.records {
            Some(n) => format!("{n} records per run"),
            None => format!("{} s per run", args.seconds),
        },
        args.rounds
    ));
    say(format!(
        "directory: {} (load average at start: {load_start})",
        base.path().display()
    ));

    let mut results: Vec<RunResult> = Vec::new();
    let mut run_no = 0;
    let mut next_dir = || {
        run_no += 1;
        base.path().join(format!("run-{run_no}"))
    };
    for round in 0..args.rounds {
        if args.raft {
            raft_round(args, round, &mut next_dir, &mut results)?;
            continue;
        }
        let mut done = |r: RunResult| {
            eprintln!("round {}: {}", round + 1, one_line(&r));
            results.push(r);
        };
        if !args.no_baseline {
            done(baseline::sync_loop(&next_dir(), args.seconds)?);
            done(baseline::bandwidth(&next_dir(), args.seconds)?);
        }
        for &w in &args.writers {
            for &batch in &args.batch {
                run_writers(args, durability, w, batch, &mut next_dir, &mut done)?;
            }
        }
    }
    crate::report::report(args, &results, &load_start)?;
    if let Some(path) = &args.plot {
        let picks = crate::report::median_runs(&results);
        let title = format!(
            "shardwal bench: {} shards, {}-byte records, {}",
            args.shards,
            args.record_bytes,
            args.commit.describe()
        );
        crate::plot::write_svg(path, &title, &picks)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

/// One round of `--raft`: for each client count, the cluster on each of `--raft-logs`, in
/// turn.
fn raft_round(
    args: &BenchArgs,
    round: usize,
    next_dir: &mut dyn FnMut() -> PathBuf,
    results: &mut Vec<RunResult>,
) -> AnyResult<()> {
    use shardwal_raft::cluster::NodeLog;
    let logs = args
        .raft_logs
        .iter()
        .map(|l| NodeLog::parse(l))
        .collect::<AnyResult<Vec<_>>>()?;
    for &clients in &args.raft_clients {
        for &log in &logs {
            let dir = next_dir();
            let r = crate::raft_bench::run(&dir, clients, log, args.seconds)?;
            std::fs::remove_dir_all(&dir)?;
            eprintln!("round {}: {}", round + 1, one_line(&r));
            results.push(r);
        }
    }
    Ok(())
}

/// Every run of one round for `w` writers per shard and batches of `batch`: the ceiling
/// (with the baselines), shardwal in every `--publishing` × `--via` shape, the peers.
fn run_writers(
    args: &BenchArgs,
    durability: Durability,
    w: usize,
    batch: usize,
    next_dir: &mut dyn FnMut() -> PathBuf,
    done: &mut dyn FnMut(RunResult),
) -> AnyResult<()> {
    let geometry = Some((args.shards, w));
    if !args.no_baseline && args.commit == CommitPattern::Every {
        let plan = crate::ceiling::CeilingPlan {
            executors: args.shards,
            writers: w,
            batch,
            record_bytes: args.record_bytes,
            seconds: args.seconds,
            pinned: !args.unbound,
            asleep: false,
        };
        let r = crate::ceiling::run(&next_dir(), plan)?;
        done(RunResult { geometry, ..r });
        if args.asleep_ceiling {
            let plan = crate::ceiling::CeilingPlan {
                asleep: true,
                ..plan
            };
            // No geometry: the x ceiling column stays against the polling loop.
            done(crate::ceiling::run(&next_dir(), plan)?);
        }
    }
    for &publishing in &args.publishing {
        for &via in &args.via {
            let shape = Shape {
                writers: w,
                batch,
                publishing: publishing == Switch::On,
                via,
            };
            let dir = next_dir();
            let r = match via {
                Via::Shard => wal_run(args, durability, shape, &dir)?,
                Via::Client => client_run(args, durability, shape, &dir)?,
            };
            std::fs::remove_dir_all(&dir)?;
            done(RunResult { geometry, ..r });
        }
    }
    #[cfg(feature = "peers")]
    if args.peers {
        for peer in crate::peers::Peer::all() {
            let dir = next_dir();
            std::fs::create_dir_all(&dir)?;
            let threads = w * args.shards as usize;
            let r = crate::peers::run(&peer, &dir, threads, args.record_bytes, args.seconds)?;
            std::fs::remove_dir_all(&dir)?;
            done(RunResult { geometry, ..r });
        }
    }
    Ok(())
}

fn one_line(r: &RunResult) -> String {
    format!(
        "{:<46} {:>12.0} ops/s {:>9.1} MB/s  p50 {:>8.1} us  p99 {:>8.1} us  ring-full waits {} rotations {} recycled {}/{}",
        r.label,
        r.rate(),
        r.bytes as f64 / r.seconds / 1e6,
        quantile_us(&r.latency_ns, 0.5),
        quantile_us(&r.latency_ns, 0.99),
        r.ring_full_waits,
        r.rotations,
        r.segments_recycled,
        r.segments_prepared
    )
}

/// The bench's flush buffer size when `--flush-buffer-bytes` is not given: 1 MiB, or for
/// `sync-every:N` the smallest power of two (at least 1 MiB, at most 64 MiB) that holds a
/// segment header block, the batch's marker and N frames of `max_record` payload bytes, so
/// that each commit goes out as one batch.
fn default_flush_buffer_bytes(commit: CommitPattern, max_record: usize) -> usize {
    use shardwal::config::FLUSH_BUFFER_OVERHEAD_BYTES;
    use shardwal::format::{frame_bytes, FRAME_HEADER_BYTES};
    let one_batch = match commit {
        CommitPattern::SyncEvery(n) => (n as usize)
            .saturating_mul(frame_bytes(max_record))
            .saturating_add(FLUSH_BUFFER_OVERHEAD_BYTES + FRAME_HEADER_BYTES),
        _ => 0,
    };
    one_batch.next_power_of_two().clamp(1 << 20, 64 << 20)
}

/// What one shard's writers measured.
struct ShardOutcome {
    /// Commit latencies in nanoseconds. A histogram, not a list of samples, so memory stays
    /// the same however long the run (a list grew by 8 bytes per commit: +68 MiB for 10 M
    /// durable 256-byte appends).
    latency_ns: hdrhistogram::Histogram<u64>,
    ops: u64,
    bytes: u64,
    metrics_before: shardwal::ShardMetrics,
    metrics_after: shardwal::ShardMetrics,
    registered: bool,
    /// From asking for the log (`shardwal::spawn`) to this shard being open.
    opened_after: Duration,
    /// The first durable commit right after opening (one record, before the measured
    /// window, so a log that is still preparing its first segment shows it here).
    first_commit: Duration,
}

/// The log configuration every shardwal run of `args` uses, in directory `dir`.
fn wal_config(
    args: &BenchArgs,
    durability: Durability,
    publishing: bool,
    dir: &Path,
) -> AnyResult<WalConfig> {
    let flush_buffer_bytes = args
        .flush_buffer_bytes
        .unwrap_or_else(|| default_flush_buffer_bytes(args.commit, args.record_bytes.max()));
    let config = WalConfig::builder(dir)
        .shard_count(args.shards)
        .durability(durability)
        .publish_positions(publishing)
        .flush_buffer_bytes(flush_buffer_bytes)
        .max_record_bytes(
            (512 << 10).min(flush_buffer_bytes - shardwal::config::FLUSH_BUFFER_OVERHEAD_BYTES),
        )
        .recycled_segment_count(args.recycled_segments)
        .poll_write_completions(args.poll_write_completions)
        .placement(if args.unbound {
            CpuPlacement::Unbound
        } else {
            CpuPlacement::PinnedPerShard
        })
        .build()?;
    if args.record_bytes.max() > config.max_record_bytes() {
        return Err(format!(
            "--record-bytes must be 1 ..= {} (max_record_bytes)",
            config.max_record_bytes()
        )
        .into());
    }
    Ok(config)
}

/// Starts every shard's measured window at the same moment, after all of them opened.
struct StartGate {
    shards: usize,
    /// (shards arrived, whether the window starts (`Some(true)`) or never will).
    state: std::sync::Mutex<(usize, Option<bool>)>,
    changed: std::sync::Condvar,
}

impl StartGate {
    fn new(shards: usize) -> StartGate {
        StartGate {
            shards,
            state: std::sync::Mutex::new((0, None)),
            changed: std::sync::Condvar::new(),
        }
    }

    /// A shard is open and committed once; blocks until the window starts (true) or the
    /// run is abandoned (false).
    fn arrive(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        self.changed.notify_all();
        let st = self.changed.wait_while(st, |s| s.1.is_none()).unwrap();
        st.1 == Some(true)
    }

    /// Waits up to `limit` for every shard, then starts the window, or abandons the run.
    fn start_when_all_arrive(&self, limit: Duration) {
        let st = self.state.lock().unwrap();
        let (mut st, _) = self
            .changed
            .wait_timeout_while(st, limit, |s| s.0 < self.shards)
            .unwrap();
        st.1 = Some(st.0 == self.shards);
        self.changed.notify_all();
    }
}

/// The label of a shardwal run.
fn wal_label(args: &BenchArgs, shape: Shape) -> String {
    format!(
        "shardwal {}x{} {}{}{}{}{}",
        args.shards,
        shape.writers,
        args.commit.describe(),
        match shape.batch {
            1 => String::new(),
            n => format!(" batch {n}"),
        },
        if shape.publishing {
            ""
        } else {
            " (no publish)"
        },
        if shape.via == Via::Client {
            " via client"
        } else {
            ""
        },
        if args.poll_write_completions {
            " polled"
        } else {
            ""
        }
    )
}

/// `writers` tokio tasks per shard, through the client (`--via client`).
fn client_run(
    args: &BenchArgs,
    durability: Durability,
    shape: Shape,
    dir: &Path,
) -> AnyResult<RunResult> {
    let label = wal_label(args, shape);
    let plan = crate::client_bench::ClientPlan {
        config: wal_config(args, durability, shape.publishing, dir)?,
        writers_per_shard: shape.writers,
        batch: shape.batch,
        record_bytes: args.record_bytes,
        seconds: args.seconds,
        label: &label,
    };
    crate::client_bench::run(plan, dir)
}

fn wal_run(
    args: &BenchArgs,
    durability: Durability,
    shape: Shape,
    dir: &Path,
) -> AnyResult<RunResult> {
    let (writers, batch) = (shape.writers, shape.batch);
    let config = wal_config(args, durability, shape.publishing, dir)?;
    let record_bytes = args.record_bytes;
    let truncate_behind = args.truncate_behind;
    let total_writers = writers * args.shards as usize;
    let quota = args.records.map(|n| n.div_ceil(total_writers as u64));
    let seconds = args.seconds;
    let pattern = args.commit;
    let label = wal_label(args, shape);
    let counter = Arc::new(AtomicU64::new(0));
    // Every shard starts measuring at the same moment, after all of them opened.
    let gate = Arc::new(StartGate::new(args.shards as usize));
    let b = gate.clone();
    let shard_counter = counter.clone();
    let asked_at = Instant::now();
    let handle = shardwal::spawn(config, move |shard| {
        let (b, counter) = (b.clone(), shard_counter.clone());
        async move {
            let opened_after = asked_at.elapsed();
            let first = Instant::now();
            shard.append_durable(b"first commit after open").await?;
            let first_commit = first.elapsed();
            let go = b.arrive();
            let deadline = match quota {
                Some(_) => None,
                None => Some(Instant::now() + Duration::from_secs_f64(seconds)),
            };
            let out = Rc::new(RefCell::new(ShardOutcome {
                latency_ns: new_histogram(),
                ops: 0,
                bytes: 0,
                metrics_before: shard.metrics(),
                metrics_after: shard.metrics(),
                registered: shard.buffers_registered(),
                opened_after,
                first_commit,
            }));
            if !go {
                // Another shard never opened: this one measures nothing, and `join`
                // reports the other one's error.
                return Ok(Rc::try_unwrap(out).ok().expect("not shared").into_inner());
            }
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let (shard, out, counter) = (shard.clone(), out.clone(), counter.clone());
                    let seed = (shard.id().0 as u64) << 32 | w as u64;
                    glommio::spawn_local(async move {
                        writer(
                            shard,
                            out,
                            counter,
                            WriterPlan {
                                pattern,
                                deadline,
                                quota,
                                record_bytes,
                                seed,
                                slot: w,
                                total_writers,
                                batch,
                            },
                        )
                        .await
                    })
                })
                .collect();
            // The checkpointer: truncate behind the durable LSN while the writers run.
            let writing = Rc::new(std::cell::Cell::new(true));
            let checkpointer = truncate_behind.then(|| {
                let (shard, writing) = (shard.clone(), writing.clone());
                glommio::spawn_local(async move {
                    while writing.get() {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        shard
                            .truncate_before(shardwal::Lsn(shard.durable_lsn().0 + 1))
                            .await?;
                    }
                    Ok::<_, shardwal::Error>(())
                })
            });
            let mut first_err = None;
            for t in tasks {
                if let Err(e) = t.await {
                    first_err.get_or_insert(e);
                }
            }
            writing.set(false);
            if let Some(c) = checkpointer {
                if let Err(e) = c.await {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            let mut o = Rc::try_unwrap(out).ok().expect("writers done").into_inner();
            o.metrics_after = shard.metrics();
            Ok::<_, shardwal::Error>(o)
        }
    })?;
    let cut_reader = match args.cut_reader {
        true => Some(crate::cut_reader::CutReader::start(dir, seconds)?),
        false => None,
    };
    // A shard that fails to open never arrives: after the limit the others are sent
    // home and `join` reports the failure (instead of a hang).
    gate.start_when_all_arrive(Duration::from_secs(60));
    let meter = Meter::start_with(&label, args.records.map_or(seconds, |_| 10.0), counter);
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let outcomes = handle.join()?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut r = RunResult::new(
        label,
        RunKind::Shardwal,
        if quota.is_some() { elapsed } else { seconds },
    );
    r.cpu_seconds = cpu_seconds() - cpu0;
    r.timeline = meter.finish();
    if let Some(c) = cut_reader {
        let c = c.finish()?;
        r.cut_reads_per_sec = Some(c.cuts as f64 / c.seconds);
    }
    r.latency_ns = new_histogram();
    for o in outcomes {
        let o = o?;
        let slowest = |v: Option<f64>, d: Duration, unit: f64| {
            Some(v.unwrap_or(0.0).max(d.as_secs_f64() * unit))
        };
        r.open_ms = slowest(r.open_ms, o.opened_after, 1e3);
        r.first_commit_us = slowest(r.first_commit_us, o.first_commit, 1e6);
        r.ops += o.ops;
        r.bytes += o.bytes;
        let (a, b) = (o.metrics_after, o.metrics_before);
        r.fdatasyncs += a.fdatasyncs - b.fdatasyncs;
        r.flushes += a.flushes - b.flushes;
        r.ring_full_waits += a.ring_full_waits - b.ring_full_waits;
        r.rotations += a.rotations - b.rotations;
        r.segments_prepared += a.segments_prepared - b.segments_prepared;
        r.segments_recycled += a.segments_recycled - b.segments_recycled;
        r.latency_ns
            .add(&o.latency_ns)
            .map_err(|e| format!("merging latency histograms: {e:?}"))?;
        r.registered = Some(r.registered.unwrap_or(true) && o.registered);
    }
    Ok(r)
}

struct WriterPlan {
    pattern: CommitPattern,
    deadline: Option<Instant>,
    quota: Option<u64>,
    record_bytes: RecordSize,
    seed: u64,
    /// This writer's index among its shard's writers (spreads open-loop send times).
    slot: usize,
    total_writers: usize,
    /// Records per request with `CommitPattern::Every`.
    batch: usize,
}

/// Books `records` records of `bytes` payload bytes that became durable, with one latency
/// sample measured from `since`; returns `records`.
fn durable(
    out: &RefCell<ShardOutcome>,
    counter: &AtomicU64,
    since: Instant,
    records: u64,
    bytes: u64,
) -> u64 {
    let mut o = out.borrow_mut();
    o.latency_ns
        .saturating_record(since.elapsed().as_nanos() as u64);
    o.ops += records;
    o.bytes += bytes;
    counter.fetch_add(records, Ordering::Relaxed);
    records
}

async fn writer(
    shard: Shard,
    out: Rc<RefCell<ShardOutcome>>,
    counter: Arc<AtomicU64>,
    plan: WriterPlan,
) -> shardwal::Result<()> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed);
    let max = plan.record_bytes.max();
    let payload: Vec<u8> = (0..max).map(|i| (i as u64 ^ plan.seed) as u8 | 1).collect();
    let mut done = 0u64;
    let finished = |done: u64, now: Instant| {
        plan.quota.is_some_and(|q| done >= q) || plan.deadline.is_some_and(|d| now >= d)
    };
    let start = Instant::now();
    let interval = match plan.pattern {
        CommitPattern::Rate(r) => Duration::from_secs_f64(plan.total_writers as f64 / r),
        _ => Duration::ZERO,
    };
    let mut due = start + interval.mul_f64(plan.slot as f64 / plan.total_writers.max(1) as f64);
    let mut pending = 0u64;
    let mut pending_bytes = 0u64;
    let mut batch_start = Instant::now();
    loop {
        let now = Instant::now();
        if finished(done, now) {
            break;
        }
        let len = plan.record_bytes.sample(&mut rng);
        match plan.pattern {
            CommitPattern::Every if plan.batch == 1 => {
                shard.append_durable(&payload[..len]).await?;
                done += durable(&out, &counter, now, 1, len as u64);
            }
            CommitPattern::Every => {
                let mut lens = vec![len];
                lens.extend((1..plan.batch).map(|_| plan.record_bytes.sample(&mut rng)));
                let records: Vec<&[u8]> = lens.iter().map(|&l| &payload[..l]).collect();
                let lsns = shard.append_batch(&records).await?;
                shard.commit(*lsns.end()).await?;
                let bytes = lens.iter().sum::<usize>() as u64;
                done += durable(&out, &counter, now, plan.batch as u64, bytes);
            }
            CommitPattern::Rate(_) => {
                if now < due {
                    glommio::timer::sleep(due - now).await;
                }
                shard.append_durable(&payload[..len]).await?;
                done += durable(&out, &counter, due, 1, len as u64);
                due += interval;
            }
            CommitPattern::SyncEvery(n) => {
                if pending == 0 {
                    batch_start = now;
                }
                shard.append(&payload[..len]).await?;
                pending += 1;
                pending_bytes += len as u64;
                if pending == n {
                    shard.sync().await?;
                    done += durable(&out, &counter, batch_start, pending, pending_bytes);
                    pending = 0;
                    pending_bytes = 0;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::StartGate;
    use std::sync::Arc;
    use std::time::Duration;

    /// Runs `arriving` shards against a gate for `shards`; returns what each was told.
    fn gate_with(shards: usize, arriving: usize, limit: Duration) -> Vec<bool> {
        let gate = Arc::new(StartGate::new(shards));
        let threads: Vec<_> = (0..arriving)
            .map(|_| {
                let g = gate.clone();
                std::thread::spawn(move || g.arrive())
            })
            .collect();
        gate.start_when_all_arrive(limit);
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn the_window_starts_when_every_shard_arrives() {
        assert_eq!(gate_with(3, 3, Duration::from_secs(60)), vec![true; 3]);
    }

    #[test]
    fn a_shard_that_never_arrives_sends_the_others_home() {
        assert_eq!(gate_with(3, 2, Duration::from_millis(200)), vec![false; 2]);
    }
}
