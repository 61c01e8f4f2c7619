//! Opening a shard: the directory, the writer lease, recovery, the spares, the first
//! segment, the state, and the flusher task.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::DmaBuffer;

use super::commit::Waiters;
use super::state::{
    ActiveSegment, Core, Io, Lifecycle, Pacing, Segments, State, Wakers, Watermarks,
};
use crate::arena::Arena;
use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};
use crate::metrics::ShardMetrics;
use crate::record::FrameKey;
use crate::recovery::{scan_shard, ChainSegment, ShardScan};
use crate::ring::Ring;
use crate::seek::LearnedStarts;
use crate::segment::{
    first_segment_bytes, generation_of, list_spares, prepare_next, shard_dir, spare_path,
    zero_prefix, Spare, FIRST_SEGMENT_MAX_BYTES,
};
use crate::shm::owner::{HeaderOwner, ShardHeader};
use crate::storage::Storage;
use crate::zero_ahead::SyncBytes;

fn sync_std_dir(path: &std::path::Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", path, e))
}

/// Whether `path` can become a spare: a file of exactly `segment_bytes` (a segment written
/// with another size stays out of the recycling pool).
pub(super) fn spare_sized(path: &std::path::Path, segment_bytes: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == segment_bytes)
}

/// At open: keeps up to `recycled_segment_count` spares, from the spares on disk and then
/// from the segment files recovery found holding nothing acknowledged (`unused`: prepared
/// but never written, or beyond a torn tail), and removes the rest. Renaming a `.seg` file
/// to its `.spare` name takes it out of every later scan just like removing it; a crash
/// before the directory fsync brings back the `.seg` name, and the next scan judges the file
/// the same way again.
async fn keep_spares(
    config: &WalConfig,
    sdir: &std::path::Path,
    storage: &dyn Storage,
    unused: &[PathBuf],
) -> Result<Vec<Spare>> {
    let keep = config.recycled_segment_count;
    let mut spares = Vec::new();
    let mut changed = false;
    for (generation, path) in list_spares(sdir)? {
        if spares.len() < keep && spare_sized(&path, config.segment_bytes) {
            spares.push(Spare { generation, path });
        } else {
            storage
                .remove(&path)
                .await
                .map_err(|e| Error::io("removing a spare segment", &path, e))?;
            changed = true;
        }
    }
    for path in unused {
        changed = true;
        match generation_of(path) {
            Some(generation) if spares.len() < keep && spare_sized(path, config.segment_bytes) => {
                let to = spare_path(sdir, generation);
                storage
                    .rename(path, &to)
                    .await
                    .map_err(|e| Error::io("keeping an unused segment as a spare", path, e))?;
                spares.push(Spare {
                    generation,
                    path: to,
                });
            }
            _ => storage
                .remove(path)
                .await
                .map_err(|e| Error::io("removing an unused segment", path, e))?,
        }
    }
    if changed {
        storage
            .sync_dir(sdir)
            .await
            .map_err(|e| Error::io("syncing shard directory", sdir, e))?;
    }
    Ok(spares)
}

/// Opens shard `id` (see [`Shard::open`](super::Shard::open)) and starts its flusher task.
pub(super) async fn open_on(
    config: &WalConfig,
    id: ShardId,
    storage: Rc<dyn Storage>,
) -> Result<Rc<Core>> {
    if id.0 >= config.shard_count {
        return Err(Error::InvalidConfig(format!(
            "shard id {id} is not below shard_count = {}",
            config.shard_count
        )));
    }
    let sdir = create_shard_dir(config, id)?;
    // The writer lease comes first: recovery may remove files, which only the owner may do.
    let owner = HeaderOwner::acquire(&config.dir, config.shard_count)?;
    let mut header = owner.attach(id, config.publish_positions)?;
    super::completion_wait::choose_ring(&config.dir, id, config.poll_write_completions).await?;

    let mut scan = scan_shard(&sdir, id)?;
    if let Some(t) = &scan.torn_tail {
        tracing::warn!(shard = %id, path = %t.path.display(), offset = t.offset, lsn = %t.lsn, reason = t.reason,
            "recovery cut a torn tail: nothing after it was acknowledged");
    }
    // `scan.next_generation` is above every spare's generation too.
    let spares = keep_spares(config, &sdir, &*storage, &scan.remove).await?;

    let arena = Arena::allocate(
        config.flush_buffer_count,
        config.flush_buffer_bytes,
        crate::zero_ahead::piece_bytes(config.flush_buffer_bytes),
    );
    let segments = recovered_segments(
        config,
        (id, &sdir),
        &*storage,
        &mut scan,
        spares,
        (&arena.zero_block, &arena.zeros),
    )
    .await?;
    tracing::info!(shard = %id, dir = %config.dir.display(), next_lsn = %scan.next_lsn, records = scan.record_count,
        segments = segments.chain.len(), registered_buffers = arena.registered, arena_bytes = arena.total_bytes, "shard open");

    let durable = Lsn(scan.next_lsn.0 - 1);
    let (first, generation) = (segments.chain[0].base_lsn, segments.active.generation);
    header.reconcile(durable, first, generation);
    let marks = Watermarks {
        next_lsn: scan.next_lsn,
        completed_lsn: durable,
        durable_lsn: durable,
        session_first_lsn: scan.next_lsn,
    };
    let st = new_state(config, Ring::new(arena.ring), marks, segments, header);
    let core = Rc::new(Core {
        id,
        config: config.clone(),
        shard_dir: sdir,
        storage,
        zeros: arena.zeros,
        zero_block: arena.zero_block,
        registered: arena.registered,
        learned: Arc::new(LearnedStarts::new(config.segment_bytes)),
        learn_upto_generation: generation,
        piece_bytes: super::overlap::piece_bytes(config.flush_buffer_bytes),
        st: RefCell::new(st),
    });
    glommio::spawn_local(super::flusher::run(core.clone())).detach();
    Ok(core)
}

/// The shard's directory, created (and its parent directory synced) when missing.
fn create_shard_dir(config: &WalConfig, id: ShardId) -> Result<PathBuf> {
    let sdir = shard_dir(&config.dir, id);
    if !sdir.exists() {
        std::fs::create_dir_all(&sdir)
            .map_err(|e| Error::io("creating shard directory", &sdir, e))?;
        sync_std_dir(&config.dir)?;
    }
    Ok(sdir)
}

/// The segments of shard `id` (in `sdir`) that recovery just scanned: the scan's chain
/// (taken out of `scan`), and the segment appends go to: the one recovery resumes, else a
/// new one at the end of the chain (from a spare when there is one).
async fn recovered_segments(
    config: &WalConfig,
    (id, sdir): (ShardId, &Path),
    storage: &dyn Storage,
    scan: &mut ShardScan,
    mut spares: Vec<Spare>,
    (zero_block, zeros): (&Rc<DmaBuffer>, &Rc<DmaBuffer>),
) -> Result<Segments> {
    let mut chain = std::mem::take(&mut scan.chain);
    let mut next_generation = scan.next_generation;
    let active = match &scan.resume {
        // Recovery found only zeros past `write_pos`, but not whether they are written
        // blocks or unwritten extents: zeroing ahead starts again from the head (it
        // rewrites zeros, never a record).
        Some(r) => ActiveSegment {
            generation: r.generation,
            file: storage
                .open(&r.path)
                .await
                .map_err(|e| Error::io("opening segment", &r.path, e))?,
            write_pos: r.write_pos,
            segment_bytes: r.segment_bytes,
            zeroed_bytes: r.write_pos,
            key: FrameKey::new(id.0, r.generation),
        },
        None => {
            // A spare has the full size and is written through; a new file is small and
            // zeroed here, so records land on written blocks from the first commit on.
            let spare = spares.pop();
            let bytes = match spare {
                Some(_) => config.segment_bytes,
                None => first_segment_bytes(config.segment_bytes, config.flush_buffer_bytes),
            };
            let mut p = prepare_next(storage, sdir, spare, next_generation, bytes, zero_block)
                .await
                .map_err(|e| Error::io("preparing segment", sdir, e))?;
            // At most 2 MiB, whatever the flush buffers: the open stays short. The rest of a
            // larger first segment is zeroed ahead of the head while the shard is quiet.
            zero_prefix(&mut p, FIRST_SEGMENT_MAX_BYTES, zeros, zero_block)
                .await
                .map_err(|e| Error::io("zeroing the first segment", &p.path, e))?;
            next_generation += 1;
            chain.push(ChainSegment {
                generation: p.generation,
                path: p.path,
                base_lsn: scan.next_lsn,
            });
            ActiveSegment {
                generation: p.generation,
                file: p.file,
                write_pos: 0,
                segment_bytes: p.segment_bytes,
                zeroed_bytes: p.zeroed_bytes,
                key: FrameKey::new(id.0, p.generation),
            }
        }
    };
    assert_eq!(
        chain.last().map(|c| c.generation),
        Some(active.generation),
        "the chain ends with the active segment"
    );
    assert!(next_generation > active.generation);
    let mut index = super::batch_index::BatchIndex::new(config.segment_bytes);
    let evicted = index.reserve_next(); // for the active segment's batches
    assert!(evicted.is_none(), "a new index has room");
    Ok(Segments {
        active,
        prepared: None,
        preparing: None,
        chain,
        spares,
        next_generation,
        index,
    })
}

/// A fresh state: nothing in flight, nobody waiting, open.
fn new_state(
    config: &WalConfig,
    ring: Ring,
    marks: Watermarks,
    segments: Segments,
    header: ShardHeader,
) -> State {
    let n = config.flush_buffer_count;
    State {
        ring,
        marks,
        segments,
        io: Io {
            // Every piece of every slot (a slot's writes are one per set bit of its block
            // count): submitting never allocates.
            in_flight: Vec::with_capacity(n * 32),
            piece_scratch: Vec::with_capacity(32),
            dirty: Vec::with_capacity(4),
            sync: None,
            zeroing: None,
            unsynced_bytes: 0,
        },
        wakers: Wakers {
            commits: Waiters::with_capacity(1024),
            appends: Vec::with_capacity(1024),
            flusher: None,
            close: Vec::new(),
        },
        pacing: Pacing {
            woke_waiters: false,
            session_durable: false,
            seal_hold: None,
            hold_timer: None,
            piece_run: false,
            piece_handoff: false,
            sync_bytes: SyncBytes::default(),
        },
        lifecycle: Lifecycle::Open,
        batch_hold: false,
        commit_latency_us: crate::metrics::new_latency_histogram(),
        durable_at: std::time::Instant::now(),
        metrics: ShardMetrics::default(),
        header,
    }
}
