//! Truncation: dropping whole segments below an LSN from the chain, and retiring their
//! files (kept as spares for recycling, or removed).

use std::sync::Arc;

use super::open::spare_sized;
use super::state::Core;
use crate::error::{Error, FailedOp, Result, ShardFailure};
use crate::lsn::Lsn;
use crate::recovery::ChainSegment;
use crate::segment::{spare_path, Spare};

/// [`Shard::truncate_before_keeping`](super::Shard::truncate_before_keeping): takes the
/// segments wholly below `before` (and below `keep_from` and every reader's pin) off the
/// chain, retires their files, and publishes the new first LSN.
pub(super) async fn truncate(core: &Core, before: Lsn, keep_from: Option<Lsn>) -> Result<usize> {
    let doomed: Vec<ChainSegment> = {
        let mut st = core.st.borrow_mut();
        if let Some(e) = st.refusal(core.id) {
            return Err(e);
        }
        if before.0 > st.marks.durable_lsn.0 + 1 {
            return Err(Error::TruncateBeyondDurable {
                shard: core.id,
                requested: before,
                durable_lsn: st.marks.durable_lsn,
            });
        }
        // Live readers' pins hold back what they still need (see `shm`).
        let before = st.header.retention_floor(before);
        let before = keep_from.map_or(before, |keep| before.min(keep));
        let mut k = 0;
        while k + 1 < st.segments.chain.len() && st.segments.chain[k + 1].base_lsn <= before {
            k += 1;
        }
        let doomed = st.segments.chain.drain(..k).collect();
        let oldest_kept = st.segments.chain[0].generation;
        st.segments.index.retire_below(oldest_kept);
        core.learned.retire_below(oldest_kept);
        // The active segment is never removed: the chain stays non-empty.
        let s = &st.segments;
        assert_eq!(
            s.chain.last().map(|c| c.generation),
            Some(s.active.generation)
        );
        doomed
    };
    let removed = retire_segments(core, doomed, before).await?;
    if removed > 0 {
        let mut st = core.st.borrow_mut();
        let (durable, first, generation) = (
            st.marks.durable_lsn,
            st.segments.chain[0].base_lsn,
            st.segments.active.generation,
        );
        st.header.publish(durable, first, generation);
    }
    Ok(removed)
}

/// Retires the segments `truncate_before` dropped from the chain (oldest first): keeps up
/// to `recycled_segment_count` spares in all by renaming a segment to its `.spare` name,
/// removes the others, then fsyncs the directory; only then do the new spares become
/// available to the flusher. Returns how many segments were retired. Any error fails the
/// shard.
///
/// Crash points: before the directory fsync each file is, after a crash, either still its
/// `.seg` (then it is back in the chain, as an undone remove would be; oldest first, so a
/// journal that keeps the order leaves a contiguous chain) or already its `.spare` / gone.
/// A spare holds only frames of its own (old) generation and is read by no scan; the next
/// open keeps or removes it.
async fn retire_segments(core: &Core, doomed: Vec<ChainSegment>, before: Lsn) -> Result<usize> {
    if doomed.is_empty() {
        return Ok(0);
    }
    // Fails the shard and hands the same I/O error to the caller of `truncate_before`.
    let fail = |op: FailedOp, what: &'static str, path: &std::path::Path, e: std::io::Error| {
        let e = Arc::new(e);
        let cause = ShardFailure::new(op, path, e.clone());
        core.st.borrow_mut().fail(core.id, cause);
        Error::Io {
            op: what,
            path: path.to_path_buf(),
            source: e,
        }
    };
    let room = {
        let st = core.st.borrow();
        core.config
            .recycled_segment_count
            .saturating_sub(st.segments.spares.len())
    };
    let mut retired = Vec::new();
    for seg in &doomed {
        if retired.len() < room && spare_sized(&seg.path, core.config.segment_bytes) {
            let to = spare_path(&core.shard_dir, seg.generation);
            if let Err(e) = core.storage.rename(&seg.path, &to).await {
                let what = "keeping a segment as a spare";
                return Err(fail(FailedOp::Rename, what, &seg.path, e));
            }
            retired.push(Spare {
                generation: seg.generation,
                path: to,
            });
        } else if let Err(e) = core.storage.remove(&seg.path).await {
            return Err(fail(FailedOp::Remove, "removing segment", &seg.path, e));
        }
    }
    if let Err(e) = core.storage.sync_dir(&core.shard_dir).await {
        let what = "syncing shard directory";
        return Err(fail(FailedOp::SyncDir, what, &core.shard_dir, e));
    }
    let mut st = core.st.borrow_mut();
    st.metrics.segments_retired_as_spares += retired.len() as u64;
    tracing::info!(shard = %core.id, removed = doomed.len() - retired.len(), spares = retired.len(), before = %before, "truncated");
    st.segments.spares.extend(retired);
    Ok(doomed.len())
}
