//! The `shardwal` command line: `bench` measures durable appends against the bare device,
//! `verify` reads every record of a closed log directory back and checks it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use shardwal::{CpuPlacement, Durability, Lsn, ShardId, WalConfig};

#[derive(Parser)]
#[command(
    name = "shardwal",
    version,
    about = "A durable thread-per-core write-ahead log: benchmark and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Durable appends from S shards x W writer tasks, beside the bare device loop.
    Bench(BenchArgs),
    /// Read every record of every shard in a closed log directory and check it.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Fdatasync,
    Dsync,
    Nosync,
}

#[derive(Parser, Clone)]
struct BenchArgs {
    /// Number of shards (one executor each).
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Concurrent writer tasks per shard; a comma list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    writers: Vec<usize>,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 256)]
    record_bytes: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds; each round runs the baseline and every writer count once, interleaved.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Durability mode.
    #[arg(long, value_enum, default_value = "fdatasync")]
    durability: DurabilityArg,
    /// Directory to run in (a fresh temporary directory inside it per run). Default: a
    /// temporary directory under the current directory's file system ($TMPDIR or /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the bare write+fdatasync device loop.
    #[arg(long)]
    no_baseline: bool,
    /// Let shard executors float instead of pinning shard i to CPU i.
    #[arg(long)]
    unbound: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => bench(&BenchArgs::parse_from(["shardwal"])),
        Some(Command::Bench(args)) => bench(&args),
        Some(Command::Verify { dir }) => verify(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardwal: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One measured run.
struct RunResult {
    label: String,
    ops: u64,
    fdatasyncs: u64,
    /// Batches written (for the device loop: writes).
    flushes: u64,
    /// Appends that waited for a flush buffer or a prepared segment.
    ring_full_waits: u64,
    /// Segment rotations.
    rotations: u64,
    seconds: f64,
    latency_ns: Histogram<u64>,
    cpu_seconds: f64,
    registered: Option<bool>,
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage only writes into the zero-initialised struct we pass it, and
    // RUSAGE_SELF is always a valid target.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    }
}

/// User + system CPU time of the whole process, in seconds.
fn cpu_seconds() -> f64 {
    let usage = rusage();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size of the process, in MiB.
fn peak_rss_mib() -> f64 {
    rusage().ru_maxrss as f64 / 1024.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

fn bench(args: &BenchArgs) -> AnyResult<()> {
    if args.writers.is_empty() || args.writers.contains(&0) {
        return Err("--writers needs one or more counts above 0".into());
    }
    if args.seconds <= 0.0 || args.rounds == 0 {
        return Err("--seconds and --rounds must be above 0".into());
    }
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let durability = match args.durability {
        DurabilityArg::Fdatasync => Durability::Fdatasync,
        DurabilityArg::Dsync => Durability::Dsync,
        DurabilityArg::Nosync => Durability::NoSyncBenchmarkOnly,
    };
    println!(
        "shardwal bench: {} shards, writers per shard {:?}, {}-byte records, durability {:?}, {} s per run, {} round(s)",
        args.shards, args.writers, args.record_bytes, durability, args.seconds, args.rounds
    );
    println!(
        "directory: {} (load average at start: {})",
        base.path().display(),
        load_average()
    );

    let mut results: Vec<RunResult> = Vec::new();
    let mut run_no = 0;
    for round in 0..args.rounds {
        if !args.no_baseline {
            run_no += 1;
            let r = device_baseline(&base.path().join(format!("run-{run_no}")), args.seconds)?;
            eprintln!("round {}: {}", round + 1, r.summary());
            results.push(r);
        }
        for &w in &args.writers {
            run_no += 1;
            let dir = base.path().join(format!("run-{run_no}"));
            let r = wal_run(args, durability, w, &dir)?;
            std::fs::remove_dir_all(&dir)?;
            eprintln!("round {}: {}", round + 1, r.summary());
            results.push(r);
        }
    }
    print_report(&results, args);
    println!(
        "peak RSS {:.1} MiB; load average at end: {}",
        peak_rss_mib(),
        load_average()
    );
    Ok(())
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    fn summary(&self) -> String {
        format!(
            "{:<28} {:>12.0} ops/s  p50 {:>8.1} us  p99 {:>8.1} us  ring-full waits {} rotations {}",
            self.label,
            self.rate(),
            self.latency_ns.value_at_quantile(0.5) as f64 / 1e3,
            self.latency_ns.value_at_quantile(0.99) as f64 / 1e3,
            self.ring_full_waits,
            self.rotations
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_report(results: &[RunResult], args: &BenchArgs) {
    let mut labels: Vec<&str> = Vec::new();
    for r in results {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let baseline = median(
        results
            .iter()
            .filter(|r| r.label.starts_with("device"))
            .map(|r| r.rate())
            .collect(),
    );
    println!();
    println!(
        "{:<28} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "run (medians over rounds)",
        "ops/s",
        "fsyncs/s",
        "rec/flush",
        "rec/fsync",
        "p50 us",
        "p99 us",
        "max us",
        "cpu us/op",
        "x device"
    );
    for label in labels {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.label == label).collect();
        let m = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
        let rate = m(&|r| r.rate());
        let fsyncs = m(&|r| r.fdatasyncs as f64 / r.seconds);
        let per_sync = m(&|r| r.ops as f64 / r.fdatasyncs.max(1) as f64);
        let per_flush = m(&|r| r.ops as f64 / r.flushes.max(1) as f64);
        let q = |quantile: f64| m(&|r| r.latency_ns.value_at_quantile(quantile) as f64 / 1e3);
        let max = m(&|r| r.latency_ns.max() as f64 / 1e3);
        let cpu = m(&|r| r.cpu_seconds * 1e6 / r.ops.max(1) as f64);
        let ratio = if baseline.is_nan() || baseline == 0.0 {
            "-".to_string()
        } else {
            format!("{:.2}", rate / baseline)
        };
        println!(
            "{:<28} {:>12.0} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.2} {:>8}",
            label,
            rate,
            fsyncs,
            per_flush,
            per_sync,
            q(0.5),
            q(0.99),
            max,
            cpu,
            ratio
        );
    }
    if let Some(reg) = results.iter().find_map(|r| r.registered) {
        println!(
            "flush buffers in io_uring-registered memory: {}",
            if reg {
                "yes"
            } else {
                "no (memlock limit too small?)"
            }
        );
    }
    let _ = args;
}

/// The device's own limit for one writer: 4 KiB O_DIRECT writes into a pre-zeroed file,
/// each followed by fdatasync, for `seconds`.
fn device_baseline(dir: &Path, seconds: f64) -> AnyResult<RunResult> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("baseline.dat");
    const FILE_BYTES: u64 = 64 << 20;
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(4 << 20)
        .make()?;
    let result = ex.run(async move {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&path)
            .await?;
        let mut zeros = file.alloc_dma_buffer(1 << 20);
        zeros.as_bytes_mut().fill(0);
        let zeros = Rc::new(zeros);
        let mut pos = 0;
        while pos < FILE_BYTES {
            file.write_rc_at(zeros.clone(), pos).await?;
            pos += 1 << 20;
        }
        file.fdatasync().await?;
        let mut block = file.alloc_dma_buffer(4096);
        block.as_bytes_mut().fill(0x5A);
        let block = Rc::new(block);
        let mut hist = new_histogram();
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(seconds);
        let (mut ops, mut pos) = (0u64, 0u64);
        while Instant::now() < deadline {
            let t = Instant::now();
            file.write_rc_at(block.clone(), pos).await?;
            file.fdatasync().await?;
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            ops += 1;
            pos = (pos + 4096) % FILE_BYTES;
        }
        let elapsed = start.elapsed().as_secs_f64();
        file.close().await?;
        Ok::<_, glommio::GlommioError<()>>(RunResult {
            label: "device 4K write+fdatasync".into(),
            ops,
            fdatasyncs: ops,
            flushes: ops,
            ring_full_waits: 0,
            rotations: 0,
            seconds: elapsed,
            latency_ns: hist,
            cpu_seconds: cpu_seconds() - cpu0,
            registered: None,
        })
    })?;
    std::fs::remove_dir_all(dir)?;
    Ok(result)
}

struct ShardOutcome {
    ops: u64,
    ring_full_waits: u64,
    rotations: u64,
    fdatasyncs: u64,
    flushes: u64,
    latency_ns: Histogram<u64>,
    registered: bool,
}

fn wal_run(
    args: &BenchArgs,
    durability: Durability,
    writers: usize,
    dir: &Path,
) -> AnyResult<RunResult> {
    let config = WalConfig::builder(dir)
        .shard_count(args.shards)
        .durability(durability)
        .placement(if args.unbound {
            CpuPlacement::Unbound
        } else {
            CpuPlacement::PinnedPerShard
        })
        .build()?;
    let seconds = args.seconds;
    let record_bytes = args.record_bytes;
    if record_bytes == 0 || record_bytes > config.max_record_bytes() {
        return Err(format!("--record-bytes must be 1 ..= {}", config.max_record_bytes()).into());
    }
    // All shards start measuring at the same moment, after they opened.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(args.shards as usize + 1));
    let b = barrier.clone();
    let handle = shardwal::spawn(config, move |shard| {
        let b = b.clone();
        async move {
            b.wait();
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            let hist = Rc::new(RefCell::new(new_histogram()));
            let ops = Rc::new(RefCell::new(0u64));
            let m0 = shard.metrics();
            let mut tasks = Vec::with_capacity(writers);
            for w in 0..writers {
                let (shard, hist, ops) = (shard.clone(), hist.clone(), ops.clone());
                tasks.push(glommio::spawn_local(async move {
                    let payload = vec![(w % 251) as u8 + 1; record_bytes];
                    loop {
                        let t = Instant::now();
                        if t >= deadline {
                            break;
                        }
                        shard.append_durable(&payload).await?;
                        hist.borrow_mut()
                            .saturating_record(t.elapsed().as_nanos() as u64);
                        *ops.borrow_mut() += 1;
                    }
                    Ok(())
                }));
            }
            for t in tasks {
                t.await?;
            }
            let outcome = ShardOutcome {
                ops: *ops.borrow(),
                fdatasyncs: shard.metrics().fdatasyncs - m0.fdatasyncs,
                flushes: shard.metrics().flushes - m0.flushes,
                ring_full_waits: shard.metrics().ring_full_waits - m0.ring_full_waits,
                rotations: shard.metrics().rotations - m0.rotations,
                latency_ns: hist.borrow().clone(),
                registered: shard.buffers_registered(),
            };
            Ok::<_, shardwal::Error>(outcome)
        }
    })?;
    barrier.wait();
    let cpu0 = cpu_seconds();
    let outcomes = handle.join()?;
    // Every writer stops starting appends at its shard's deadline, `seconds` after the
    // common start; throughput is counted over that window.
    let mut result = RunResult {
        label: format!("shardwal {}x{} append_durable", args.shards, writers),
        ops: 0,
        fdatasyncs: 0,
        flushes: 0,
        ring_full_waits: 0,
        rotations: 0,
        seconds,
        latency_ns: new_histogram(),
        cpu_seconds: cpu_seconds() - cpu0,
        registered: None,
    };
    for o in outcomes {
        let o = o?;
        result.ops += o.ops;
        result.fdatasyncs += o.fdatasyncs;
        result.flushes += o.flushes;
        result.ring_full_waits += o.ring_full_waits;
        result.rotations += o.rotations;
        result.latency_ns.add(&o.latency_ns)?;
        result.registered = Some(result.registered.unwrap_or(true) && o.registered);
    }
    Ok(result)
}

/// Reads every shard of `dir` back with the offline reader.
fn verify(dir: &Path) -> AnyResult<()> {
    let mut shard = 0u32;
    let mut total = 0u64;
    loop {
        let sdir = shardwal::segment::shard_dir(dir, ShardId(shard));
        if !sdir.is_dir() {
            break;
        }
        let mut count = 0u64;
        let mut first = None;
        let mut last = Lsn::ZERO;
        for record in shardwal::LogReader::open_all(dir, ShardId(shard))? {
            let record = record?;
            first.get_or_insert(record.lsn);
            last = record.lsn;
            count += 1;
        }
        println!(
            "shard {shard}: {count} records, lsn {} ..= {last}",
            first.unwrap_or(Lsn::ZERO)
        );
        total += count;
        shard += 1;
    }
    if shard == 0 {
        return Err(format!("{}: no shard directories (shard-NNNN) found", dir.display()).into());
    }
    println!("{shard} shard(s), {total} records, all checksums valid");
    Ok(())
}
