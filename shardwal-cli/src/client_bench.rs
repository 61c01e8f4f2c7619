//! `shardwal bench --via client`: the same writers as tokio tasks on another runtime, each
//! awaiting `Client::append_durable`, so the cost of crossing threads shows beside the
//! in-shard run of the same configuration (`--via shard,client` runs both, interleaved, and
//! prints the client/in-shard throughput ratio).
//!
//! Writer `t` of `S × W` writes to shard `t % S`, so every shard gets W writers, as in the
//! in-shard run. The tokio runtime has one worker thread per shard, sharing the CPUs with the
//! shards, as a service on the same machine would.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardwal::{ShardId, Wal, WalConfig};

use crate::run::{Meter, RecordSize, RunKind, RunResult};
use crate::stats::{cpu_seconds, LatencySamples, SharedHistogram};
use crate::AnyResult;

/// What one client run needs to know.
pub struct ClientPlan<'a> {
    /// The log's configuration (directory, shard count, durability, ...).
    pub config: WalConfig,
    /// Writer tasks per shard.
    pub writers_per_shard: usize,
    /// Records per request: 1 = `append_durable`, more = `append_batch_durable`.
    pub batch: usize,
    /// Payload size of each record.
    pub record_bytes: RecordSize,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// The run's label in the report.
    pub label: &'a str,
}

/// Runs `S × W` tokio tasks looping `append_durable` through the client for `plan.seconds`.
pub fn run(plan: ClientPlan<'_>, dir: &Path) -> AnyResult<RunResult> {
    debug_assert_eq!(plan.config.dir(), dir);
    let shards = plan.config.shard_count();
    let wal = Wal::start(plan.config)?;
    let client = wal.client();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shards as usize)
        .enable_time()
        .build()?;
    let latency_ns = SharedHistogram::new();
    let writers = plan.writers_per_shard * shards as usize;
    let meter = Meter::start(plan.label, plan.seconds);
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let deadline = start + Duration::from_secs_f64(plan.seconds);
    let outcome: AnyResult<u64> = runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|t| {
                let writer = Writer {
                    client: client.clone(),
                    shard: ShardId(t as u32 % shards),
                    record_bytes: plan.record_bytes,
                    batch: plan.batch,
                    seed: t as u64,
                    deadline,
                    counter: meter.counter(),
                    latency_ns: latency_ns.writer(),
                };
                tokio::spawn(writer.run())
            })
            .collect();
        let mut bytes = 0;
        for task in tasks {
            bytes += task.await??;
        }
        Ok(bytes)
    });
    let cpu = cpu_seconds() - cpu0;
    let timeline = meter.finish();
    let close = wal.close();
    let bytes = outcome?;
    close?;
    let mut r = RunResult::new(plan.label, RunKind::ShardwalClient, plan.seconds);
    // Every task has ended, so its samples were folded when its writer dropped.
    r.latency_ns = latency_ns.snapshot();
    // One latency sample per request of `batch` records.
    r.ops = r.latency_ns.len() * plan.batch as u64;
    r.bytes = bytes;
    r.cpu_seconds = cpu;
    r.timeline = timeline;
    Ok(r)
}

/// One tokio writer task.
struct Writer {
    client: shardwal::Client,
    shard: ShardId,
    record_bytes: RecordSize,
    batch: usize,
    seed: u64,
    deadline: Instant,
    counter: Arc<AtomicU64>,
    latency_ns: LatencySamples,
}

impl Writer {
    /// Appends durably until the deadline; returns the payload bytes made durable.
    async fn run(mut self) -> Result<u64, shardwal::Error> {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let payload = bytes::Bytes::from(vec![self.seed as u8 | 1; self.record_bytes.max()]);
        let mut bytes = 0u64;
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            let mut record = || payload.slice(..self.record_bytes.sample(&mut rng));
            let batch_bytes = if self.batch == 1 {
                // A single append: no batch vector, as a service would send it.
                let one = record();
                let len = one.len();
                self.client.append_durable(self.shard, one).await?;
                len
            } else {
                let records: Vec<bytes::Bytes> = (0..self.batch).map(|_| record()).collect();
                let len = records.iter().map(|r| r.len()).sum();
                self.client
                    .append_batch_durable(self.shard, records)
                    .await?;
                len
            };
            self.latency_ns.record(now.elapsed().as_nanos() as u64);
            bytes += batch_bytes as u64;
            self.counter.fetch_add(self.batch as u64, Ordering::Relaxed);
        }
        Ok(bytes)
    }
}
