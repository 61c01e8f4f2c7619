//! The header file's layout: every field is one aligned little-endian `u64` word at a fixed
//! word index. Nothing here touches memory; [`super::map`] turns indices into atomics.
//!
//! ```text
//! words   field                      written by       protected by
//!  0      magic "SWALSHM1"            rebuild, last    -
//!  1..=8  immutable: layout version, endianness marker, shard count, pin slot count,
//!         total bytes, boot id (2 words), creation time (unix us)
//!  9      xxh3-64 of words 1..=8      rebuild          -
//! 16..=21 owner: pid, start time (clock ticks after boot, /proc/<pid>/stat field 22),
//!         owned since (unix us), lease count, header generation, reserved
//! 24..    one 8-word (64-byte) block per shard:
//!           seq (seqlock), durable_lsn, first_lsn, publish count, active segment
//!           generation, check word (all under the seqlock), truncation floor, state
//! then    `pin_slot_count` reader pin slots of `pin_slot_words` words each:
//!           state, pid, start ticks, header generation, pinned since (unix us), 3 reserved,
//!           then the lowest LSN the reader needs, one word per shard (padded to 8 words)
//! ```
//!
//! Byte-range locks (OFD locks, never data) sit far beyond the data: the writer lease at
//! [`LEASE_LOCK_BYTE`], pin slot `i` at [`PIN_LOCK_BASE`] + `i`.

/// `b"SWALSHM1"` as a little-endian word; written last when the header is (re)built.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SWALSHM1");
/// The layout this build reads and writes. Any change to word meanings bumps it.
pub const LAYOUT_VERSION: u64 = 1;
/// Reads back as this value only on a machine of the same byte order.
pub const ENDIAN_MARKER: u64 = 0x0102_0304_0506_0708;
/// Bytes per word.
pub const WORD_BYTES: usize = 8;
/// Words per 64-byte cache line.
pub const LINE_WORDS: usize = 8;
/// Reader pin slots in every header: the most pinned snapshots alive at once.
pub const PIN_SLOT_COUNT: usize = 64;
/// The file name of the header inside the log directory.
pub const FILE_NAME: &str = "wal.shm";

/// The OFD-lock byte that grants the writer lease.
pub const LEASE_LOCK_BYTE: u64 = 1 << 40;
/// The OFD-lock byte of pin slot 0; slot `i` locks `PIN_LOCK_BASE + i`.
pub const PIN_LOCK_BASE: u64 = LEASE_LOCK_BYTE + 64;

// Fixed part.
pub const W_MAGIC: usize = 0;
pub const W_LAYOUT_VERSION: usize = 1;
pub const W_ENDIAN: usize = 2;
pub const W_SHARD_COUNT: usize = 3;
pub const W_PIN_SLOT_COUNT: usize = 4;
pub const W_TOTAL_BYTES: usize = 5;
pub const W_BOOT_ID_HI: usize = 6;
pub const W_BOOT_ID_LO: usize = 7;
pub const W_CREATED_UNIX_US: usize = 8;
pub const W_IMMUTABLE_XXH3: usize = 9;
/// The immutable words the checksum covers.
pub const IMMUTABLE_WORDS: std::ops::RangeInclusive<usize> = W_LAYOUT_VERSION..=W_CREATED_UNIX_US;

pub const W_OWNER_PID: usize = 16;
pub const W_OWNER_START_TICKS: usize = 17;
pub const W_OWNER_SINCE_UNIX_US: usize = 18;
pub const W_LEASE_COUNT: usize = 19;
pub const W_GENERATION: usize = 20;
/// The first shard block.
pub const W_SHARDS: usize = 24;

// Per-shard block, relative to its start.
pub const SHARD_BLOCK_WORDS: usize = LINE_WORDS;
pub const S_SEQ: usize = 0;
pub const S_DURABLE_LSN: usize = 1;
pub const S_FIRST_LSN: usize = 2;
pub const S_PUBLISHES: usize = 3;
pub const S_ACTIVE_GENERATION: usize = 4;
pub const S_CHECK: usize = 5;
pub const S_FLOOR: usize = 6;
pub const S_STATE: usize = 7;
/// The seqlock payload, in this order.
pub const SHARD_PAYLOAD: [usize; 5] = [
    S_DURABLE_LSN,
    S_FIRST_LSN,
    S_PUBLISHES,
    S_ACTIVE_GENERATION,
    S_CHECK,
];

/// `S_STATE` values.
pub const SHARD_CLOSED: u64 = 0;
pub const SHARD_OPEN: u64 = 1;
pub const SHARD_FAILED: u64 = 2;

// Pin slot, relative to its start.
pub const P_STATE: usize = 0;
pub const P_PID: usize = 1;
pub const P_START_TICKS: usize = 2;
pub const P_GENERATION: usize = 3;
pub const P_SINCE_UNIX_US: usize = 4;
pub const P_LSNS: usize = LINE_WORDS;
/// `P_STATE` values.
pub const PIN_FREE: u64 = 0;
pub const PIN_HELD: u64 = 1;

// The layout is part of the on-disk format: these hold at compile time.
const _: () = assert!(W_IMMUTABLE_XXH3 < W_OWNER_PID);
const _: () = assert!(W_GENERATION < W_SHARDS);
const _: () = assert!(
    (W_SHARDS * WORD_BYTES).is_multiple_of(64),
    "shard blocks are cache-line aligned"
);
const _: () = assert!(S_STATE < SHARD_BLOCK_WORDS && S_FLOOR < SHARD_BLOCK_WORDS);
const _: () = assert!(P_SINCE_UNIX_US < P_LSNS);
const _: () = assert!(
    LEASE_LOCK_BYTE > (1 << 32),
    "lock bytes lie beyond any header size"
);
const _: () = assert!(PIN_LOCK_BASE > LEASE_LOCK_BYTE);

/// Where everything sits for one shard count.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Shards the header describes.
    pub shard_count: usize,
    /// Reader pin slots.
    pub pin_slot_count: usize,
}

impl Geometry {
    /// The geometry this build writes for `shard_count` shards.
    pub fn new(shard_count: usize) -> Geometry {
        Geometry {
            shard_count,
            pin_slot_count: PIN_SLOT_COUNT,
        }
    }

    /// Words one pin slot takes: its fixed line plus one word per shard, whole lines.
    pub fn pin_slot_words(&self) -> usize {
        P_LSNS + self.shard_count.div_ceil(LINE_WORDS) * LINE_WORDS
    }

    /// The word index of `field` in shard `shard`'s block.
    pub fn shard_word(&self, shard: usize, field: usize) -> usize {
        debug_assert!(shard < self.shard_count && field < SHARD_BLOCK_WORDS);
        W_SHARDS + shard * SHARD_BLOCK_WORDS + field
    }

    /// The first word of the pin slots.
    pub fn pins_start(&self) -> usize {
        W_SHARDS + self.shard_count * SHARD_BLOCK_WORDS
    }

    /// The word index of `field` (a `P_*` index, or `P_LSNS + shard`) in pin slot `slot`.
    pub fn pin_word(&self, slot: usize, field: usize) -> usize {
        debug_assert!(slot < self.pin_slot_count && field < self.pin_slot_words());
        self.pins_start() + slot * self.pin_slot_words() + field
    }

    /// Words in the whole header.
    pub fn total_words(&self) -> usize {
        self.pins_start() + self.pin_slot_count * self.pin_slot_words()
    }

    /// Bytes in the whole header, rounded up to 4 KiB pages.
    pub fn total_bytes(&self) -> u64 {
        ((self.total_words() * WORD_BYTES) as u64).div_ceil(4096) * 4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_has_no_overlap() {
        for shards in [1usize, 2, 7, 8, 9, 1024] {
            let g = Geometry::new(shards);
            let last_shard_word = g.shard_word(shards - 1, S_STATE);
            assert!(last_shard_word < g.pins_start());
            assert_eq!(g.pins_start() % LINE_WORDS, 0);
            assert!(g.pin_word(0, P_LSNS + shards - 1) < g.pin_word(1, P_STATE));
            assert!(g.pin_word(g.pin_slot_count - 1, P_LSNS + shards - 1) < g.total_words());
            assert!(g.total_bytes() as usize >= g.total_words() * WORD_BYTES);
            assert!(g.total_bytes() < LEASE_LOCK_BYTE);
        }
        // 2 shards: 1 KiB of fixed part and shard blocks, 64 slots of 16 words.
        assert_eq!(Geometry::new(2).total_words(), 24 + 16 + 64 * 16);
    }
}
