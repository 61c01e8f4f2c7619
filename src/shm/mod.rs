//! The shared-memory header: consistent cuts across shards, reader pins, the writer lease.
//!
//! Every log directory holds one header file, `wal.shm`, mapped `MAP_SHARED` by each shard
//! of the writing process and by any process that wants to look ([`HeaderView`]):
//!
//! * **Positions.** After every group commit a shard publishes its durable LSN (with its
//!   lowest stored LSN and active segment) into its own 64-byte block under a seqlock, from
//!   its own core, without a lock: about ten plain stores. [`HeaderView::cut`] reads one
//!   [`Cut`] from them that is never torn and never ahead of what is durable, in this
//!   process or another one, even one that can only map the file read-only.
//! * **Snapshots.** [`HeaderView::snapshot`] pins a cut: until the [`Snapshot`] is dropped (or
//!   its process dies), truncation keeps every segment it needs, and
//!   [`Snapshot::reader`] reads each shard up to the cut: a consistent cross-shard read.
//! * **The writer lease.** One process at a time owns a log directory for writing: it holds
//!   an OFD lock on the header file through an `O_CLOEXEC` descriptor. A second writer gets
//!   [`Error::LogLocked`] naming the owner's pid; the kernel drops the lock the moment the
//!   owner dies, even by SIGKILL, so the next open succeeds at once.
//! * **Reconcile.** The header is derived state. When a writer opens the log it rebuilds a
//!   header that is damaged, of another layout or byte order or geometry, or from a previous
//!   boot; after recovery each shard brings its block to what is on disk (advancing,
//!   rewinding with a generation bump, repairing a seqlock left odd).
//!
//! The layout is in the `layout` module (its docs draw it); the lock-free protocols,
//! model-checked with `loom`, in `protocol`. Every access to the mapping is an aligned 8-byte atomic: there is never a
//! byte slice over live shared memory.

pub(crate) mod layout;
pub(crate) mod map;
pub(crate) mod owner;
pub(crate) mod protocol;
pub(crate) mod sys;
mod view;

pub use view::{
    inspect, HeaderView, Inspection, OwnerInfo, PinInfo, SegmentRange, ShardPosition, ShardState,
    Snapshot,
};

/// For tests that simulate a crash inside one process: makes this process let go of the log
/// in `dir` as a dead process would (the writer lease is released; shards opened on it are
/// forgotten and must never be used again, for example leaked with `std::mem::forget`).
/// Never call it while those shards can still run: two writers would corrupt the log.
#[cfg(feature = "testing")]
pub fn simulate_process_death(dir: &std::path::Path) {
    owner::abandon(dir)
}

/// The header's file name inside the log directory.
pub const HEADER_FILE_NAME: &str = layout::FILE_NAME;

use std::fs::File;
use std::sync::atomic::Ordering::Relaxed;

use layout::*;
use map::ShmMap;

#[cfg(doc)]
use crate::{Cut, Error};

/// The check word published with every shard position: a reader that finds it does not
/// match the other payload words has read a torn publication (the seqlock should make that
/// impossible; the tests count it).
#[inline]
pub(crate) fn payload_check(durable: u64, first: u64, publishes: u64, generation: u64) -> u64 {
    (durable ^ first.rotate_left(17) ^ publishes.rotate_left(34) ^ generation.rotate_left(51))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// xxh3-64 over the immutable words, little endian.
pub(crate) fn immutable_checksum(map: &ShmMap) -> u64 {
    let mut bytes = [0u8; 8 * 8];
    for (k, i) in IMMUTABLE_WORDS.enumerate() {
        bytes[k * 8..k * 8 + 8].copy_from_slice(&map.word(i).load(Relaxed).to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}
const _: () = assert!(*IMMUTABLE_WORDS.end() - *IMMUTABLE_WORDS.start() + 1 == 8);

/// Checks a header file: magic, layout version, byte order, geometry, size, checksum of the
/// immutable words, boot id. Returns its geometry and generation, or what is wrong.
pub(crate) fn check_header(file: &File, boot: u128) -> Result<(Geometry, u64), String> {
    let len = file.metadata().map_err(|e| format!("stat: {e}"))?.len();
    if len < (W_SHARDS * WORD_BYTES) as u64 {
        return Err(format!("it holds {len} bytes, too few for a header"));
    }
    let map = ShmMap::new(file, W_SHARDS, false).map_err(|e| format!("mapping: {e}"))?;
    let w = |i| map.word(i).load(Relaxed);
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    if w(W_MAGIC) != MAGIC {
        return Err("no valid magic (not a shardwal header, or one being built)".into());
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    if w(W_LAYOUT_VERSION) != LAYOUT_VERSION {
        return Err(format!(
            "layout version {} (this build reads {LAYOUT_VERSION})",
            w(W_LAYOUT_VERSION)
        ));
    }
    if w(W_ENDIAN) != ENDIAN_MARKER {
        return Err("written on a machine of the other byte order".into());
    }
    if immutable_checksum(&map) != w(W_IMMUTABLE_XXH3) {
        return Err("the checksum of its immutable words does not match".into());
    }
    let shard_count = w(W_SHARD_COUNT);
    let pin_slot_count = w(W_PIN_SLOT_COUNT);
    if !(1..=1024).contains(&shard_count) || !(1..=4096).contains(&pin_slot_count) {
        return Err(format!(
            "implausible geometry: {shard_count} shards, {pin_slot_count} pin slots"
        ));
    }
    let geometry = Geometry {
        shard_count: shard_count as usize,
        pin_slot_count: pin_slot_count as usize,
    };
    if w(W_TOTAL_BYTES) != geometry.total_bytes() || len < geometry.total_bytes() {
        return Err(format!(
            "size {len} does not fit its geometry ({} bytes)",
            geometry.total_bytes()
        ));
    }
    let header_boot = ((w(W_BOOT_ID_HI) as u128) << 64) | w(W_BOOT_ID_LO) as u128;
    if header_boot != boot {
        return Err("written before the last reboot".into());
    }
    Ok((geometry, w(W_GENERATION)))
}

/// Who holds the lease, as well as the header tells (for error messages).
pub(crate) fn describe_owner(file: &File) -> String {
    let pid_info = ShmMap::new(file, W_SHARDS, false).ok().and_then(|map| {
        if map.word(W_MAGIC).load(Relaxed) != MAGIC {
            return None;
        }
        let pid = map.word(W_OWNER_PID).load(Relaxed) as u32;
        let since = map.word(W_OWNER_SINCE_UNIX_US).load(Relaxed);
        (pid != 0).then_some((pid, since))
    });
    match pid_info {
        Some((pid, since)) => format!(
            "owned by pid {pid} (writer since {}); it is released when that process exits",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(since)
            )
        ),
        None => "owned by another process that is still starting (no pid published yet)".into(),
    }
}
