//! Overlap inside a commit (issue 12, item 3): a large batch goes out in pieces while
//! appends keep filling the rest, and the pieces still share one fdatasync.
//!
//! # Why
//! A writer that appends 16 records of 64 KiB and then commits never waits inside `append`,
//! and glommio 0.9 hands a write to the kernel only when the executor goes back to its
//! reactor, which it does only once no task is runnable. So the copy and checksum of the
//! whole 1 MiB, then its write, then its fdatasync ran strictly one after the other.
//!
//! # How
//! 1. **Piece seals** ([`piece_due`]): when the open batch holds at least [`PIECE_BYTES`]
//!    and no commit waits for any of its records, `append` seals it on the spot (a batch
//!    of its own, with its marker, in the next ring slot). The next `append`, before it
//!    copies anything, lets the executor make one trip through its reactor
//!    ([`yield_to_reactor`]): the flusher submits the piece and the reactor hands it to
//!    the kernel, and the piece's write runs while the rest of the batch is copied. (The
//!    trip is taken before a copy, not after one, so dropping an `append` future during it
//!    appends nothing; a commit that follows the piece needs no trip, it waits anyway.)
//!    A batch that `append` seals because it is full (or meets the segment's end) while
//!    no commit waits for it counts as a piece too, without the reactor trip.
//!    Small records with waiting commits never seal pieces (a waiting commit turns the
//!    piece rule off), and neither do shards whose flush buffers hold fewer than two
//!    pieces. A closed loop of 256-byte `append_durable`s never takes the trip.
//! 2. **Held syncs** ([`sync_due`]): the flusher starts an fdatasync only when it serves
//!    someone: a waiting commit that the completed watermark covers, a close, or a shard
//!    with no write pending and either a commit waiting or nothing more on its way (no
//!    record in the open batch, and the last batch sealed was not a piece). Pieces that
//!    completed while the rest of their commit is still being copied or written wait for
//!    it, so one commit still costs one fdatasync (an earlier streaming variant without
//!    this made two per commit and was slower). A sync never waits for more than a ring's
//!    worth of unsynced bytes.
//!
//! Nothing is acknowledged earlier or later than before: a commit resolves after an
//! fdatasync that started after its last record's write completed, and a sync that a
//! waiting commit needs is never held (it starts as soon as the completed watermark
//! covers that commit, which is also the earliest moment it could have started before).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::state::State;

/// Bytes after which an open batch that no commit waits for is sealed as a piece.
pub(crate) const PIECE_BYTES: usize = 512 << 10;

/// The piece size for flush buffers of `flush_buffer_bytes`: `None` (no piece seals) when a
/// buffer holds fewer than two pieces.
pub(crate) fn piece_bytes(flush_buffer_bytes: usize) -> Option<usize> {
    (flush_buffer_bytes >= 2 * PIECE_BYTES).then_some(PIECE_BYTES)
}

/// Whether the open batch should be sealed as a piece now: it holds at least `piece`
/// bytes and no commit waits for any of its records.
#[inline]
pub(crate) fn piece_due(st: &State, piece: Option<usize>) -> bool {
    let Some(piece) = piece else {
        return false;
    };
    if st.ring.open_used_bytes() < piece {
        return false;
    }
    assert!(
        st.ring.open_record_count() > 0,
        "a full piece holds records"
    );
    !st.commit_waits_for_open()
}

/// Whether the flusher should start an fdatasync of the completed, unsynced writes now
/// (with `Durability::Fdatasync`; see the module docs). `limit_bytes` bounds how much may
/// wait unsynced.
pub(crate) fn sync_due(st: &State, limit_bytes: u64) -> bool {
    assert!(!st.io.dirty.is_empty() && st.io.sync.is_none());
    assert!(st.marks.completed_lsn >= st.marks.durable_lsn);
    if st.lifecycle.close_requested() || st.io.unsynced_bytes >= limit_bytes {
        return true;
    }
    if st.wakers.commits.min_lsn() <= st.marks.completed_lsn {
        return true; // a waiting commit is covered: never hold it
    }
    // Nothing more on its way to the device: sync what is written, unless the last batch
    // was a piece that no one waits for yet (the rest of its batch is still to come: the
    // appender may be between two pieces, in its trip through the reactor).
    let waiting = st.wakers.commits.max_lsn() > st.marks.durable_lsn;
    let more_coming = st.pacing.piece_run || st.ring.open_record_count() > 0;
    st.ring.writes_pending() == 0 && (waiting || !more_coming)
}

/// How long the timer of [`yield_to_reactor`] runs: due by the time the reactor looks.
const REACTOR_TURN: Duration = Duration::from_micros(1);

/// Lets the executor make one trip through its reactor before the calling task goes on,
/// so that I/O queued meanwhile (the flusher's write of a sealed piece) reaches the kernel.
/// glommio 0.9 submits queued I/O only between runs of its task queues, which end only
/// when no task is runnable (yielding the task queue does not end them when it is the
/// only queue); a timer that is due almost at once does: the reactor wakes it. Returns
/// `Pending` exactly once, so the flusher (woken by the seal) always runs first; if the
/// timer is due before it is even registered (a stalled vCPU), the task only requeues.
pub(crate) async fn yield_to_reactor() {
    let mut timer = glommio::timer::Timer::new(REACTOR_TURN);
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        if Pin::new(&mut timer).poll(cx).is_ready() {
            timer.reset(REACTOR_TURN);
            if Pin::new(&mut timer).poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    })
    .await
}
