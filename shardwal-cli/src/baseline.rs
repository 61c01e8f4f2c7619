//! The device's own limits, measured on the same directory and file kind as the log: a bare
//! 4 KiB write + fdatasync loop on a pre-zeroed file (the floor for one durable writer), and
//! sequential 1 MiB O_DIRECT writes with 4 in flight (the ceiling for bulk bandwidth).

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use glommio::io::{DmaFile, OpenOptions};

use crate::run::{Meter, RunKind, RunResult};
use crate::stats::cpu_seconds;
use crate::AnyResult;

/// Size of the pre-zeroed file both loops write into.
const FILE_BYTES: u64 = 128 << 20;
/// Label of the fdatasync loop (reports compare shardwal's appends/s with it).
pub const SYNC_LOOP: &str = "device 4K write+fdatasync";
/// Label of the bandwidth test (reports compare shardwal's MB/s with it).
pub const BANDWIDTH: &str = "device seq 1M O_DIRECT x4";

/// Creates `path` and writes `file_bytes` of zeros into it (1 MiB at a time), then
/// fdatasyncs: later writes overwrite really-written blocks, the fastest kind.
pub(crate) async fn zeroed_file(path: &Path, file_bytes: u64) -> AnyResult<DmaFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await?;
    let mut zeros = file.alloc_dma_buffer(1 << 20);
    zeros.as_bytes_mut().fill(0);
    let zeros = Rc::new(zeros);
    let mut pos = 0;
    while pos < file_bytes {
        file.write_rc_at(zeros.clone(), pos).await?;
        pos += 1 << 20;
    }
    file.fdatasync().await?;
    Ok(file)
}

fn executor() -> AnyResult<glommio::LocalExecutor> {
    Ok(
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(16 << 20)
            .make()?,
    )
}

/// 4 KiB O_DIRECT writes, each followed by fdatasync, for `seconds`.
pub fn sync_loop(dir: &Path, seconds: f64) -> AnyResult<RunResult> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("baseline.dat");
    let result = executor()?.run(async move {
        let file = zeroed_file(&path, FILE_BYTES).await?;
        let mut block = file.alloc_dma_buffer(4096);
        block.as_bytes_mut().fill(0x5A);
        let block = Rc::new(block);
        let mut r = RunResult::new(SYNC_LOOP, RunKind::Device, seconds);
        let meter = Meter::start(SYNC_LOOP, seconds);
        let counter = meter.counter();
        let cpu0 = cpu_seconds();
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut pos = 0u64;
        loop {
            let t = Instant::now();
            if t >= deadline {
                break;
            }
            file.write_rc_at(block.clone(), pos).await?;
            file.fdatasync().await?;
            r.latency_ns
                .saturating_record(t.elapsed().as_nanos() as u64);
            r.ops += 1;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            pos = (pos + 4096) % FILE_BYTES;
        }
        r.cpu_seconds = cpu_seconds() - cpu0;
        r.timeline = meter.finish();
        r.bytes = r.ops * 4096;
        r.fdatasyncs = r.ops;
        r.flushes = r.ops;
        file.close().await?;
        AnyResult::Ok(r)
    })?;
    std::fs::remove_dir_all(dir)?;
    Ok(result)
}

/// Sequential 1 MiB O_DIRECT writes, 4 in flight, over a pre-zeroed file, for `seconds`,
/// with one fdatasync at the end inside the window. `ops` counts MiB written.
pub fn bandwidth(dir: &Path, seconds: f64) -> AnyResult<RunResult> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("bandwidth.dat");
    let result = executor()?.run(async move {
        let file = Rc::new(zeroed_file(&path, FILE_BYTES).await?);
        let mut chunk = file.alloc_dma_buffer(1 << 20);
        chunk.as_bytes_mut().fill(0xA5);
        let chunk = Rc::new(chunk);
        let mut r = RunResult::new(BANDWIDTH, RunKind::Device, seconds);
        let meter = Meter::start(BANDWIDTH, seconds);
        let counter = meter.counter();
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(seconds);
        let mut in_flight = FuturesUnordered::new();
        let mut pos = 0u64;
        loop {
            while in_flight.len() < 4 && Instant::now() < deadline {
                let (f, c) = (file.clone(), chunk.clone());
                let at = pos;
                in_flight.push(async move { f.write_rc_at(c, at).await });
                pos = (pos + (1 << 20)) % FILE_BYTES;
            }
            match in_flight.next().await {
                Some(done) => {
                    done?;
                    r.ops += 1;
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None => break,
            }
        }
        file.fdatasync().await?;
        r.seconds = start.elapsed().as_secs_f64();
        r.bytes = r.ops << 20;
        r.fdatasyncs = 1;
        r.flushes = r.ops;
        r.cpu_seconds = cpu_seconds() - cpu0;
        r.timeline = meter.finish();
        AnyResult::Ok(r)
    })?;
    std::fs::remove_dir_all(dir)?;
    Ok(result)
}
