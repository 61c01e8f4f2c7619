//! Positions in the log: [`Lsn`], [`ShardId`] and [`Cut`].
//!
//! An [`Lsn`] is the sequence number of a record inside one shard's log. The first record a
//! shard ever stores gets `Lsn(1)`; every later record gets the next number. `Lsn(0)` means
//! "no record" (for example the durable LSN of an empty shard). LSNs of different shards are
//! unrelated: a position across shards is a [`Cut`].

use std::fmt;

/// The sequence number of a record in one shard's log (1-based; 0 means "none").
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct Lsn(pub u64);

impl Lsn {
    /// "No record": the durable LSN of a shard that holds nothing yet.
    pub const ZERO: Lsn = Lsn(0);

    /// The raw sequence number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LSN right after this one.
    pub const fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The index of a shard, `0..shard_count`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct ShardId(pub u32);

impl ShardId {
    /// The index as a `usize`, for indexing per-shard tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One [`Lsn`] per shard: a position across the whole log.
///
/// A cut is durable when every shard is durable up to its entry. A cut is consistent, not
/// transactional: it says nothing about records that were appended together on two shards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cut {
    lsns: Vec<Lsn>,
}

impl Cut {
    /// A cut from one LSN per shard, indexed by [`ShardId::index`].
    pub fn new(lsns: Vec<Lsn>) -> Cut {
        Cut { lsns }
    }

    /// The number of shards the cut covers.
    pub fn shard_count(&self) -> usize {
        self.lsns.len()
    }

    /// The cut's position in `shard`, or `None` when the cut does not cover that shard.
    pub fn get(&self, shard: ShardId) -> Option<Lsn> {
        self.lsns.get(shard.index()).copied()
    }

    /// The per-shard LSNs, indexed by shard.
    pub fn as_slice(&self) -> &[Lsn] {
        &self.lsns
    }
}
