//! What a shard measures as it works: counters ([`ShardMetrics`], a `Copy` snapshot from
//! [`crate::Shard::metrics`]) and a commit-latency histogram
//! ([`crate::Shard::commit_latency_us`]). The flush path also emits `tracing` spans and
//! events at debug level (`flush`, `write done`, `fdatasync done`).

/// The histogram shape used for commit latency: 1 us to 60 s, 2 significant digits.
pub fn new_latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds")
}

/// A snapshot of one shard's counters since it opened.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardMetrics {
    /// Records appended.
    pub appends: u64,
    /// Payload bytes appended.
    pub appended_bytes: u64,
    /// Batches sealed and written (one batch = one or more write calls).
    pub flushes: u64,
    /// Write calls submitted for batches (one per batch).
    pub write_ops: u64,
    /// Bytes written to segments by flushes (4 KiB-padded), zeroing excluded.
    pub written_bytes: u64,
    /// fdatasync calls completed successfully.
    pub fdatasyncs: u64,
    /// Appends that had to wait for a free flush buffer or a prepared segment.
    pub ring_full_waits: u64,
    /// Segments activated after the first.
    pub rotations: u64,
    /// Segments prepared ahead of need by the flusher (new reserved files or recycled).
    pub segments_prepared: u64,
    /// Of those, segments made from a spare file (recycled) instead of a new file.
    pub segments_recycled: u64,
    /// Segment files kept as spares by truncation, instead of removed.
    pub segments_retired_as_spares: u64,
    /// Bytes of zeros the flusher wrote so that records land on written blocks (see
    /// `zero_ahead`), in pieces of 256 KiB (or one flush buffer if smaller): through the
    /// prepared segment, and ahead of the write head while no commit waited; none while
    /// commits average [`ShardMetrics::sync_bytes_avg`] of 384 KiB or more. The zeroing of
    /// a new first segment by [`crate::Shard::open`] is not counted here.
    pub zeroed_bytes: u64,
    /// Bytes each durability point (an fdatasync; with `Durability::Dsync` a flusher pass
    /// that completed writes) made durable, as a running average in which each new one
    /// weighs a quarter; 4 KiB-padded batch bytes, 0 before the first. Zeroing ahead stops
    /// while it is 384 KiB or more (large commits: the zeros would cost more device time
    /// than the journal commits they save).
    pub sync_bytes_avg: u64,
    /// I/O errors seen (the first one fails the shard).
    pub io_errors: u64,
    /// Batches sealed by `append` as a piece of a larger batch that no commit waited for
    /// yet, so that their write overlaps the copy of the next piece (counted in `flushes`
    /// too).
    pub piece_seals: u64,
    /// Full-size fill buffers allocated, after a partial batch, outside the io_uring
    /// registered memory although the shard's arena is registered (glommio falls back to
    /// the heap when its DMA arena cannot serve one). Each such buffer still works, but
    /// its writes cost the kernel a page pinning. Expected to stay 0.
    pub unregistered_refills: u64,
}
