//! The two lock-free protocols of the header, written once over a [`Word`] so that the same
//! code runs on the mapped file and under the `loom` model checker (`--features loom`).
//!
//! # Seqlock (one writer per shard block, any number of readers)
//! Boehm, "Can seqlocks get along with programming language memory models?" (2012):
//! the writer makes `seq` odd, issues a release fence, stores the payload (relaxed) and
//! stores `seq + 2` with release; a reader loads `seq` (relaxed) and an acquire fence, loads
//! the payload (relaxed), an acquire fence, and loads `seq` again: equal and even means the
//! payload is one publication, untorn. Every payload word is an atomic, so a racing read is
//! a retry, never a data race. Readers use relaxed loads plus fences only, which also works
//! on a read-only mapping.
//!
//! # Pin handshake (a reader's pin against a shard's truncation)
//! A store-then-load pattern on both sides (Dekker): the reader stores its pin, then loads
//! the shard's floor; the truncating writer stores the floor, then loads the pins. With a
//! `SeqCst` fence between the store and the load on both sides, at least one side sees the
//! other: either the writer sees the pin (and keeps the segments), or the reader sees the
//! raised floor (and gives up the pin as too low).

use std::sync::atomic::Ordering::{self, Acquire, Relaxed, Release, SeqCst};

/// One shared 64-bit word and the fences that order accesses to it.
pub(crate) trait Word {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
    fn fence(order: Ordering)
    where
        Self: Sized;
}

impl Word for std::sync::atomic::AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        std::sync::atomic::AtomicU64::load(self, order)
    }
    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        std::sync::atomic::AtomicU64::store(self, value, order)
    }
    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order)
    }
}

#[cfg(feature = "loom")]
impl Word for loom::sync::atomic::AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        loom::sync::atomic::AtomicU64::load(self, order)
    }
    fn store(&self, value: u64, order: Ordering) {
        loom::sync::atomic::AtomicU64::store(self, value, order)
    }
    fn fence(order: Ordering) {
        loom::sync::atomic::fence(order)
    }
}

/// Publishes `values` into `payload` under `seq`. Only one thread may write a given
/// seqlock. A `seq` left odd by a writer that died mid-publication is repaired: the write
/// goes through odd to the next even value all the same.
#[inline]
pub(crate) fn seqlock_write<W: Word, const N: usize>(seq: &W, payload: [&W; N], values: [u64; N]) {
    let odd = seq.load(Relaxed) | 1;
    seq.store(odd, Relaxed);
    W::fence(Release);
    for (word, value) in payload.into_iter().zip(values) {
        word.store(value, Relaxed);
    }
    seq.store(odd.wrapping_add(1), Release);
}

/// One attempt to read `payload` under `seq`: `None` when a publication was in progress or
/// happened meanwhile (retry), `Some` with an untorn copy otherwise.
#[inline]
pub(crate) fn seqlock_try_read<W: Word, const N: usize>(
    seq: &W,
    payload: [&W; N],
) -> Option<[u64; N]> {
    let s1 = seq.load(Relaxed);
    W::fence(Acquire);
    if s1 & 1 == 1 {
        return None;
    }
    let values = payload.map(|w| w.load(Relaxed));
    W::fence(Acquire);
    let s2 = seq.load(Relaxed);
    (s1 == s2).then_some(values)
}

/// Whether the seqlock is odd: a publication is in progress, or its writer died in one.
pub(crate) fn seqlock_is_odd<W: Word>(seq: &W) -> bool {
    seq.load(Relaxed) & 1 == 1
}

/// The reader's half of the pin handshake: stores `lsns` (one per shard) and marks the slot
/// held, then checks every shard's floor. `Err(shard)` names the first shard whose floor is
/// above the pin: a truncation may already be deleting what the pin wanted, so the caller
/// must release the slot and retry with a higher pin.
pub(crate) fn pin_announce<W: Word>(
    pin_words: &[&W],
    lsns: &[u64],
    state: &W,
    held: u64,
    floors: &[&W],
) -> Result<(), usize> {
    for (w, lsn) in pin_words.iter().zip(lsns) {
        w.store(*lsn, Relaxed);
    }
    state.store(held, Relaxed);
    W::fence(SeqCst);
    for (i, (floor, lsn)) in floors.iter().zip(lsns).enumerate() {
        if floor.load(Relaxed) > *lsn {
            return Err(i);
        }
    }
    Ok(())
}

/// The writer's half: raises the shard's floor to `floor` (never lowers it), then returns
/// the lowest LSN among the held pins of this shard (`u64::MAX` when none). Segments whose
/// records are all below `min(floor, result)` may be deleted.
pub(crate) fn floor_then_scan<'a, W: Word + 'a>(
    floor_word: &W,
    floor: u64,
    held: u64,
    pins: impl IntoIterator<Item = (&'a W, &'a W)>,
) -> u64 {
    if floor > floor_word.load(Relaxed) {
        floor_word.store(floor, Relaxed);
    }
    W::fence(SeqCst);
    let mut lowest = u64::MAX;
    for (state, lsn) in pins {
        if state.load(Relaxed) == held {
            lowest = lowest.min(lsn.load(Relaxed));
        }
    }
    lowest
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn seqlock_round_trip_and_odd_repair() {
        let seq = AtomicU64::new(0);
        let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
        seqlock_write(&seq, [&a, &b], [7, 8]);
        assert_eq!(seqlock_try_read(&seq, [&a, &b]), Some([7, 8]));
        seq.store(5, Relaxed); // a writer died mid-publication
        assert!(seqlock_is_odd(&seq));
        assert_eq!(seqlock_try_read(&seq, [&a, &b]), None);
        seqlock_write(&seq, [&a, &b], [9, 10]);
        assert_eq!(seq.load(Relaxed), 6);
        assert_eq!(seqlock_try_read(&seq, [&a, &b]), Some([9, 10]));
    }

    #[test]
    fn pin_below_a_raised_floor_is_refused_and_held_pins_bound_truncation() {
        let floor = AtomicU64::new(0);
        let state = AtomicU64::new(0);
        let pin = AtomicU64::new(0);
        assert_eq!(floor_then_scan(&floor, 10, 1, [(&state, &pin)]), u64::MAX);
        assert_eq!(pin_announce(&[&pin], &[5], &state, 1, &[&floor]), Err(0));
        state.store(0, Relaxed);
        assert_eq!(pin_announce(&[&pin], &[12], &state, 1, &[&floor]), Ok(()));
        assert_eq!(floor_then_scan(&floor, 20, 1, [(&state, &pin)]), 12);
        assert_eq!(floor_then_scan(&floor, 3, 1, [(&state, &pin)]), 12);
        assert_eq!(floor.load(Relaxed), 20, "the floor never goes down");
    }
}

/// `loom` models: `cargo test --features loom --lib shm::protocol::loom_models`.
#[cfg(all(test, feature = "loom"))]
mod loom_models {
    use super::*;
    use loom::sync::atomic::AtomicU64;
    use loom::sync::Arc;
    use loom::thread;

    /// Two publications of a two-word payload whose words are always equal; a reader that
    /// gets a value never gets a torn pair, and never a pair older than one it saw.
    #[test]
    fn seqlock_reads_are_never_torn() {
        loom::model(|| {
            let words = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let w = words.clone();
            let writer = thread::spawn(move || {
                for v in 1..=2 {
                    seqlock_write(&w[0], [&w[1], &w[2]], [v, v]);
                }
            });
            let mut last = 0;
            for _ in 0..2 {
                if let Some([a, b]) = seqlock_try_read(&words[0], [&words[1], &words[2]]) {
                    assert_eq!(a, b, "torn read");
                    assert!(a >= last, "went back in time");
                    last = a;
                }
            }
            writer.join().unwrap();
            assert_eq!(
                seqlock_try_read(&words[0], [&words[1], &words[2]]),
                Some([2, 2])
            );
        });
    }

    /// The same writer without its release fence is caught: the model must find a torn
    /// read, which shows the model can see the bug the fence prevents.
    #[test]
    #[should_panic(expected = "torn read")]
    fn seqlock_without_the_writer_fence_tears() {
        loom::model(|| {
            let words = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let w = words.clone();
            let writer = thread::spawn(move || {
                let odd = w[0].load(Relaxed) | 1;
                w[0].store(odd, Relaxed);
                w[1].store(1, Relaxed);
                w[2].store(1, Relaxed);
                w[0].store(odd + 1, Release);
            });
            if let Some([a, b]) = seqlock_try_read(&words[0], [&words[1], &words[2]]) {
                assert_eq!(a, b, "torn read");
            }
            writer.join().unwrap();
        });
    }

    /// A reader pins LSN 5 while the writer truncates up to 10: never both "the reader
    /// holds its pin" and "the writer may delete below 10".
    #[test]
    fn pin_and_truncation_never_both_win() {
        loom::model(|| {
            // floor, pin state, pin lsn
            let words = Arc::new([AtomicU64::new(1), AtomicU64::new(0), AtomicU64::new(0)]);
            let w = words.clone();
            let writer = thread::spawn(move || floor_then_scan(&w[0], 10, 1, [(&w[1], &w[2])]));
            let pinned = pin_announce(&[&words[2]], &[5], &words[1], 1, &[&words[0]]).is_ok();
            let writer_deletes_below = 10u64.min(writer.join().unwrap());
            assert!(
                !(pinned && writer_deletes_below > 5),
                "the reader holds lsn 5 but the writer deletes below {writer_deletes_below}"
            );
        });
    }

    /// The same handshake with acquire-release fences instead of `SeqCst` ones is caught:
    /// both sides can miss each other (store buffering), so the model must fail.
    #[test]
    #[should_panic(expected = "pinned && writer_deletes_below")]
    fn pin_handshake_without_seqcst_fences_fails() {
        loom::model(|| {
            let words = Arc::new([AtomicU64::new(1), AtomicU64::new(0), AtomicU64::new(0)]);
            let w = words.clone();
            let writer = thread::spawn(move || {
                w[0].store(10, Relaxed);
                loom::sync::atomic::fence(Ordering::AcqRel);
                if w[1].load(Relaxed) == 1 {
                    w[2].load(Relaxed)
                } else {
                    u64::MAX
                }
            });
            words[2].store(5, Relaxed);
            words[1].store(1, Relaxed);
            loom::sync::atomic::fence(Ordering::AcqRel);
            let pinned = words[0].load(Relaxed) <= 5;
            let writer_deletes_below = 10u64.min(writer.join().unwrap());
            assert!(!(pinned && writer_deletes_below > 5));
        });
    }
}
