//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;

use shardwal::{CpuPlacement, WalConfig, WalConfigBuilder};

/// A small geometry so that tests rotate segments and fill buffers quickly.
pub fn small(dir: &std::path::Path, shards: u32) -> WalConfigBuilder {
    WalConfig::builder(dir)
        .shard_count(shards)
        .placement(CpuPlacement::Unbound)
        .flush_buffer_bytes(64 << 10)
        .flush_buffer_count(4)
        .segment_bytes(256 << 10)
        .max_record_bytes(16 << 10)
}

/// Runs `f` on a fresh glommio executor on this thread.
pub fn run<F, Fut, T>(config: &WalConfig, f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(config.io_memory_bytes())
        .make()
        .expect("glommio executor");
    ex.run(f())
}

/// A tokio runtime with two worker threads (the tests that drive a `Client` from tokio).
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A payload that encodes its shard and sequence number, of a length that varies.
pub fn payload(shard: u32, seq: u64) -> Vec<u8> {
    let len = 1 + ((seq * 7919 + shard as u64 * 31) % 700) as usize;
    let mut v = Vec::with_capacity(len);
    let tag = format!("s{shard}-n{seq}:");
    v.extend(tag.bytes().cycle().take(len));
    v
}

// ---------------------------------------------------------------------------------------
// On-disk inspection helpers (read only, no executor needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shardwal::format::{decode, segment_seed, Frame, FRAME_HEADER_BYTES};
use shardwal::format::{list_segments, shard_dir, SegmentHeader, BLOCK_BYTES};
use shardwal::{LogReader, Lsn, Shard, ShardId};

/// Segment files of shard `shard` under the log directory `dir`, oldest first.
pub fn seg_files(dir: &Path, shard: u32) -> Vec<PathBuf> {
    list_segments(&shard_dir(dir, ShardId(shard)))
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Segment files that hold a header (were written to), oldest first.
pub fn used_seg_files(dir: &Path, shard: u32) -> Vec<PathBuf> {
    seg_files(dir, shard)
        .into_iter()
        .filter(|p| SegmentHeader::decode(&std::fs::read(p).unwrap()).is_ok())
        .collect()
}

/// What a frame walk found at one position of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameAt {
    /// A marker vouching for `durable`.
    Marker { offset: usize, durable: u64 },
    /// A record frame: `offset` of its header, `len` payload bytes, `end` past its padding.
    Record {
        offset: usize,
        lsn: u64,
        len: usize,
        end: usize,
    },
}

/// Walks the valid frames of one segment file in order, like recovery does, stopping at the
/// first zero block or invalid frame.
pub fn frames(path: &Path) -> Vec<FrameAt> {
    let bytes = std::fs::read(path).unwrap();
    let header = SegmentHeader::decode(&bytes).expect("segment header");
    let seed = segment_seed(header.shard.0, header.generation);
    let mut out = Vec::new();
    let mut pos = BLOCK_BYTES;
    loop {
        let boundary = pos.next_multiple_of(BLOCK_BYTES);
        if pos != boundary
            && boundary - pos < FRAME_HEADER_BYTES
            && boundary <= bytes.len()
            && bytes[pos..boundary].iter().all(|&b| b == 0)
        {
            pos = boundary; // short padding at the end of a write
            continue;
        }
        if pos + FRAME_HEADER_BYTES > bytes.len() {
            break;
        }
        match decode(&bytes[pos..], seed) {
            Frame::Marker { durable_lsn } => {
                out.push(FrameAt::Marker {
                    offset: pos,
                    durable: durable_lsn.0,
                });
                pos += FRAME_HEADER_BYTES;
            }
            Frame::Record {
                lsn,
                payload,
                frame_bytes,
            } => {
                out.push(FrameAt::Record {
                    offset: pos,
                    lsn: lsn.0,
                    len: payload.len(),
                    end: pos + frame_bytes,
                });
                pos += frame_bytes;
            }
            Frame::Zero if !pos.is_multiple_of(BLOCK_BYTES) => {
                pos = pos.next_multiple_of(BLOCK_BYTES)
            }
            Frame::Zero | Frame::Invalid(_) => break,
        }
    }
    out
}

/// The record frames of one segment, as `(offset, lsn, payload_len, end)`.
pub fn record_frames(path: &Path) -> Vec<(usize, u64, usize, usize)> {
    frames(path)
        .into_iter()
        .filter_map(|f| match f {
            FrameAt::Record {
                offset,
                lsn,
                len,
                end,
            } => Some((offset, lsn, len, end)),
            FrameAt::Marker { .. } => None,
        })
        .collect()
}

/// Every record of a closed log's shard, from LSN 1, through [`LogReader::open`].
pub fn read_all(dir: &Path, shard: u32) -> Vec<(Lsn, Vec<u8>)> {
    read_from(dir, shard, Lsn(1))
}

/// Every record of a closed log's shard from `from`, through [`LogReader::open`].
pub fn read_from(dir: &Path, shard: u32, from: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    LogReader::open(dir, ShardId(shard), from)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.lsn, r.payload.to_vec())
        })
        .collect()
}

/// Every durable record of an open shard from LSN 1.
pub fn read_shard(shard: &Shard) -> Vec<(Lsn, Vec<u8>)> {
    shard
        .reader(Lsn(1))
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.lsn, r.payload.to_vec())
        })
        .collect()
}

/// Asserts that `got` holds exactly `expected[i]` at LSN `i + 1`, for every `i`.
pub fn assert_log_eq(got: &[(Lsn, Vec<u8>)], expected: &[Vec<u8>], what: &str) {
    for (i, (lsn, p)) in got.iter().enumerate() {
        assert_eq!(
            *lsn,
            Lsn(i as u64 + 1),
            "{what}: LSNs must be contiguous from 1"
        );
        assert!(
            i < expected.len(),
            "{what}: extra record at lsn {lsn} ({} expected)",
            expected.len()
        );
        assert_eq!(p, &expected[i], "{what}: payload of lsn {lsn} differs");
    }
    assert_eq!(got.len(), expected.len(), "{what}: record count");
}

/// Every file under `dir` (recursively) with its bytes.
/// Every file under `dir` with its bytes, except the shared header (`wal.shm`): that is
/// derived state which every open rewrites (owner pid, lease count, positions).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.file_name() != Some(std::ffi::OsStr::new(shardwal::shm::HEADER_FILE_NAME)) {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Simulates a crash of the process that owns `shard`: the handle is leaked so its drop
/// does not ask the flusher to close (no final marker, nothing more is sealed), and the
/// executor is expected to be dropped right after (which kills the detached flusher).
pub fn crash(shard: Shard) {
    shardwal::shm::simulate_process_death(shard.config().dir());
    std::mem::forget(shard);
}

/// Appends `records` durable 1 KiB records to shard `s` (payload 0, n), enough to fill
/// several segments of the small geometry.
pub async fn fill_segments(s: &Shard, records: u64) {
    for n in 0..records {
        let mut p = payload(0, n);
        p.resize(1024, b'.');
        s.append_durable(&p).await.unwrap();
    }
}

/// Runs `tasks` tasks on this executor, task `t` appending `payload(t, i)` for `i` in
/// `0..records_each` with `append_durable`, and waits for all of them.
pub async fn durable_writers(s: &Shard, tasks: u32, records_each: u64) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let s = s.clone();
            glommio::spawn_local(async move {
                for i in 0..records_each {
                    s.append_durable(&payload(t, i)).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
}
