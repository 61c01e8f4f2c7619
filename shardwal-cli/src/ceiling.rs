//! The ceiling for a closed-loop durable append benchmark: a bare group-commit loop, run
//! with the same shards × writers as the shardwal run it is printed beside.
//!
//! Per executor (one per shard, placed like the shards), W tasks each copy a record into a
//! staging buffer, take a sequence number, wake the flusher and wait until `durable >= seq`.
//! The flusher, whenever nothing is in flight, takes the whole staging buffer, pads it to
//! 4 KiB, copies it into one aligned DMA buffer, writes it at the next 4 KiB offset of a
//! **pre-zeroed** 64 MiB file (wrapping), fdatasyncs, advances `durable` and wakes every
//! waiter at or below it. No framing, no checksums, no segments, no shared header: what is
//! left is the device's write + fdatasync round trip and the cost of waking the writers,
//! which is all that any log with group commit must pay.
//!
//! The loop's file is opened empty, so glommio's one IOPOLL probe per thread "succeeds"
//! and the executor busy-polls while its write is in flight (glommio's poll ring; see
//! `shardwal`'s `poll_write_completions`). That is the ceiling every `x ceiling` figure is
//! against. [`CeilingPlan::asleep`] runs the same loop with its writes on the main ring,
//! sleeping like a default shard, for comparison only.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use hdrhistogram::Histogram;

use crate::run::{Meter, RecordSize, RunKind, RunResult};
use crate::stats::{cpu_seconds, new_histogram};
use crate::AnyResult;

/// Size of each executor's pre-zeroed file; writes wrap around inside it.
const FILE_BYTES: u64 = 64 << 20;
/// The write alignment (the file system block).
const BLOCK_BYTES: usize = 4096;

/// What to run: the same geometry as the shardwal run it is compared with.
#[derive(Clone, Copy, Debug)]
pub struct CeilingPlan {
    /// Executors (as many as the run's shards).
    pub executors: u32,
    /// Writer tasks per executor.
    pub writers: usize,
    /// Records each writer appends before it waits (the bench's `--batch`).
    pub batch: usize,
    /// Payload size of each record.
    pub record_bytes: RecordSize,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// Pin executor i to CPU i (like the shards), or let them float.
    pub pinned: bool,
    /// Wait for writes asleep (main ring) instead of busy-polling (poll ring).
    pub asleep: bool,
}

/// The label of a ceiling run with `executors × writers`, each waiting per `batch` records.
pub fn label(executors: u32, writers: usize, batch: usize, asleep: bool) -> String {
    let base = match batch {
        1 => format!("ceiling {executors}x{writers} bare group commit"),
        n => format!("ceiling {executors}x{writers} bare group commit batch {n}"),
    };
    match asleep {
        true => format!("{base} asleep"),
        false => base,
    }
}

/// Runs the bare group-commit loop in `dir` and returns its measured run.
pub fn run(dir: &Path, plan: CeilingPlan) -> AnyResult<RunResult> {
    assert!(plan.executors > 0 && plan.writers > 0 && plan.batch > 0);
    std::fs::create_dir_all(dir)?;
    let label = label(plan.executors, plan.writers, plan.batch, plan.asleep);
    let counter = Arc::new(AtomicU64::new(0));
    // Every executor prepares its file, then all start at once with the meter.
    let barrier = Arc::new(Barrier::new(plan.executors as usize + 1));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut handles = Vec::new();
    for i in 0..plan.executors {
        let placement = match plan.pinned {
            true => glommio::Placement::Fixed(i as usize % cpus),
            false => glommio::Placement::Unbound,
        };
        let (path, barrier, counter) = (
            dir.join(format!("ceiling-{i}.dat")),
            barrier.clone(),
            counter.clone(),
        );
        let handle = glommio::LocalExecutorBuilder::new(placement)
            .io_memory(16 << 20)
            .spawn(move || async move {
                // Errors cross back to this thread as text (a boxed error is not Send).
                executor_body(&path, plan, &barrier, counter, i)
                    .await
                    .map_err(|e| e.to_string())
            })?;
        handles.push(handle);
    }
    barrier.wait();
    let meter = Meter::start_with(&label, plan.seconds, counter);
    let cpu0 = cpu_seconds();
    let mut r = RunResult::new(label, RunKind::Ceiling, plan.seconds);
    for h in handles {
        let outcome = h.join().map_err(|e| format!("ceiling executor: {e:?}"))??;
        r.ops += outcome.ops;
        r.bytes += outcome.bytes;
        r.fdatasyncs += outcome.fdatasyncs;
        r.latency_ns
            .add(&outcome.latency_ns)
            .map_err(|e| format!("{e:?}"))?;
    }
    r.flushes = r.fdatasyncs;
    r.cpu_seconds = cpu_seconds() - cpu0;
    r.timeline = meter.finish();
    std::fs::remove_dir_all(dir)?;
    Ok(r)
}

/// What one executor measured.
struct Outcome {
    ops: u64,
    bytes: u64,
    fdatasyncs: u64,
    latency_ns: Histogram<u64>,
}

/// The state the writers and the flusher of one executor share (one thread, no atomics).
#[derive(Default)]
struct Staging {
    /// Records appended since the flusher last took the buffer.
    bytes: RefCell<Vec<u8>>,
    /// Sequence number of the last record appended.
    appended: Cell<u64>,
    /// Every record up to this sequence number is durable.
    durable: Cell<u64>,
    /// Writers waiting for `durable` to move.
    waiters: RefCell<Vec<Waker>>,
    /// The flusher, when it waits for work.
    flusher: RefCell<Option<Waker>>,
    /// Writers still running.
    writers_left: Cell<usize>,
}

impl Staging {
    /// Appends one record; returns its sequence number and wakes the flusher.
    fn append(&self, record: &[u8]) -> u64 {
        self.bytes.borrow_mut().extend_from_slice(record);
        let seq = self.appended.get() + 1;
        self.appended.set(seq);
        if let Some(w) = self.flusher.borrow_mut().take() {
            w.wake();
        }
        seq
    }

    /// Resolves once `seq` is durable.
    async fn durable(&self, seq: u64) {
        poll_fn(|cx| {
            if self.durable.get() >= seq {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Resolves once there is something to flush (true) or every writer has left (false).
    async fn work(&self) -> bool {
        poll_fn(|cx| {
            if !self.bytes.borrow().is_empty() {
                return Poll::Ready(true);
            }
            if self.writers_left.get() == 0 {
                return Poll::Ready(false);
            }
            *self.flusher.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

async fn executor_body(
    path: &Path,
    plan: CeilingPlan,
    barrier: &Barrier,
    counter: Arc<AtomicU64>,
    index: u32,
) -> AnyResult<Outcome> {
    if plan.asleep {
        // A non-empty file first: the thread's IOPOLL probe then reads real data, fails,
        // and every later DmaFile of this thread uses the main ring.
        let probe = path.with_extension("probe");
        std::fs::write(&probe, [0xA5u8; BLOCK_BYTES])?;
        DmaFile::open(&probe).await?.close().await?;
        std::fs::remove_file(&probe)?;
    }
    let file = Rc::new(crate::baseline::zeroed_file(path, FILE_BYTES).await?);
    let staging = Rc::new(Staging::default());
    staging.writers_left.set(plan.writers);
    barrier.wait();
    let deadline = Instant::now() + Duration::from_secs_f64(plan.seconds);
    let latency_ns = Rc::new(RefCell::new(new_histogram()));
    let bytes = Rc::new(Cell::new(0u64));
    let writers: Vec<_> = (0..plan.writers)
        .map(|w| {
            let (staging, latency_ns, bytes, counter) = (
                staging.clone(),
                latency_ns.clone(),
                bytes.clone(),
                counter.clone(),
            );
            let seed = (index as u64) << 32 | w as u64;
            glommio::spawn_local(async move {
                writer(
                    &staging,
                    (plan.record_bytes, plan.batch),
                    seed,
                    deadline,
                    &latency_ns,
                    &bytes,
                    &counter,
                )
                .await;
                staging.writers_left.set(staging.writers_left.get() - 1);
                if let Some(f) = staging.flusher.borrow_mut().take() {
                    f.wake();
                }
            })
        })
        .collect();
    let fdatasyncs = flusher(&file, &staging).await?;
    for w in writers {
        w.await;
    }
    let ops = staging.durable.get();
    assert_eq!(ops, staging.appended.get(), "every record became durable");
    file.close_rc().await?;
    std::fs::remove_file(path)?;
    let latency_ns = latency_ns.borrow().clone();
    Ok(Outcome {
        ops,
        bytes: bytes.get(),
        fdatasyncs,
        latency_ns,
    })
}

/// One closed-loop writer: append `batch` records, wait until the last is durable, repeat
/// until the deadline.
async fn writer(
    staging: &Staging,
    (record_bytes, batch): (RecordSize, usize),
    seed: u64,
    deadline: Instant,
    latency_ns: &RefCell<Histogram<u64>>,
    bytes: &Cell<u64>,
    counter: &AtomicU64,
) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let payload = vec![seed as u8 | 1; record_bytes.max()];
    loop {
        let start = Instant::now();
        if start >= deadline {
            return;
        }
        let mut last = 0;
        for _ in 0..batch {
            let len = record_bytes.sample(&mut rng);
            last = staging.append(&payload[..len]);
            bytes.set(bytes.get() + len as u64);
        }
        staging.durable(last).await;
        latency_ns
            .borrow_mut()
            .saturating_record(start.elapsed().as_nanos() as u64);
        counter.fetch_add(batch as u64, Ordering::Relaxed);
    }
}

/// The flusher: take everything staged, pad, write, fdatasync, wake. Returns fdatasyncs.
async fn flusher(file: &DmaFile, staging: &Staging) -> AnyResult<u64> {
    let (mut pos, mut fdatasyncs) = (0u64, 0u64);
    while staging.work().await {
        let upto = staging.appended.get();
        let taken = std::mem::take(&mut *staging.bytes.borrow_mut());
        let padded = taken.len().next_multiple_of(BLOCK_BYTES);
        assert!(padded as u64 <= FILE_BYTES, "one batch fits the file");
        let mut buf = file.alloc_dma_buffer(padded);
        buf.as_bytes_mut()[..taken.len()].copy_from_slice(&taken);
        buf.as_bytes_mut()[taken.len()..].fill(0);
        if pos + padded as u64 > FILE_BYTES {
            pos = 0;
        }
        file.write_at(buf, pos).await?;
        file.fdatasync().await?;
        fdatasyncs += 1;
        pos += padded as u64;
        staging.durable.set(upto);
        for w in staging.waiters.borrow_mut().drain(..) {
            w.wake();
        }
        // Give the woken writers a turn before the next batch is taken.
        glommio::executor().yield_now().await;
    }
    Ok(fdatasyncs)
}
