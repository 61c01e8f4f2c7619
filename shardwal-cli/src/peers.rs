//! Other durable logs measured the same way as shardwal (`shardwal bench --peers`).
//!
//! Every peer runs the same closed loop: `threads` OS threads, each appending one record at
//! a time and waiting until that record is durable before appending the next. The peers
//! group concurrent commits behind one sync in their own ways (okaywal's leader/follower
//! commit, raft-engine's write groups, RocksDB's write-thread leader), so throughput with
//! many threads shows how well each one batches.
//!
//! Only the log is exercised: records are appended and never read back, checkpointed or
//! purged during the run. Each peer keeps its own defaults except where noted on
//! [`Peer`]. Opening the log and any preparation (raft-engine's prefill of recycled files)
//! happens before the measured window starts.

use std::error::Error;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::run::{Meter, RecordSize, RunKind, RunResult};
use crate::stats::{cpu_seconds, SharedHistogram};
use crate::AnyResult;

/// An error that can cross from a writer thread back to the caller.
type PeerError = Box<dyn Error + Send + Sync>;

/// One mebibyte, in bytes.
const MIB: u64 = 1 << 20;

/// A durable-append implementation other than shardwal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `okaywal` 0.3.1 with its default configuration (1 MiB preallocated segments,
    /// checkpoint after 768 KiB, 16 KiB buffers). Each record is one entry of one chunk:
    /// `begin_entry`, `write_chunk`, `commit`. The checkpointer does nothing, so segments
    /// are recycled as soon as okaywal checkpoints them.
    Okaywal,
    /// `raft-engine` 0.4.2 with its default configuration (format V2, 128 MiB files; log
    /// recycling is on but nothing is purged during a run, so every file is new and grows
    /// by `fallocate` in 2 MiB steps). Each record is one `LogBatch` holding one `put`,
    /// written with `sync = true`; each thread is its own raft group and overwrites one key,
    /// so the in-memory index stays the same size however long the run lasts.
    RaftEngine,
    /// `raft-engine` as [`Peer::RaftEngine`], but with `enable_log_recycle`,
    /// `prefill_for_recycle` and format V2, and files sized from a generous estimate of the
    /// run's volume (8 to 64 MiB each, at most 1 GiB prefilled): zero-filled files are
    /// prepared at open and synced, and before the window starts the log is rotated past
    /// its first file (which raft-engine always creates new), so every measured record lands
    /// in a prefilled file.
    RaftEngineRecycled,
    /// RocksDB (`rocksdb` 0.25.0) with default options; each record is one `put` with
    /// `WriteOptions::set_sync(true)`, each thread overwriting its own key.
    #[cfg(feature = "peers-rocksdb")]
    RocksDb,
}

impl Peer {
    /// Every peer compiled into this binary, in the order they are reported.
    pub fn all() -> Vec<Peer> {
        vec![
            Peer::Okaywal,
            Peer::RaftEngine,
            Peer::RaftEngineRecycled,
            #[cfg(feature = "peers-rocksdb")]
            Peer::RocksDb,
        ]
    }

    /// The peer's name in labels and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Peer::Okaywal => "okaywal",
            Peer::RaftEngine => "raft-engine",
            Peer::RaftEngineRecycled => "raft-engine (prefilled recycled)",
            #[cfg(feature = "peers-rocksdb")]
            Peer::RocksDb => "rocksdb (sync writes)",
        }
    }
}

/// Runs `peer` in `dir` (a fresh, empty directory; the caller removes it afterwards):
/// `threads` OS threads each loop durable appends of one record, with payload sizes drawn
/// from `record_bytes`, for a window of `seconds` seconds. Every append is durable before
/// the thread starts the next.
///
/// Only records whose append completed inside the window count (the append each thread has
/// in flight when the window closes is finished but not counted). The result has those
/// records' count, payload bytes and commit latencies (ns), the process CPU time spent from
/// the start of the window until every thread stopped, and the meter's timeline;
/// `fdatasyncs` and `flushes` are 0 (unknown). Opening the log happens before the window and
/// closing it after.
pub fn run(
    peer: &Peer,
    dir: &Path,
    threads: usize,
    record_bytes: RecordSize,
    seconds: f64,
) -> AnyResult<RunResult> {
    let label = format!(
        "{} {threads} {}",
        peer.name(),
        if threads == 1 { "thread" } else { "threads" }
    );
    match peer {
        Peer::Okaywal => run_okaywal(&label, dir, threads, record_bytes, seconds),
        Peer::RaftEngine => {
            let cfg = raft_engine::Config {
                dir: dir_string(dir)?,
                ..raft_engine::Config::default()
            };
            run_raft_engine(&label, cfg, threads, record_bytes, seconds)
        }
        Peer::RaftEngineRecycled => {
            let (target, prefill) = recycled_sizes(threads, record_bytes, seconds);
            let cfg = raft_engine::Config {
                dir: dir_string(dir)?,
                format_version: raft_engine::Version::V2,
                enable_log_recycle: true,
                prefill_for_recycle: true,
                target_file_size: raft_engine::ReadableSize(target),
                prefill_limit: Some(raft_engine::ReadableSize(prefill)),
                ..raft_engine::Config::default()
            };
            run_raft_engine(&label, cfg, threads, record_bytes, seconds)
        }
        #[cfg(feature = "peers-rocksdb")]
        Peer::RocksDb => run_rocksdb(&label, dir, threads, record_bytes, seconds),
    }
}

/// An okaywal log manager for a log that is only appended to: nothing to recover, and
/// checkpointing has nothing to apply.
#[derive(Debug)]
struct AppendOnly;

impl okaywal::LogManager for AppendOnly {
    fn recover(&mut self, _entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: okaywal::EntryId,
        _checkpointed_entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn run_okaywal(
    label: &str,
    dir: &Path,
    threads: usize,
    record_bytes: RecordSize,
    seconds: f64,
) -> AnyResult<RunResult> {
    let wal = okaywal::WriteAheadLog::recover(dir, AppendOnly)?;
    let result = drive(label, threads, record_bytes, seconds, |_thread| {
        let wal = &wal;
        Ok(move |payload: &[u8]| -> Result<(), PeerError> {
            let mut entry = wal.begin_entry()?;
            entry.write_chunk(payload)?;
            entry.commit()?;
            Ok(())
        })
    });
    wal.shutdown()?;
    result
}

/// The raft group that owns the filler written while preparing a recycled run (writer
/// threads use groups `1..=threads`).
const FILLER_REGION: u64 = u64::MAX;

fn run_raft_engine(
    label: &str,
    cfg: raft_engine::Config,
    threads: usize,
    record_bytes: RecordSize,
    seconds: f64,
) -> AnyResult<RunResult> {
    let dir = cfg.dir.clone();
    let recycled = cfg.prefill_for_recycle;
    let target_file_size = cfg.target_file_size.0;
    let engine = raft_engine::Engine::open(cfg)?;
    if recycled {
        rotate_past_first_file(&engine, Path::new(&dir), target_file_size)?;
        sync_directory(Path::new(&dir))?;
    }
    drive(label, threads, record_bytes, seconds, |thread| {
        let engine = &engine;
        let region = thread as u64 + 1;
        let mut batch = raft_engine::LogBatch::default();
        Ok(move |payload: &[u8]| -> Result<(), PeerError> {
            batch.put(region, b"record".to_vec(), payload.to_vec())?;
            engine.write(&mut batch, true)?;
            Ok(())
        })
    })
}

/// Sizes for a prefilled recycled raft-engine run: `(target_file_size, prefill_limit)` in
/// bytes.
///
/// The run's volume is estimated generously: 10,000 records/s per thread but at most
/// 100,000 records/s, each the mean record size plus 64 bytes of raft-engine framing, and at
/// most 256 MiB/s. Files hold that volume but are between 8 and 64 MiB, and enough of them
/// are prefilled for the volume plus one spare file, within 1 GiB. Should a run outgrow
/// them, raft-engine simply creates new files.
fn recycled_sizes(threads: usize, record_bytes: RecordSize, seconds: f64) -> (u64, u64) {
    let mean_record = match record_bytes {
        RecordSize::Fixed(n) => n as f64,
        RecordSize::Range(a, b) => (a as f64 + b as f64) / 2.0,
    };
    let records_per_sec = (10_000.0 * threads as f64).min(100_000.0);
    let bytes_per_sec = (records_per_sec * (mean_record + 64.0)).min(256.0 * MIB as f64);
    let volume = (bytes_per_sec * seconds.max(0.0)) as u64;
    let target = volume.clamp(8 * MIB, 64 * MIB).div_ceil(MIB) * MIB;
    let files = (volume.div_ceil(target) + 1).clamp(1, (1024 * MIB / target).max(1));
    // raft-engine prefills `prefill_limit / target_file_size * 3 / 2` files.
    let limit = (files * 2).div_ceil(3) * target;
    (target, limit)
}

/// Appends incompressible filler (unsynced, in 1 MiB batches) until raft-engine rotates
/// from its first log file, which it creates new rather than recycled, into a prefilled
/// one; then makes one synced write so the rotation is complete before the window starts.
fn rotate_past_first_file(
    engine: &raft_engine::Engine,
    dir: &Path,
    target_file_size: u64,
) -> AnyResult<()> {
    let mut filler = vec![0u8; MIB as usize];
    SmallRng::seed_from_u64(0x5eed).fill_bytes(&mut filler);
    let mut batch = raft_engine::LogBatch::default();
    let attempts = target_file_size.div_ceil(MIB) + 4;
    for _ in 0..attempts {
        if active_log_files(dir)? >= 2 {
            batch.put(FILLER_REGION, b"filler".to_vec(), vec![0])?;
            engine.write(&mut batch, true)?;
            return Ok(());
        }
        batch.put(FILLER_REGION, b"filler".to_vec(), filler.clone())?;
        engine.write(&mut batch, false)?;
    }
    Err("raft-engine did not rotate into a recycled file while preparing the run".into())
}

/// The number of append-queue log files (not reserved ones) in raft-engine's `dir`.
fn active_log_files(dir: &Path) -> AnyResult<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name().to_string_lossy().ends_with(".raftlog") {
            n += 1;
        }
    }
    Ok(n)
}

/// Makes every file in `dir`, and `dir` itself, durable: raft-engine writes its prefilled
/// files through the page cache without syncing them, and the measured window should not
/// pay for writing them back.
fn sync_directory(dir: &Path) -> AnyResult<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(feature = "peers-rocksdb")]
fn run_rocksdb(
    label: &str,
    dir: &Path,
    threads: usize,
    record_bytes: RecordSize,
    seconds: f64,
) -> AnyResult<RunResult> {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = rocksdb::DB::open(&opts, dir)?;
    drive(label, threads, record_bytes, seconds, |thread| {
        let db = &db;
        let key = (thread as u64).to_be_bytes();
        let mut write = rocksdb::WriteOptions::default();
        write.set_sync(true);
        Ok(move |payload: &[u8]| -> Result<(), PeerError> {
            db.put_opt(key, payload, &write)?;
            Ok(())
        })
    })
}

fn dir_string(dir: &Path) -> AnyResult<String> {
    dir.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("directory {} is not valid UTF-8", dir.display()).into())
}

/// What the writer threads need once the window opens.
struct Window {
    /// When the window closes.
    deadline: Instant,
    /// The meter's count of completed records.
    completed: Arc<AtomicU64>,
}

/// What one writer thread did inside the window (its latencies went to the run's
/// [`SharedHistogram`]).
struct ThreadOutcome {
    /// Payload bytes of the counted records.
    bytes: u64,
}

/// Runs the closed loop: `threads` scoped threads each build their appender with
/// `make_appender(thread index)`, wait until all are ready, then call it once per record
/// until the `seconds`-second window closes. The meter and the clock start only once every
/// thread is ready.
fn drive<F, A>(
    label: &str,
    threads: usize,
    record_bytes: RecordSize,
    seconds: f64,
    make_appender: F,
) -> AnyResult<RunResult>
where
    F: Fn(usize) -> Result<A, PeerError> + Sync,
    A: FnMut(&[u8]) -> Result<(), PeerError>,
{
    if threads == 0 {
        return Err("a peer run needs at least one thread".into());
    }
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("bad run length {seconds} s").into());
    }
    let ready = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    let window: OnceLock<Window> = OnceLock::new();
    let setup_failed = AtomicBool::new(false);
    let latency_ns = SharedHistogram::new();

    let (outcomes, cpu, timeline) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (ready, go, window) = (&ready, &go, &window);
                let (setup_failed, make_appender) = (&setup_failed, &make_appender);
                let mut latencies_ns = latency_ns.writer();
                scope.spawn(move || -> Result<ThreadOutcome, PeerError> {
                    let mut rng = SmallRng::seed_from_u64(thread as u64 + 1);
                    let mut payload = vec![0u8; record_bytes.max()];
                    rng.fill_bytes(&mut payload);
                    let appender = make_appender(thread);
                    if appender.is_err() {
                        setup_failed.store(true, Ordering::Relaxed);
                    }
                    ready.wait();
                    go.wait();
                    let mut append = appender?;
                    let window = window.get().ok_or("window not set")?;
                    let mut bytes = 0u64;
                    loop {
                        let len = record_bytes.sample(&mut rng);
                        let started = Instant::now();
                        if started >= window.deadline {
                            break;
                        }
                        append(&payload[..len])?;
                        let done = Instant::now();
                        if done > window.deadline {
                            break;
                        }
                        let ns = done.duration_since(started).as_nanos();
                        latencies_ns.record(u64::try_from(ns).unwrap_or(u64::MAX));
                        bytes += len as u64;
                        window.completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ThreadOutcome { bytes })
                })
            })
            .collect();

        ready.wait();
        let meter = Meter::start(label, seconds);
        let cpu_before = cpu_seconds();
        let start = Instant::now();
        let deadline = if setup_failed.load(Ordering::Relaxed) {
            start
        } else {
            start + Duration::from_secs_f64(seconds)
        };
        // Only this thread sets the window, once, so this cannot fail.
        let _ = window.set(Window {
            deadline,
            completed: meter.counter(),
        });
        go.wait();
        let outcomes: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".into()))
            })
            .collect();
        let cpu = cpu_seconds() - cpu_before;
        (outcomes, cpu, meter.finish())
    });

    let mut result = RunResult::new(label, RunKind::Peer, seconds);
    for outcome in outcomes {
        let outcome = outcome.map_err(|e| -> Box<dyn Error> { e })?;
        result.bytes += outcome.bytes;
    }
    // Every writer's samples were folded when its thread ended.
    result.latency_ns = latency_ns.snapshot();
    result.ops = result.latency_ns.len();
    result.cpu_seconds = cpu;
    result.timeline = timeline;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_sizes_cover_the_estimated_volume() {
        for (threads, size, seconds) in [
            (1, RecordSize::Fixed(256), 2.0),
            (16, RecordSize::Fixed(256), 3.0),
            (256, RecordSize::Range(100, 65536), 10.0),
            (4, RecordSize::Fixed(1 << 20), 30.0),
        ] {
            let (target, limit) = recycled_sizes(threads, size, seconds);
            assert!((8 * MIB..=64 * MIB).contains(&target));
            assert_eq!(target % MIB, 0);
            let prefilled = limit / target * 3 / 2;
            assert!(
                prefilled >= 2,
                "{threads} {size} {seconds}: {prefilled} files"
            );
            assert!(prefilled * target <= 1536 * MIB);
        }
    }

    #[test]
    fn every_peer_appends_durably() {
        for peer in Peer::all() {
            let dir = tempfile::tempdir().expect("tempdir");
            let result = run(&peer, dir.path(), 2, RecordSize::Range(1, 300), 0.3)
                .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
            assert_eq!(result.label, format!("{} 2 threads", peer.name()));
            assert!(result.ops > 0, "{}: no records", peer.name());
            assert_eq!(result.latency_ns.len(), result.ops);
            assert!(result.bytes >= result.ops && result.bytes <= 300 * result.ops);
            assert_eq!(result.seconds, 0.3);
        }
    }
}
