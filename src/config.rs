//! [`WalConfig`] and its builder. Every value is checked once, in [`WalConfigBuilder::build`],
//! so a shard never starts with a configuration it cannot honour.
//!
//! | setting | default | limits |
//! |---|---|---|
//! | `shard_count` | CPUs available to the process | 1 ..= 1024 |
//! | `placement` | [`CpuPlacement::PinnedPerShard`] | pinned shard `i` runs on CPU `i % cpus` |
//! | `segment_bytes` | 64 MiB, or `2 × flush_buffer_bytes` when that is more | multiple of 4 KiB, >= `flush_buffer_bytes + 4 KiB`, <= 1 TiB |
//! | `flush_buffer_bytes` | 1 MiB, grown to fit `max_record_bytes` and shrunk to fit `segment_bytes` | power of two, 8 KiB ..= 64 MiB |
//! | `flush_buffer_count` | 4 | 2 ..= 64 |
//! | `max_record_bytes` | 512 KiB, or `flush_buffer_bytes - 4160` when that is less | 1 ..= `flush_buffer_bytes - 4160` |
//! | `durability` | [`Durability::Fdatasync`] | |
//! | `publish_positions` | `true` | `false` only to measure what publishing costs |
//! | `recycled_segment_count` | 2 | 0 ..= 64 (0: never recycle) |
//! | `poll_write_completions` | `false` | `true` busy-polls while a segment write is in flight |
//!
//! # Defaults follow what you set
//! `segment_bytes`, `flush_buffer_bytes` and `max_record_bytes` depend on each other. A value
//! you leave out is derived from the ones you set, so that any one of them set alone builds:
//! 1. `flush_buffer_bytes`, unless set: 1 MiB; doubled while a record of `max_record_bytes`
//!    (when set) would not fit in one buffer; then halved while a buffer and the segment
//!    header block would not fit in `segment_bytes` (when set), down to 8 KiB.
//! 2. `segment_bytes`, unless set: 64 MiB, or `2 × flush_buffer_bytes` when that is more.
//! 3. `max_record_bytes`, unless set: 512 KiB, or the most one buffer holds when that is
//!    less.
//!
//! Only values you set yourself can contradict each other (for example 1 MiB segments with
//! 1 MiB flush buffers); then [`WalConfigBuilder::build`] names the first one it checks.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::FRAME_HEADER_BYTES;
use crate::segment::BLOCK_BYTES;

/// How a shard makes written records durable.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Write with O_DIRECT, then `fdatasync` the segment: one fdatasync covers every record
    /// of the writes that completed before it (group commit). The default.
    #[default]
    Fdatasync,
    /// Open segments with `O_DSYNC`: a write is durable when it completes, no fdatasync.
    Dsync,
    /// Never sync. A "commit" resolves as soon as the write completes, which does **not**
    /// survive power loss or a kernel crash. For measuring the rest of the pipeline only.
    NoSyncBenchmarkOnly,
}

/// Where the per-core runtime runs each shard's executor.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuPlacement {
    /// Shard `i` is pinned to CPU `i % cpus` (thread-per-core). The default.
    #[default]
    PinnedPerShard,
    /// Executors float over all CPUs (tests, shared machines, containers).
    Unbound,
}

/// A validated configuration. Build one with [`WalConfig::builder`].
#[derive(Clone, Debug)]
pub struct WalConfig {
    pub(crate) dir: PathBuf,
    pub(crate) shard_count: u32,
    pub(crate) placement: CpuPlacement,
    pub(crate) segment_bytes: u64,
    pub(crate) flush_buffer_bytes: usize,
    pub(crate) flush_buffer_count: usize,
    pub(crate) max_record_bytes: usize,
    pub(crate) durability: Durability,
    pub(crate) publish_positions: bool,
    pub(crate) recycled_segment_count: usize,
    pub(crate) poll_write_completions: bool,
}

/// Bytes of a flush buffer that can never hold payload: a segment header block that the
/// first write into a segment carries, the marker frame that starts every write and one
/// record header, rounded up.
pub const FLUSH_BUFFER_OVERHEAD_BYTES: usize = BLOCK_BYTES + 64;
// A marker, one record header and the record's 8-byte alignment fit in the 64 bytes.
const _: () = assert!(FRAME_HEADER_BYTES * 2 + 8 <= FLUSH_BUFFER_OVERHEAD_BYTES - BLOCK_BYTES);

impl WalConfig {
    /// A builder with the defaults from the module docs, for a log in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> WalConfigBuilder {
        WalConfigBuilder {
            dir: dir.into(),
            shard_count: None,
            placement: CpuPlacement::default(),
            segment_bytes: None,
            flush_buffer_bytes: None,
            flush_buffer_count: 4,
            max_record_bytes: None,
            durability: Durability::default(),
            publish_positions: true,
            recycled_segment_count: 2,
            poll_write_completions: false,
        }
    }

    /// The log directory, as an absolute path: a relative one given to the builder was
    /// resolved against the working directory when [`WalConfigBuilder::build`] ran.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Number of shards (one executor each).
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }
    /// CPU placement of the shard executors.
    pub fn placement(&self) -> CpuPlacement {
        self.placement
    }
    /// Size of every new segment file in bytes.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }
    /// Size of one flush buffer in bytes.
    pub fn flush_buffer_bytes(&self) -> usize {
        self.flush_buffer_bytes
    }
    /// Number of flush buffers in each shard's ring.
    pub fn flush_buffer_count(&self) -> usize {
        self.flush_buffer_count
    }
    /// Largest record payload accepted, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }
    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.durability
    }
    /// Whether shards publish their durable LSN to the shared header after every group
    /// commit (see [`crate::shm`]).
    pub fn publish_positions(&self) -> bool {
        self.publish_positions
    }
    /// Whether shard executors busy-poll for their segment writes' completions (see
    /// [`WalConfigBuilder::poll_write_completions`]).
    pub fn poll_write_completions(&self) -> bool {
        self.poll_write_completions
    }
    /// How many segment files each shard keeps as spares when truncation drops them, to
    /// reuse for later segments instead of new files that must be zeroed (0: never recycle).
    pub fn recycled_segment_count(&self) -> usize {
        self.recycled_segment_count
    }

    /// Bytes of DMA memory one shard allocates at open: every flush buffer plus one spare
    /// (which replaces a buffer trimmed to write a partial batch), plus one buffer of zeros
    /// used to zero segments ahead of the write head (256 KiB, or one flush buffer if
    /// smaller) and one zero block to clear a recycled segment's header.
    pub fn arena_bytes_per_shard(&self) -> usize {
        (self.flush_buffer_count + 1) * self.flush_buffer_bytes
            + crate::zero_ahead::piece_bytes(self.flush_buffer_bytes)
            + BLOCK_BYTES
    }

    /// The glommio `io_memory` the runtime gives each shard executor: the arena plus a
    /// quarter for the buddy allocator's bookkeeping, rounded up to a power of two.
    pub fn io_memory_bytes(&self) -> usize {
        (self.arena_bytes_per_shard() * 5 / 4).next_power_of_two()
    }
}

/// Builds a [`WalConfig`]; see the module docs for defaults and limits.
#[derive(Clone, Debug)]
pub struct WalConfigBuilder {
    dir: PathBuf,
    shard_count: Option<u32>,
    placement: CpuPlacement,
    /// `None`: derived from the others (see the module docs), like the other two below.
    segment_bytes: Option<u64>,
    flush_buffer_bytes: Option<usize>,
    flush_buffer_count: usize,
    max_record_bytes: Option<usize>,
    durability: Durability,
    publish_positions: bool,
    recycled_segment_count: usize,
    poll_write_completions: bool,
}

/// The default flush buffer size, when nothing else asks for another one.
const DEFAULT_FLUSH_BUFFER_BYTES: usize = 1 << 20;
/// The default segment size, when the flush buffer size does not ask for more.
const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The default record size limit, when the flush buffer size allows it.
const DEFAULT_MAX_RECORD_BYTES: usize = 512 << 10;
/// The smallest and largest flush buffers.
const MIN_FLUSH_BUFFER_BYTES: usize = 8 << 10;
const MAX_FLUSH_BUFFER_BYTES: usize = 64 << 20;
const _: () =
    assert!(DEFAULT_MAX_RECORD_BYTES <= DEFAULT_FLUSH_BUFFER_BYTES - FLUSH_BUFFER_OVERHEAD_BYTES);
const _: () = assert!(DEFAULT_SEGMENT_BYTES >= (DEFAULT_FLUSH_BUFFER_BYTES + BLOCK_BYTES) as u64);
const _: () = assert!(MIN_FLUSH_BUFFER_BYTES > FLUSH_BUFFER_OVERHEAD_BYTES);

/// The three sizes that depend on each other, each as set (`Some`) or left to its default.
#[derive(Copy, Clone, Debug)]
struct Sizes {
    segment_bytes: Option<u64>,
    flush_buffer_bytes: Option<usize>,
    max_record_bytes: Option<usize>,
}

impl Sizes {
    /// Fills in the sizes that were not set, in the order of the module docs, from the ones
    /// that were. Checks nothing: [`WalConfigBuilder::build`] checks the result.
    fn resolve(self) -> (u64, usize, usize) {
        let fb = self.flush_buffer_bytes.unwrap_or_else(|| {
            let mut fb = DEFAULT_FLUSH_BUFFER_BYTES;
            if let Some(max) = self.max_record_bytes {
                while fb < MAX_FLUSH_BUFFER_BYTES && fb - FLUSH_BUFFER_OVERHEAD_BYTES < max {
                    fb *= 2;
                }
            }
            if let Some(sb) = self.segment_bytes {
                while fb > MIN_FLUSH_BUFFER_BYTES && (fb + BLOCK_BYTES) as u64 > sb {
                    fb /= 2;
                }
            }
            fb
        });
        let sb = self
            .segment_bytes
            .unwrap_or_else(|| DEFAULT_SEGMENT_BYTES.max(2 * fb as u64));
        let max = self.max_record_bytes.unwrap_or_else(|| {
            DEFAULT_MAX_RECORD_BYTES.min(fb.saturating_sub(FLUSH_BUFFER_OVERHEAD_BYTES))
        });
        (sb, fb, max)
    }
}

impl WalConfigBuilder {
    /// Number of shards. Default: the CPUs available to this process.
    pub fn shard_count(mut self, shard_count: u32) -> Self {
        self.shard_count = Some(shard_count);
        self
    }
    /// CPU placement of shard executors. Default: pinned, one shard per CPU.
    pub fn placement(mut self, placement: CpuPlacement) -> Self {
        self.placement = placement;
        self
    }
    /// Size of each new segment file in bytes. Default 64 MiB (or twice the flush buffer
    /// size, when that is more). Setting it brings a flush buffer size and a record size
    /// limit that fit, unless you set those too (see the module docs).
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = Some(segment_bytes);
        self
    }
    /// Size of one flush buffer in bytes. Default 1 MiB, grown until a record of
    /// `max_record_bytes` fits and shrunk until the buffer fits in `segment_bytes`, when
    /// those are set (see the module docs).
    pub fn flush_buffer_bytes(mut self, flush_buffer_bytes: usize) -> Self {
        self.flush_buffer_bytes = Some(flush_buffer_bytes);
        self
    }
    /// Number of flush buffers per shard. Default 4.
    pub fn flush_buffer_count(mut self, flush_buffer_count: usize) -> Self {
        self.flush_buffer_count = flush_buffer_count;
        self
    }
    /// Largest record payload in bytes. Default 512 KiB, or what one flush buffer holds
    /// (`flush_buffer_bytes - 4160`) when that is less.
    pub fn max_record_bytes(mut self, max_record_bytes: usize) -> Self {
        self.max_record_bytes = Some(max_record_bytes);
        self
    }
    /// Durability mode. Default [`Durability::Fdatasync`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Segment files kept per shard as spares when [`crate::Shard::truncate_before`] drops
    /// them (0 ..= 64; default 2; 0 disables recycling). A new segment then reuses a spare:
    /// its first block is zeroed and it is renamed, instead of a new file being reserved and
    /// zeroed ahead of the write head (`segment_bytes` of extra writes). Each spare keeps `segment_bytes` of disk
    /// space in use.
    pub fn recycled_segment_count(mut self, count: usize) -> Self {
        self.recycled_segment_count = count;
        self
    }

    /// Whether shards publish their position to the shared header after every group
    /// commit. Default `true`. With `false`, cuts read from the header ([`crate::HeaderView`])
    /// only move when a shard opens or truncates; the writer lease, pins and reconcile work
    /// as always. Meant for measuring the cost of publishing, nothing else.
    pub fn publish_positions(mut self, publish_positions: bool) -> Self {
        self.publish_positions = publish_positions;
        self
    }

    /// Whether a shard's executor busy-polls for the completion of its segment writes
    /// instead of sleeping until the kernel wakes it. Default `false`.
    ///
    /// With `true`, [`crate::Shard::open`] puts the segment writes of its executor's thread
    /// on glommio's poll ring: while a write is in flight the executor spins (one CPU at
    /// 100 %) and sees the completion at once, instead of sleeping and paying the wake-up
    /// of an idle CPU (in a VM, an inter-processor interrupt and a halted vCPU's exit:
    /// about 45 us per write on the machine the README's figures come from). fdatasyncs
    /// are waited for as before. Worth it when every shard has a CPU of its own *and* the
    /// kernel has another CPU for its completion work (on the measured 2-vCPU VM: one shard
    /// gained 16-33 % of throughput, two shards lost throughput and tail latency instead;
    /// see the README's performance section). It costs CPU time and can lengthen the
    /// slowest commits, since a spinning shard delays kernel work queued on its CPU.
    ///
    /// It acts on the whole executor thread, and only if no `DmaFile` on the log's device
    /// was opened on that thread before the shard (glommio decides once per thread and
    /// device). On a device without poll queues glommio then also sends that thread's
    /// O_DIRECT *reads* to the poll ring, where they fail with `EOPNOTSUPP`: shardwal
    /// itself reads with buffered I/O, but do not read through glommio `DmaFile`s on a
    /// shard's executor with this on. [`crate::spawn`] and [`crate::Wal::start`] run shards
    /// on executors of their own, where nothing else opens files.
    ///
    /// Failure: a kernel that rejects polled writes (none known; the 6.18 kernel measured
    /// here accepts them) makes [`crate::Shard::open`] fail with [`Error::Io`] on its test
    /// write, before anything is written to the log.
    pub fn poll_write_completions(mut self, poll: bool) -> Self {
        self.poll_write_completions = poll;
        self
    }

    /// Checks every value and returns the configuration, or [`Error::InvalidConfig`] naming
    /// the first value that is out of range. A relative directory is made absolute here,
    /// against the current working directory ([`Error::Io`] when that cannot be read).
    pub fn build(self) -> Result<WalConfig> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.dir.as_os_str().is_empty() {
            return bad("dir must not be empty".into());
        }
        // Resolved once, here: glommio 0.9.0 opens directories with `openat(-1, path)`,
        // which works only for absolute paths, and a later change of the working
        // directory must not move the log. Symlinks stay in the path (the kernel follows
        // them); the directory need not exist yet.
        let dir = std::path::absolute(&self.dir)
            .map_err(|e| Error::io("resolving the log directory", &self.dir, e))?;
        debug_assert!(dir.is_absolute());
        let shard_count = match self.shard_count {
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        };
        if !(1..=1024).contains(&shard_count) {
            return bad(format!("shard_count = {shard_count}: must be 1 ..= 1024"));
        }
        let (sb, fb, max_record_bytes) = Sizes {
            segment_bytes: self.segment_bytes,
            flush_buffer_bytes: self.flush_buffer_bytes,
            max_record_bytes: self.max_record_bytes,
        }
        .resolve();
        if !fb.is_power_of_two() || !(MIN_FLUSH_BUFFER_BYTES..=MAX_FLUSH_BUFFER_BYTES).contains(&fb)
        {
            return bad(format!(
                "flush_buffer_bytes = {fb}: must be a power of two from 8 KiB to 64 MiB"
            ));
        }
        if !(2..=64).contains(&self.flush_buffer_count) {
            return bad(format!(
                "flush_buffer_count = {}: must be 2 ..= 64",
                self.flush_buffer_count
            ));
        }
        if !sb.is_multiple_of(BLOCK_BYTES as u64) || sb < (fb + BLOCK_BYTES) as u64 || sb > 1 << 40
        {
            return bad(format!(
                "segment_bytes = {sb}: must be a multiple of 4096, at least flush_buffer_bytes + 4096 ({}) and at most 1 TiB",
                fb + BLOCK_BYTES
            ));
        }
        let limit = fb - FLUSH_BUFFER_OVERHEAD_BYTES;
        if max_record_bytes == 0 || max_record_bytes > limit {
            // The buffer size was not set but limits the record size: say where it came
            // from, since the caller never named it.
            let derived = match self.flush_buffer_bytes {
                Some(_) => String::new(),
                None => format!(
                    " (flush_buffer_bytes was not set; it became {fb}, the largest its 64 MiB limit and segment_bytes = {sb} allow)"
                ),
            };
            return bad(format!(
                "max_record_bytes = {max_record_bytes}: must be 1 ..= flush_buffer_bytes - {FLUSH_BUFFER_OVERHEAD_BYTES} = {limit}{derived}"
            ));
        }
        if self.recycled_segment_count > 64 {
            return bad(format!(
                "recycled_segment_count = {}: must be 0 ..= 64",
                self.recycled_segment_count
            ));
        }
        Ok(WalConfig {
            dir,
            shard_count,
            placement: self.placement,
            segment_bytes: sb,
            flush_buffer_bytes: fb,
            flush_buffer_count: self.flush_buffer_count,
            max_record_bytes,
            durability: self.durability,
            publish_positions: self.publish_positions,
            recycled_segment_count: self.recycled_segment_count,
            poll_write_completions: self.poll_write_completions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> WalConfigBuilder {
        WalConfig::builder("/tmp/x").shard_count(2)
    }

    #[test]
    fn defaults_are_valid() {
        let c = base().build().unwrap();
        assert_eq!(c.segment_bytes(), 64 << 20);
        assert_eq!(c.max_record_bytes(), 512 << 10);
        assert!(c.io_memory_bytes() >= c.arena_bytes_per_shard());
    }

    #[test]
    fn each_bad_value_is_named() {
        let cases: Vec<(WalConfigBuilder, &str)> = vec![
            (WalConfig::builder(""), "dir"),
            (base().shard_count(0), "shard_count"),
            (base().shard_count(5000), "shard_count"),
            (base().flush_buffer_bytes(12 << 10), "flush_buffer_bytes"),
            (base().flush_buffer_bytes(4 << 10), "flush_buffer_bytes"),
            (base().flush_buffer_count(1), "flush_buffer_count"),
            (base().segment_bytes(1000), "segment_bytes"),
            (
                base().segment_bytes(1 << 20).flush_buffer_bytes(1 << 20),
                "segment_bytes",
            ),
            (base().segment_bytes(8 << 10), "segment_bytes"),
            (base().max_record_bytes(0), "max_record_bytes"),
            (
                base().max_record_bytes(1 << 20).flush_buffer_bytes(1 << 20),
                "max_record_bytes",
            ),
            (
                base().max_record_bytes(1 << 20).segment_bytes(1 << 20),
                "max_record_bytes",
            ),
            (base().max_record_bytes(64 << 20), "max_record_bytes"),
            (base().recycled_segment_count(65), "recycled_segment_count"),
        ];
        for (b, field) in cases {
            match b.build() {
                Err(Error::InvalidConfig(msg)) => assert!(msg.starts_with(field), "{msg}"),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    /// (segment, flush buffer, max record) as built from what was set.
    fn sizes(b: WalConfigBuilder) -> (u64, usize, usize) {
        let c = b.build().unwrap();
        (
            c.segment_bytes(),
            c.flush_buffer_bytes(),
            c.max_record_bytes(),
        )
    }

    #[test]
    fn defaults_follow_what_was_set() {
        const OVERHEAD: usize = FLUSH_BUFFER_OVERHEAD_BYTES;
        assert_eq!(sizes(base()), (64 << 20, 1 << 20, 512 << 10));
        // A small segment brings a buffer that fits and the record limit of that buffer.
        assert_eq!(
            sizes(base().segment_bytes(1 << 20)),
            (1 << 20, 512 << 10, (512 << 10) - OVERHEAD)
        );
        assert_eq!(
            sizes(base().segment_bytes(12 << 10)),
            (12 << 10, 8 << 10, (8 << 10) - OVERHEAD)
        );
        // A large record brings a buffer that holds it.
        assert_eq!(
            sizes(base().max_record_bytes(2 << 20)),
            (64 << 20, 4 << 20, 2 << 20)
        );
        // A large buffer brings a segment that holds it.
        assert_eq!(
            sizes(base().flush_buffer_bytes(64 << 20)),
            (128 << 20, 64 << 20, 512 << 10)
        );
        // A small buffer brings a record limit that fits it.
        assert_eq!(
            sizes(base().flush_buffer_bytes(64 << 10)),
            (64 << 20, 64 << 10, (64 << 10) - OVERHEAD)
        );
        // Two set values that fit together are kept; the third follows them.
        assert_eq!(
            sizes(base().segment_bytes(1 << 20).max_record_bytes(100 << 10)),
            (1 << 20, 512 << 10, 100 << 10)
        );
    }

    #[test]
    fn largest_record_allowed_fits() {
        let c = base()
            .flush_buffer_bytes(8 << 10)
            .segment_bytes(12 << 10)
            .max_record_bytes((8 << 10) - FLUSH_BUFFER_OVERHEAD_BYTES)
            .build()
            .unwrap();
        assert_eq!(c.max_record_bytes(), 4032);
    }
}
