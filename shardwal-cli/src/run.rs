//! What every measured run produces, whoever ran it (shardwal, the device loops, a peer),
//! and the helpers that measure it: a [`Meter`] that counts completed operations from any
//! thread, shows a live progress line and records throughput over time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::stats::new_histogram;
use serde::Serialize;

/// How often the meter samples throughput (the timeline's resolution).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Which kind of system a run measured (the report compares kinds with each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A device loop (4 KiB write + fdatasync, sequential bandwidth).
    Device,
    /// The bare group-commit loop of the same geometry as a shardwal run.
    Ceiling,
    /// shardwal, writers inside the shards.
    Shardwal,
    /// shardwal, writers as tokio tasks through the client.
    ShardwalClient,
    /// Another log (`--peers`).
    Peer,
    /// A replicated cluster (`--raft`).
    Replicated,
}

/// One measured run.
pub struct RunResult {
    /// What ran, e.g. "shardwal 2x16 append_durable" or "okaywal 16 threads".
    pub label: String,
    /// Which kind of system ran.
    pub kind: RunKind,
    /// `(shards, writers per shard)` for runs with that shape (a peer with T threads in a
    /// shardwal comparison of S shards runs T = S × W); None for the device loops.
    pub geometry: Option<(u32, usize)>,
    /// Milliseconds from asking for the log to every shard open (shardwal runs).
    pub open_ms: Option<f64>,
    /// Microseconds the first durable commit took right after opening, slowest shard.
    pub first_commit_us: Option<f64>,
    /// Records the Raft leader's log made durable in the window (`--raft`: entries plus the
    /// store's own records), for records per fdatasync.
    pub leader_records: Option<u64>,
    /// Records made durable inside the measured window.
    pub ops: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// fdatasync calls (or syncs of the peer's own kind) during the window; 0 when unknown.
    pub fdatasyncs: u64,
    /// Batches written (flushes); 0 when unknown.
    pub flushes: u64,
    /// Appends that waited for a free flush buffer or a prepared segment.
    pub ring_full_waits: u64,
    /// Segment rotations.
    pub rotations: u64,
    /// Segments prepared ahead of need, and how many of them were recycled spares.
    pub segments_prepared: u64,
    /// Segments prepared from a spare (the rest were zero-filled).
    pub segments_recycled: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Commit latency of every durable record (or sync call), in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Process CPU time (user + system) during the run.
    pub cpu_seconds: f64,
    /// Whether shardwal's buffers were io_uring-registered (None for others).
    pub registered: Option<bool>,
    /// `(seconds since start, operations completed in that sample interval)`.
    pub timeline: Vec<(f64, u64)>,
    /// Consistent cuts per second a second process took from the shared header during the
    /// run (`--cut-reader`).
    pub cut_reads_per_sec: Option<f64>,
}

impl RunResult {
    /// An empty result for `label`, to fill in.
    pub fn new(label: impl Into<String>, kind: RunKind, seconds: f64) -> RunResult {
        RunResult {
            label: label.into(),
            kind,
            geometry: None,
            open_ms: None,
            first_commit_us: None,
            leader_records: None,
            ops: 0,
            bytes: 0,
            fdatasyncs: 0,
            flushes: 0,
            ring_full_waits: 0,
            rotations: 0,
            segments_prepared: 0,
            segments_recycled: 0,
            seconds,
            latency_ns: new_histogram(),
            cpu_seconds: 0.0,
            cut_reads_per_sec: None,
            registered: None,
            timeline: Vec::new(),
        }
    }

    /// Records per second over the window.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// Counts completed operations (from any thread, one relaxed atomic add each), draws a live
/// progress line on stderr while the run lasts (hidden when stderr is not a terminal), and
/// samples throughput every [`SAMPLE_INTERVAL`].
pub struct Meter {
    ops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<Vec<(f64, u64)>>>,
}

impl Meter {
    /// Starts metering a run called `label` that should last about `seconds`.
    pub fn start(label: &str, seconds: f64) -> Meter {
        Meter::start_with(label, seconds, Arc::new(AtomicU64::new(0)))
    }

    /// Like [`Meter::start`], counting with a counter the workers already hold (so they can
    /// be set up before the measured window starts).
    pub fn start_with(label: &str, seconds: f64, ops: Arc<AtomicU64>) -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (ops.clone(), stop.clone());
        let bar = indicatif::ProgressBar::new((seconds * 1000.0) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>34} [{bar:20}] {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        let sampler = std::thread::spawn(move || {
            let start = Instant::now();
            let mut timeline = Vec::new();
            let mut last = 0;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE_INTERVAL);
                let now = o.load(Ordering::Relaxed);
                let t = start.elapsed().as_secs_f64();
                timeline.push((t, now - last));
                last = now;
                bar.set_position((t * 1000.0) as u64);
                bar.set_message(format!(
                    "{:>10.0} ops/s so far, {:.1} s",
                    now as f64 / t.max(1e-9),
                    t
                ));
            }
            bar.finish_and_clear();
            timeline
        });
        Meter {
            ops,
            stop,
            sampler: Some(sampler),
        }
    }

    /// The counter to add completed operations to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.ops.clone()
    }

    /// Stops the meter and returns the throughput timeline.
    pub fn finish(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A run's headline figures, for `--json`.
#[derive(Serialize)]
pub struct RunSummary {
    pub label: String,
    pub kind: RunKind,
    /// `(shards, writers per shard)`, where the run has that shape.
    pub geometry: Option<(u32, usize)>,
    pub rounds: usize,
    pub appends_per_sec: f64,
    pub mb_per_sec: f64,
    pub fdatasyncs_per_sec: f64,
    pub records_per_flush: f64,
    pub records_per_fdatasync: f64,
    pub latency_us: LatencySummary,
    pub cpu_us_per_record: f64,
    pub ratio_to_device_loop: Option<f64>,
    /// Throughput as a fraction of the bare group-commit ceiling of the same geometry.
    pub x_ceiling: Option<f64>,
    /// Median milliseconds to open every shard (shardwal runs).
    pub open_ms: Option<f64>,
    /// Median microseconds of the first durable commit after opening (shardwal runs).
    pub first_commit_us: Option<f64>,
    pub cut_reads_per_sec: Option<f64>,
}

/// Commit latency percentiles in microseconds.
#[derive(Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// Payload size of each record: fixed, or drawn uniformly from an inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordSize {
    /// Every record has this many bytes.
    Fixed(usize),
    /// Each record has between `.0` and `.1` bytes (inclusive), uniformly.
    Range(usize, usize),
}

impl RecordSize {
    /// Parses `256` or `100..4096`.
    pub fn parse(s: &str) -> Result<RecordSize, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad record size {t:?}"))
        };
        let size = match s.split_once("..") {
            Some((a, b)) => RecordSize::Range(num(a)?, num(b.trim_start_matches('='))?),
            None => RecordSize::Fixed(num(s)?),
        };
        match size {
            RecordSize::Fixed(0) => Err("record size must be at least 1 byte".into()),
            RecordSize::Range(a, b) if a == 0 || a > b => {
                Err(format!("bad record size range {s:?}: need 1 <= min <= max"))
            }
            ok => Ok(ok),
        }
    }

    /// The largest size this can produce.
    pub fn max(&self) -> usize {
        match *self {
            RecordSize::Fixed(n) => n,
            RecordSize::Range(_, b) => b,
        }
    }

    /// A size for the next record.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> usize {
        match *self {
            RecordSize::Fixed(n) => n,
            RecordSize::Range(a, b) => rng.random_range(a..=b),
        }
    }
}

impl std::fmt::Display for RecordSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordSize::Fixed(n) => write!(f, "{n}"),
            RecordSize::Range(a, b) => write!(f, "{a}..{b}"),
        }
    }
}
