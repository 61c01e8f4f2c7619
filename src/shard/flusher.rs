//! The flusher: one task per shard that moves data from the ring to durable storage.
//!
//! Each time it is woken it runs [`drive`]: passes over the phases below, in this order,
//! until a pass makes no progress. Each phase is one function that returns whether it
//! made progress; the order matters (a batch sealed in a pass is submitted in the same
//! pass, a write collected is advanced over and synced in it).
//! 0. [`hold`]: a group-commit hint ([`crate::Shard::expect_appends`]) ends when its records
//!    arrived, when none arrived for a whole gap, or at its hard deadline.
//! 1. [`seal`], **group commit**: when a commit waits for a record in the open batch and
//!    neither a write nor an fdatasync is in flight, seal the open batch. While I/O is in
//!    flight, more appends pile into the open batch and go out together next time. No
//!    timer is needed; but while the writes in flight are pieces of the open batch's own
//!    large batch (`overlap`), it is sealed at once. (Sealing while an fdatasync runs does
//!    not make anything durable sooner, since that sync cannot cover the new write, and it
//!    splits the writers into two groups that take turns: measured 147 instead of 256
//!    records per fdatasync with 256 writers per shard.) A full buffer is sealed by
//!    `append` at once, whatever is in flight. Writers on other threads come back too late for that rule, so
//!    [`crate::Shard::expect_appends`] can hold the seal until the records it announced
//!    arrived or a short deadline passed. A closing shard ends with a marker-only batch
//!    ([`seal_final_marker`]).
//! 2. [`submit`] sealed batches in ring order; several may be in flight at once.
//! 3. [`collect`] write completions, in any order.
//! 4. [`advance`] the completed watermark over the contiguous prefix of written batches.
//! 5. [`sync`]: if no fdatasync is running, the completed watermark is ahead of the
//!    durable one and the sync serves someone (`overlap::sync_due`: a waiting commit it
//!    covers, a close, or nothing more on its way), snapshot it, fdatasync every file
//!    written since the last sync, and then declare exactly that snapshot durable, waking
//!    its waiters. Pieces of a large batch (`overlap`) thus share the fdatasync of the
//!    commit that follows them.
//! 6. [`prepare`] the next segment in the background whenever none is ready (but, unless
//!    the active segment is nearly full, not before the first batch of the session is
//!    durable, nor zero: the first commit after opening has the device to itself): from a
//!    spare left by truncation when there is one (recycled), else a new file reserved with
//!    `fallocate` (no data written), twice the size of the active segment up to
//!    `segment_bytes` (`segment::next_segment_bytes`).
//! 7. [`zero`]: one piece of zeros at a time, so that records land on written blocks (see
//!    `zero_ahead`): a bounded distance ahead of the write head while nothing waits to
//!    become durable, otherwise through the prepared segment from its start; none while
//!    the recent commits averaged 384 KiB or more, where zeros cost more than the journal
//!    commits they save.
//!
//! After every pass, debug builds (and so the simulation under `cargo test`) run
//! [`State::check_invariants`].
//!
//! Any I/O error fails the shard; in-flight operations are then awaited (their results
//! ignored) so no buffer is reused while the kernel may still read it, and the task exits.
//!
//! The flusher knows the shard's [`Core`] and [`State`] only, never the `Shard` handle.

use std::future::poll_fn;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::LocalBoxFuture;

use super::overlap::sync_due;
use super::state::{Core, PieceInFlight, State, ZeroInFlight};
use crate::error::{FailedOp, ShardFailure};
use crate::lsn::Lsn;
use crate::record::FRAME_HEADER_BYTES;
use crate::segment::{next_segment_bytes, prepare_next, segment_path};
use crate::zero_ahead::{may_issue, next_piece, prepared_target_bytes, Quiet, ZeroPiece};
use crate::Durability;

/// Runs the flusher of `core` until the shard is closed or failed and idle.
pub(crate) async fn run(core: Rc<Core>) {
    poll_fn(|cx| drive(&core, cx)).await;
    let mut st = core.st.borrow_mut();
    st.lifecycle.stop_flusher();
    st.wakers.commits.wake_all();
    st.wake_appenders();
    for w in st.wakers.close.drain(..) {
        w.wake();
    }
}

/// One wake-up of the flusher: passes until nothing more can happen, then decides whether
/// to yield, wait or stop.
fn drive(core: &Core, cx: &mut Context<'_>) -> Poll<()> {
    let mut guard = core.st.borrow_mut();
    let st: &mut State = &mut guard;
    match &st.wakers.flusher {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => st.wakers.flusher = Some(cx.waker().clone()),
    }
    loop {
        // `|` and `|=`, not `||`: every phase runs in every pass.
        let mut progress = hold(st, cx);
        progress |= seal(st);
        progress |= seal_final_marker(core, st);
        progress |= submit(core, st);
        progress |= collect(core, st, cx);
        progress |= advance(st);
        progress |= sync(core, st, cx);
        progress |= prepare(core, st, cx);
        progress |= zero(core, st, cx);

        if cfg!(debug_assertions) {
            st.check_invariants();
        }

        if !progress {
            break;
        }
    }
    end_of_passes(st, cx)
}

/// After the last pass: yields to the commit waiters it woke, stops once the shard is
/// closed or failed and no I/O is in flight, or waits to be woken.
fn end_of_passes(st: &mut State, cx: &mut Context<'_>) -> Poll<()> {
    if st.pacing.woke_waiters {
        // Commit waiters were just woken. Let them run (and append their next records)
        // before deciding what goes into the next batch: the executor's queue is FIFO, so
        // waking ourselves puts this task behind them. Sealing in this same pass would cut
        // the writers into two groups that then alternate for good, halving the batch.
        st.pacing.woke_waiters = false;
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    let idle_io = st.io.in_flight.is_empty()
        && st.io.sync.is_none()
        && st.segments.preparing.is_none()
        && st.io.zeroing.is_none();
    let finished_close = st.lifecycle.close_requested()
        && st.ring.open.is_none()
        && st.ring.is_idle()
        && st.marks.all_durable()
        && (st.lifecycle.final_marker_sealed() || !st.marks.appended_since_open());
    if idle_io && (st.lifecycle.failure().is_some() || finished_close) {
        return Poll::Ready(());
    }
    Poll::Pending
}

/// Phase 0: a hold (see `Shard::expect_appends`) ends when its records arrived, when none
/// arrived for a whole gap, or at its hard deadline; its timer wakes this task for each
/// check. Progress: the hold ended, or its next check is due already.
fn hold(st: &mut State, cx: &mut Context<'_>) -> bool {
    let Some(hold) = &mut st.pacing.seal_hold else {
        return false;
    };
    let count = st.ring.open_record_count();
    let mut end = count >= hold.open_records || st.lifecycle.close_requested();
    let due = match &mut st.pacing.hold_timer {
        Some(t) => t.as_mut().poll(cx).is_ready(),
        None => Instant::now() >= hold.next_check,
    };
    if due {
        let now = Instant::now();
        if count > hold.seen_records && now < hold.give_up {
            hold.seen_records = count;
            hold.next_check = (now + hold.gap).min(hold.give_up);
            st.pacing.hold_timer = None;
        } else {
            end = true;
        }
    }
    if end {
        st.pacing.seal_hold = None;
        st.pacing.hold_timer = None;
        return true;
    }
    if st.pacing.hold_timer.is_some() {
        return false;
    }
    assert!(hold.next_check <= hold.give_up);
    let left = hold.next_check.saturating_duration_since(Instant::now());
    let mut t: LocalBoxFuture<'static, ()> =
        Box::pin(async move { glommio::timer::sleep(left).await });
    // Registers this task's waker with the timer; if it is due already, the check above
    // sees that on the next pass without a timer.
    if t.as_mut().poll(cx).is_pending() {
        st.pacing.hold_timer = Some(t);
        false
    } else {
        true
    }
}

/// Phase 1, group commit: seals the open batch when someone waits on it and the device is
/// idle; when closing, seals whatever is open. Never in the pass that woke commit waiters
/// (see [`end_of_passes`]), nor while a hold lasts.
fn seal(st: &mut State) -> bool {
    if st.lifecycle.failure().is_some()
        || st.pacing.seal_hold.is_some()
        || st.pacing.woke_waiters
        || st.ring.open.is_none()
        || (st.ring.writes_pending() != 0 && !st.pacing.piece_run)
        || st.io.sync.is_some()
    {
        return false;
    }
    let wanted = st.commit_waits_for_open();
    if !wanted && !st.lifecycle.close_requested() {
        return false;
    }
    st.seal_open(false);
    true
}

/// Phase 1, closing: a closing shard ends with a marker-only batch that vouches for every
/// record, once everything else is durable and nothing is in flight. It is tried once:
/// when no batch can be opened for it, the close ends without it.
fn seal_final_marker(core: &Core, st: &mut State) -> bool {
    if st.lifecycle.failure().is_some()
        || !st.lifecycle.close_requested()
        || st.lifecycle.final_marker_sealed()
        || !st.marks.appended_since_open()
        || !st.ring.is_idle()
        || st.io.sync.is_some()
        || st.io.zeroing.is_some()
        || !st.marks.all_durable()
    {
        return false;
    }
    st.lifecycle.seal_final_marker();
    if !st.open_batch(core, FRAME_HEADER_BYTES) {
        return false;
    }
    st.seal_open(false);
    true
}

/// Phase 2: submits the writes of every sealed batch, oldest first (none once failed).
fn submit(core: &Core, st: &mut State) -> bool {
    let mut progress = false;
    while let Some(idx) = st
        .ring
        .next_sealed()
        .filter(|_| st.lifecycle.failure().is_none())
    {
        st.ring.start_writes(idx, &mut st.io.piece_scratch);
        let _span = tracing::debug_span!(
            "flush",
            shard = %core.id,
            slot = idx,
            records = st.ring.slots[idx].record_count,
            bytes = st.ring.slots[idx].padded_bytes,
            writes = st.io.piece_scratch.len(),
        )
        .entered();
        let file = st.ring.slots[idx]
            .file
            .clone()
            .expect("sealed slot has a file");
        // The pushes below allocate nothing: `in_flight` has room for every piece of
        // every slot.
        let room = st.io.in_flight.capacity() - st.io.in_flight.len();
        assert!(room >= st.io.piece_scratch.len(), "no room for the writes");
        st.metrics.flushes += 1;
        for piece in st.io.piece_scratch.drain(..) {
            let len = piece.buf.len();
            let f = file.clone();
            st.metrics.write_ops += 1;
            st.metrics.written_bytes += len as u64;
            st.io.in_flight.push(PieceInFlight {
                slot: idx,
                len,
                fut: Box::pin(async move { f.write_at(piece.buf, piece.file_pos).await }),
            });
        }
        progress = true;
    }
    progress
}

/// Phase 3: collects write completions (any order). Once the shard failed, completions
/// are only awaited, their results ignored.
fn collect(core: &Core, st: &mut State, cx: &mut Context<'_>) -> bool {
    let mut progress = false;
    let mut i = 0;
    while i < st.io.in_flight.len() {
        let Poll::Ready(result) = st.io.in_flight[i].fut.as_mut().poll(cx) else {
            i += 1;
            continue;
        };
        let done = st.io.in_flight.swap_remove(i);
        progress = true;
        if st.lifecycle.failure().is_some() {
            continue;
        }
        match result {
            Ok(n) if n == done.len => {
                tracing::debug!(shard = %core.id, slot = done.slot, bytes = n, "write done");
                st.ring.piece_written(done.slot)
            }
            Ok(n) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes (disk full?)", done.len),
                );
                fail_write(core, st, done.slot, e)
            }
            Err(e) => fail_write(core, st, done.slot, e),
        }
    }
    progress
}

/// Phase 4: advances the completed watermark over the contiguous prefix of written
/// batches, frees their slots (waking appenders) and notes their files for the next sync.
fn advance(st: &mut State) -> bool {
    let mut freed = false;
    while let Some(idx) = st.ring.pop_written() {
        let slot = &mut st.ring.slots[idx];
        let (generation, last_lsn) = (slot.generation, slot.last_lsn);
        st.io.unsynced_bytes += slot.padded_bytes as u64;
        let file = slot.file.take().expect("written slot has a file");
        assert!(
            last_lsn < st.marks.next_lsn,
            "a written batch holds appended LSNs"
        );
        st.marks.completed_lsn = st.marks.completed_lsn.max(last_lsn);
        if !st.io.dirty.iter().any(|(g, _)| *g == generation) {
            st.io.dirty.push((generation, file));
        }
        freed = true;
    }
    if freed {
        st.wake_appenders();
    }
    freed
}

/// Phase 5: makes the completed prefix durable: starts an fdatasync of every dirty file
/// (the durable target is the completed watermark at its start), or, with
/// [`Durability::Dsync`] and the benchmark-only mode, declares it durable at once; then
/// polls the sync in flight. Progress: a sync ended. (Starting one is not progress.)
fn sync(core: &Core, st: &mut State, cx: &mut Context<'_>) -> bool {
    if st.lifecycle.failure().is_none() {
        match core.config.durability {
            Durability::Fdatasync => {
                let ring_bytes = core.config.flush_buffer_count * core.config.flush_buffer_bytes;
                if st.io.sync.is_none()
                    && !st.io.dirty.is_empty()
                    && sync_due(st, ring_bytes as u64)
                {
                    let target = st.marks.completed_lsn;
                    st.pacing.sync_bytes.record(st.io.unsynced_bytes);
                    st.io.unsynced_bytes = 0;
                    let files: Vec<_> = st.io.dirty.drain(..).map(|(_, f)| f).collect();
                    st.io.sync = Some((
                        target,
                        Box::pin(async move {
                            for f in &files {
                                f.fdatasync().await?;
                            }
                            Ok(())
                        }),
                    ));
                }
            }
            Durability::Dsync | Durability::NoSyncBenchmarkOnly => {
                st.io.dirty.clear();
                if st.io.unsynced_bytes > 0 {
                    st.pacing.sync_bytes.record(st.io.unsynced_bytes);
                }
                st.io.unsynced_bytes = 0;
                make_durable(st, st.marks.completed_lsn);
            }
        }
    }
    let Some((target, fut)) = &mut st.io.sync else {
        return false;
    };
    let Poll::Ready(result) = fut.as_mut().poll(cx) else {
        return false;
    };
    let target = *target;
    st.io.sync = None;
    if st.lifecycle.failure().is_none() {
        match result {
            Ok(()) => {
                st.metrics.fdatasyncs += 1;
                tracing::debug!(shard = %core.id, durable_lsn = %target, "fdatasync done");
                make_durable(st, target);
            }
            Err(e) => fail_io(core, st, FailedOp::Fdatasync, &core.shard_dir, e),
        }
    }
    true
}

/// Moves the durable watermark to `durable` (when that is higher), publishes it, and wakes
/// the commits it covers.
fn make_durable(st: &mut State, durable: Lsn) {
    if durable > st.marks.durable_lsn {
        assert!(
            durable <= st.marks.completed_lsn,
            "durable beyond completed"
        );
        st.marks.durable_lsn = durable;
        st.pacing.session_durable = true;
        let first = st.segments.chain[0].base_lsn;
        st.header
            .publish(durable, first, st.segments.active.generation);
        if st.wakers.commits.advance(durable) > 0 {
            st.pacing.woke_waiters = true;
            st.durable_at = std::time::Instant::now();
        }
    }
}

/// Phase 6: keeps one prepared segment ready: once the first batch of this session is
/// durable (nothing goes in front of the first commit), or at once when the active
/// segment has no room for two more batches (a resumed segment may be full, and then no
/// batch could become durable before a rotation). Progress: a preparation ended.
fn prepare(core: &Core, st: &mut State, cx: &mut Context<'_>) -> bool {
    let room = st.segments.active.segment_bytes - st.segments.active.write_pos;
    let needed_soon = room < 2 * core.config.flush_buffer_bytes as u64;
    if st.lifecycle.is_open()
        && (st.pacing.session_durable || needed_soon)
        && st.segments.prepared.is_none()
        && st.segments.preparing.is_none()
    {
        start_preparing(core, st);
    }
    let Some(fut) = &mut st.segments.preparing else {
        return false;
    };
    let Poll::Ready(result) = fut.as_mut().poll(cx) else {
        return false;
    };
    st.segments.preparing = None;
    match result {
        Ok(p) if st.lifecycle.failure().is_none() => {
            assert!(p.generation < st.segments.next_generation);
            st.metrics.segments_prepared += 1;
            st.metrics.segments_recycled += p.recycled as u64;
            // Rotating to it pushes onto the chain inside `append`, which must not
            // allocate: make room here, off the append path.
            st.segments.chain.reserve(1);
            if let Some((generation, entries)) = st.segments.index.reserve_next() {
                // The oldest indexed segment makes room; its entries stay useful.
                core.learned.offer(generation, false, entries);
            }
            st.segments.prepared = Some(p);
            st.wake_appenders();
        }
        Ok(_) => {}
        Err(e) => fail_io(core, st, FailedOp::PrepareSegment, &core.shard_dir, e),
    }
    true
}

/// Starts preparing the next segment: from the oldest spare when there is one, else a new
/// file.
fn start_preparing(core: &Core, st: &mut State) {
    let storage = core.storage.clone();
    let dir = core.shard_dir.clone();
    let zero_block = core.zero_block.clone();
    let generation = st.segments.next_generation;
    st.segments.next_generation += 1;
    // The oldest spare first (any would do: each is below `generation`).
    let spare = (!st.segments.spares.is_empty()).then(|| st.segments.spares.remove(0));
    let bytes = match spare {
        Some(_) => core.config.segment_bytes,
        None => next_segment_bytes(st.segments.active.segment_bytes, core.config.segment_bytes),
    };
    st.segments.preparing = Some(Box::pin(async move {
        prepare_next(&*storage, &dir, spare, generation, bytes, &zero_block).await
    }));
}

/// Fails the shard after a write of ring slot `slot` went wrong (an error, or fewer bytes
/// than asked), naming the segment file the slot was writing.
fn fail_write(core: &Core, st: &mut State, slot: usize, e: std::io::Error) {
    let path = segment_path(&core.shard_dir, st.ring.slots[slot].generation);
    fail_io(core, st, FailedOp::Write, &path, e);
}

/// Fails the shard with the I/O error `e` of `op` on `path` (a segment file, or the shard
/// directory when the operation spanned several files).
fn fail_io(core: &Core, st: &mut State, op: FailedOp, path: &Path, e: std::io::Error) {
    st.fail(core.id, ShardFailure::new(op, path, Arc::new(e)));
}

/// Phase 7: collects the zero piece in flight, or issues the next one (see `zero_ahead`):
/// ahead of the write head in the active segment while the shard is quiet, else through
/// the prepared segment from its start; none while commits are large
/// (`SyncBytes::zeroing_pays`). Returns whether it made progress. A failed or short zero
/// write fails the shard like any other write.
fn zero(core: &Core, st: &mut State, cx: &mut Context<'_>) -> bool {
    if st.io.zeroing.is_some() {
        return collect_zero_piece(core, st, cx);
    }
    let pays = st.pacing.sync_bytes.zeroing_pays();
    if !st.lifecycle.is_open() || !st.pacing.session_durable || !pays {
        return false;
    }
    let quiet = may_issue(Quiet {
        commit_waiting: st.wakers.commits.max_lsn() > st.marks.durable_lsn,
        unsynced_batches: st.ring.writes_pending() > 0
            || st.marks.completed_lsn > st.marks.durable_lsn
            || !st.io.dirty.is_empty(),
        syncing: st.io.sync.is_some(),
    });
    let piece = core.zeros.len() as u64;
    let a = &st.segments.active;
    let reach = core.config.flush_buffer_bytes as u64;
    let active = next_piece(a.write_pos, a.zeroed_bytes, a.segment_bytes, reach, piece)
        .filter(|_| quiet)
        .map(|range| {
            assert!(range.start >= a.write_pos + reach && range.end <= a.segment_bytes);
            (a.generation, a.file.clone(), range)
        });
    // The prepared segment takes no records yet and is another file: its zeros go out
    // whether or not a commit waits (one piece at a time), paced to the active segment's
    // fill, and converting its blocks puts nothing into the active file's fdatasync.
    let prepared = st.segments.prepared.as_ref().and_then(|p| {
        let range = p.zeroed_bytes..p.zeroed_bytes + piece;
        let due =
            range.start < prepared_target_bytes(a.write_pos, a.segment_bytes, p.segment_bytes);
        (due && range.end <= p.segment_bytes).then(|| (p.generation, p.file.clone(), range))
    });
    let Some((generation, file, range)) = active.or(prepared) else {
        return false;
    };
    let (zeros, pos) = (core.zeros.clone(), range.start);
    st.io.zeroing = Some(ZeroInFlight {
        piece: ZeroPiece { generation, range },
        fut: Box::pin(async move { file.write_at(zeros, pos).await }),
    });
    true
}

/// Fails the shard after a zero write into segment `generation` went wrong.
fn fail_zeroing(core: &Core, st: &mut State, generation: u64, e: std::io::Error) {
    let path = segment_path(&core.shard_dir, generation);
    st.fail(
        core.id,
        ShardFailure::new(FailedOp::PrepareSegment, path, Arc::new(e)),
    );
}

/// Polls the zero piece in flight; when it completed, records how far its segment is
/// zeroed (the active or the prepared one, whichever it went to) or fails the shard.
fn collect_zero_piece(core: &Core, st: &mut State, cx: &mut Context<'_>) -> bool {
    let z = st.io.zeroing.as_mut().expect("a zero piece in flight");
    let Poll::Ready(result) = z.fut.as_mut().poll(cx) else {
        return false;
    };
    let piece = st.io.zeroing.take().expect("a zero piece in flight").piece;
    let len = (piece.range.end - piece.range.start) as usize;
    match result {
        Ok(n) if n == len => {
            st.metrics.zeroed_bytes += len as u64;
            if st.segments.active.generation == piece.generation {
                st.segments.active.zeroed_bytes =
                    st.segments.active.zeroed_bytes.max(piece.range.end);
            } else if let Some(p) = st
                .segments
                .prepared
                .as_mut()
                .filter(|p| p.generation == piece.generation)
            {
                assert_eq!(
                    p.zeroed_bytes, piece.range.start,
                    "prepared zeroing is contiguous"
                );
                p.zeroed_bytes = piece.range.end;
            }
        }
        Ok(n) => {
            let short = std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write while zeroing ahead: {n} of {len} bytes (disk full?)"),
            );
            fail_zeroing(core, st, piece.generation, short);
        }
        Err(e) => fail_zeroing(core, st, piece.generation, e),
    }
    // An append may wait for this piece to finish (`State::open_batch`).
    st.wake_appenders();
    true
}
