//! [`ShardLogStore`]: openraft's log storage over one shardwal shard: on the shard's own
//! executor (backend [`Shard`], with [`crate::GlommioRuntime`]) or through the `Send` client
//! (backend [`crate::ClientShard`], openraft on tokio).
//!
//! ## One ordered log
//! Entries, the vote, the committed id, `truncate_after` and `purge` are all records of the
//! same shard log ([`crate::codec`]), so they stay in the order they were made. Reopening
//! replays them: an entry at index i replaces every entry from i on, a truncation drops what
//! follows its log id, a purge drops what precedes it.
//!
//! ## Durability
//! - `append` copies the entries into the shard's ring and returns: they are readable from
//!   the store at once (from the cache, which keeps what is not durable), not yet durable.
//!   `IOFlushed::io_completed` is called, in append order, from the group commit that
//!   covers them: many Raft appends share one fdatasync. A failed shard completes every
//!   pending callback with the error.
//! - `save_vote`, `save_committed`, `truncate_after` and `purge` return once their record is
//!   durable (covered by an fdatasync), as a Raft store must (a vote that is not synced can
//!   elect two leaders in one term).
//! - `purge` appends the current vote and committed id again after its own record, then
//!   truncates the shard before the oldest record still needed; the shard keeps anything a
//!   reader pin holds.
//!
//! ## Reads: an index, a cache of recent entries, and the shard
//! The store does not keep the log in memory. It keeps:
//! - an **index**: the LSN of every live entry (between the last purge and the end), 8
//!   bytes per entry in a `VecDeque<Lsn>` (Raft indexes are contiguous), trimmed by
//!   `purge` and `truncate_after`;
//! - a **cache** of the newest entries, within a byte budget ([`DEFAULT_CACHE_BYTES`],
//!   or [`ShardLogStore::open_with_cache`]). An entry costs its encoded record plus the
//!   in-memory entry struct. The oldest are evicted first, and only once durable: the
//!   cache always holds every entry not yet durable (so it may exceed the budget by
//!   what the shard has not synced yet, at most the shard's ring), and only those.
//!
//! `try_get_log_entries` serves the cached part of a range from the cache (a clone per
//! entry) and the older part through a forward reader of the shard
//! ([`LogBackend::read_from`]) from the first wanted entry's LSN: it decodes the wanted
//! entries and skips the store's other records in between (votes, committed ids,
//! overwritten entries). Memory per call: the range plus the reader's buffer (one 1 MiB
//! chunk for a [`Shard`], one 1 MiB batch through the client).
//!
//! Cost of a miss: a **new** reader ([`Shard::reader`]) begins at the batch the shard knows
//! nearest below the LSN and reads at most about 1 MiB plus one batch before the first
//! wanted record. The shard knows the batches it wrote since it opened (its batch index,
//! one entry per MiB of segment), and those of every older segment a reader has walked
//! from its start: the store's own open replays the whole shard from its first record, so
//! after [`ShardLogStore::open`] every segment of the log is covered (see `shardwal`'s
//! `seek` module; 16 bytes per MiB of log, at most 16,384 older segments). Only a
//! segment that no walk has covered (none, for a store opened by
//! [`ShardLogStore::open`] on up to 16,384 older segments) is walked from its first
//! frame, up to one segment (`segment_bytes`, 64 MiB by default). The store also keeps
//! the reader a miss used, positioned after it, and the
//! next miss that starts at most [`CURSOR_REUSE_RECORDS`] records further on continues
//! there: a lagging follower catching up sequentially costs what its ranges hold (plus
//! the store's records in between), not a segment per call. A kept reader ends at the
//! durable LSN it was opened at; a read past it opens a new reader (one more walk). A
//! purge drops the kept reader (so that no pin or open file holds back the truncation).
//! With a [`Shard`] backend the reads are blocking `std::fs` reads on the shard's executor
//! (the Raft thread); through the client, on the thread that polls the store.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::{OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shardwal::{Lsn, Shard};

use crate::backend::LogBackend;
use crate::codec::{self, LogRecord};

/// The record type of a store for `C`.
type RecordOf<C> = LogRecord<EntryOf<C>, VoteOf<C>, LogIdOf<C>>;

/// The entry cache's default budget: 8 MiB (an entry costs its encoded record plus the
/// in-memory entry struct).
pub const DEFAULT_CACHE_BYTES: usize = 8 << 20;

/// A shard read continues on the reader the previous one left when it starts at most this
/// many records after where that reader stopped; otherwise it opens a new reader.
pub const CURSOR_REUSE_RECORDS: u64 = 4096;

/// openraft's log storage over one shard (one Raft group per shard), reached through the
/// backend `B`. Cheap to clone: the clones share the state, as openraft's log reader must.
/// Single-threaded (openraft's `single-threaded` mode): it lives on the thread that opened
/// it.
pub struct ShardLogStore<C: RaftTypeConfig, B: LogBackend = Shard> {
    backend: B,
    state: Rc<RefCell<State<C>>>,
    /// The reader the last shard read left, positioned after it (taken while a read runs).
    cursor: Rc<RefCell<Option<Cursor<B>>>>,
}

impl<C: RaftTypeConfig, B: LogBackend> Clone for ShardLogStore<C, B> {
    fn clone(&self) -> Self {
        ShardLogStore {
            backend: self.backend.clone(),
            state: self.state.clone(),
            cursor: self.cursor.clone(),
        }
    }
}

/// A backend reader and the next LSN it hands out.
struct Cursor<B: LogBackend> {
    inner: B::Cursor,
    next: Lsn,
}

/// What a store's read path holds and has done since it was opened (for tests and
/// monitoring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadPathStats {
    /// Live entries (between the last purge and the end); the index holds 8 bytes (an LSN)
    /// for each.
    pub indexed_entries: u64,
    /// Entries in the cache: the newest live ones.
    pub cached_entries: u64,
    /// The cache's cost in bytes: per entry, its encoded record plus the in-memory entry
    /// struct. At most `budget_bytes` plus what is not durable yet.
    pub cached_bytes: u64,
    /// The cache's budget in bytes.
    pub budget_bytes: u64,
    /// Entries `try_get_log_entries` served from the cache.
    pub entries_from_cache: u64,
    /// Entries `try_get_log_entries` read from the shard.
    pub entries_from_shard: u64,
    /// Records the shard's readers handed to the store (wanted entries and the store's
    /// records in between; not the frames a new reader walks before its first LSN).
    pub records_read: u64,
    /// Shard readers opened (a miss continues on the previous reader when it can).
    pub readers_opened: u64,
}

/// The newest live entries, oldest first: the cache covers indexes `end - len .. end` of
/// the index (a suffix of the live log).
struct Cache<C: RaftTypeConfig> {
    /// (entry, its cost in bytes).
    entries: VecDeque<(EntryOf<C>, usize)>,
    bytes: usize,
    budget: usize,
}

impl<C: RaftTypeConfig> Cache<C> {
    fn pop_front(&mut self) {
        if let Some((_, cost)) = self.entries.pop_front() {
            self.bytes -= cost;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, cost)) = self.entries.pop_back() {
            self.bytes -= cost;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// What the store knows, rebuilt from the shard log on open.
struct State<C: RaftTypeConfig> {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    /// The index of the first live entry (meaningful when `lsns` is not empty).
    first: u64,
    /// The LSN of each live entry, `first ..`; increasing (an entry at index i is always
    /// written after the one at i - 1).
    lsns: VecDeque<Lsn>,
    /// The log id of the last live entry.
    last_log_id: Option<LogIdOf<C>>,
    cache: Cache<C>,
    /// Every record up to here is durable (the cache may evict entries up to it).
    durable: Lsn,
    /// Purges so far (a read started before one does not keep its reader).
    purges: u64,
    stats: ReadPathStats,
    /// Appends whose callback waits for durability, in append order: (last LSN, callback).
    unflushed: VecDeque<(Lsn, IOFlushed<C>)>,
    /// Whether the task that completes `unflushed` runs.
    completer_running: bool,
}

/// What an entry costs in the cache: its encoded record and the entry struct.
fn entry_cost<C: RaftTypeConfig>(encoded_len: usize) -> usize {
    encoded_len + std::mem::size_of::<EntryOf<C>>()
}

impl<C, B> ShardLogStore<C, B>
where
    C: RaftTypeConfig,
    B: LogBackend,
    EntryOf<C>: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Opens the store on `backend` with an entry cache of [`DEFAULT_CACHE_BYTES`],
    /// replaying every durable record of its shard. Errors: the shard's read errors, or
    /// `InvalidData` for a record that is not this store's or is of a newer format version,
    /// or an entry that leaves a gap in the log (nothing is changed then).
    pub async fn open(backend: B) -> io::Result<Self> {
        Self::open_with_cache(backend, DEFAULT_CACHE_BYTES).await
    }

    /// [`ShardLogStore::open`] with an entry cache of `cache_bytes` (see the module's
    /// "Reads"; 0 keeps only what is not durable yet).
    pub async fn open_with_cache(backend: B, cache_bytes: usize) -> io::Result<Self> {
        let mut state = State {
            vote: None,
            committed: None,
            last_purged: None,
            first: 0,
            lsns: VecDeque::new(),
            last_log_id: None,
            cache: Cache {
                entries: VecDeque::new(),
                bytes: 0,
                budget: cache_bytes,
            },
            durable: Lsn::ZERO,
            purges: 0,
            stats: ReadPathStats::default(),
            unflushed: VecDeque::new(),
            completer_running: false,
        };
        backend
            .replay(|lsn, bytes| {
                // Every replayed record is durable.
                state.durable = lsn;
                state.replay(lsn, codec::decode(bytes)?, bytes.len())
            })
            .await?;
        Ok(ShardLogStore {
            backend,
            state: Rc::new(RefCell::new(state)),
            cursor: Rc::new(RefCell::new(None)),
        })
    }

    /// The backend under the store (the shard, or the client and shard id).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The read path's sizes and counters (see [`ReadPathStats`]).
    pub fn read_path_stats(&self) -> ReadPathStats {
        let s = self.state.borrow();
        ReadPathStats {
            indexed_entries: s.lsns.len() as u64,
            cached_entries: s.cache.entries.len() as u64,
            cached_bytes: s.cache.bytes as u64,
            budget_bytes: s.cache.budget as u64,
            ..s.stats
        }
    }

    /// Copies `record` into the shard's ring; returns its LSN.
    async fn write(&self, record: &RecordOf<C>) -> io::Result<Lsn> {
        self.backend.append(codec::encode(record)?).await
    }

    /// Appends encoded entries as one batch and records them; returns the last LSN.
    async fn write_batch(&self, batch: Vec<(Vec<u8>, EntryOf<C>)>) -> io::Result<Lsn> {
        assert!(!batch.is_empty());
        let costs: Vec<usize> = batch
            .iter()
            .map(|(r, _)| entry_cost::<C>(r.len()))
            .collect();
        let (records, entries): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let first = match records.len() {
            1 => {
                self.backend
                    .append(records.into_iter().next().expect("one"))
                    .await?
            }
            _ => self.backend.append_batch(records).await?,
        };
        let mut state = self.state.borrow_mut();
        let mut lsn = first;
        for (i, (entry, cost)) in entries.into_iter().zip(costs).enumerate() {
            lsn = Lsn(first.0 + i as u64);
            state.push_entry(lsn, entry, cost)?;
        }
        Ok(lsn)
    }

    /// Writes `record` and waits until it is durable.
    async fn write_durable(&self, record: &RecordOf<C>) -> io::Result<Lsn> {
        let lsn = self.write(record).await?;
        self.backend.make_durable(lsn).await?;
        self.state.borrow_mut().durable_to(lsn);
        Ok(lsn)
    }

    /// Starts the task that completes the waiting callbacks, unless it runs.
    fn complete_in_background(&self) {
        if std::mem::replace(&mut self.state.borrow_mut().completer_running, true) {
            return;
        }
        let store = self.clone();
        // The runtime's own task (glommio: detached; tokio: a dropped handle detaches).
        drop(C::spawn(async move { store.complete_flushed().await }));
    }

    /// Completes callbacks, in order, as group commits cover them; ends when none waits.
    async fn complete_flushed(&self) {
        loop {
            let next = self.state.borrow().unflushed.front().map(|(lsn, _)| *lsn);
            let Some(lsn) = next else {
                self.state.borrow_mut().completer_running = false;
                return;
            };
            let outcome = self.backend.make_durable(lsn).await;
            if outcome.is_ok() {
                self.state.borrow_mut().durable_to(lsn);
            }
            loop {
                let mut state = self.state.borrow_mut();
                // Every callback up to `lsn` is covered by this durable point (those above
                // it wait for the next round).
                let covered = match (&outcome, state.unflushed.front()) {
                    (Ok(()), Some((l, _))) => *l <= lsn,
                    (Err(_), Some(_)) => true,
                    (_, None) => false,
                };
                if !covered {
                    break;
                }
                let (_, callback) = state.unflushed.pop_front().expect("front exists");
                drop(state);
                let result = match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                callback.io_completed(result);
            }
        }
    }

    /// Reads the entries at `lsns` (indexes `first ..`, in order) from the shard into `out`,
    /// on the kept reader when it is just behind, else on a new one; keeps the reader
    /// unless a purge ran meanwhile.
    async fn read_from_shard(
        &self,
        first: u64,
        lsns: &[Lsn],
        out: &mut Vec<EntryOf<C>>,
    ) -> io::Result<()> {
        let purges = self.state.borrow().purges;
        let start = lsns[0];
        let mut cursor = self
            .cursor
            .borrow_mut()
            .take()
            .filter(|c| c.next <= start && start.0 - c.next.0 <= CURSOR_REUSE_RECORDS);
        let (mut records, mut opened) = (0u64, 0u64);
        // Whether the reader in use was opened at the wanted entry (then it must have it).
        let mut fresh = false;
        let mut k = 0;
        let outcome = loop {
            if k == lsns.len() {
                break Ok(());
            }
            let c = match &mut cursor {
                Some(c) => c,
                None => {
                    let inner = match self.backend.read_from(lsns[k]) {
                        Ok(inner) => inner,
                        Err(e) => break Err(e),
                    };
                    opened += 1;
                    fresh = true;
                    cursor.insert(Cursor {
                        inner,
                        next: lsns[k],
                    })
                }
            };
            let (lsn, bytes) = match B::next_record(&mut c.inner).await {
                Some(Ok(record)) => record,
                Some(Err(e)) => break Err(e),
                // This reader ends before the entry: a new one covers more, unless this
                // one was new.
                None if !fresh => {
                    cursor = None;
                    continue;
                }
                None => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "raft entry {} (lsn {}) is not readable from the shard",
                            first + k as u64,
                            lsns[k]
                        ),
                    ))
                }
            };
            c.next = lsn.next();
            records += 1;
            if lsn < lsns[k] {
                continue; // another record of the store, or an overwritten entry
            }
            let index = first + k as u64;
            let entry = match (lsn == lsns[k])
                .then(|| codec::decode::<EntryOf<C>, VoteOf<C>, LogIdOf<C>>(&bytes))
            {
                Some(Ok(LogRecord::Entry(e))) if e.index() == index => e,
                Some(Err(e)) => break Err(e),
                _ => {
                    break Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("raft entry {index} is not at lsn {} of the shard", lsns[k]),
                    ))
                }
            };
            out.push(entry);
            fresh = false;
            k += 1;
        };
        let mut state = self.state.borrow_mut();
        state.stats.records_read += records;
        state.stats.readers_opened += opened;
        state.stats.entries_from_shard += k as u64;
        if outcome.is_ok() && state.purges == purges {
            *self.cursor.borrow_mut() = cursor;
        }
        outcome
    }
}

impl<C: RaftTypeConfig> State<C> {
    /// One past the last live index.
    fn end(&self) -> u64 {
        self.first + self.lsns.len() as u64
    }

    /// The first index the cache holds (`end()` when it is empty).
    fn cache_start(&self) -> u64 {
        self.end() - self.cache.entries.len() as u64
    }

    /// Applies one replayed record (`len`: its encoded length).
    fn replay(&mut self, lsn: Lsn, record: RecordOf<C>, len: usize) -> io::Result<()> {
        match record {
            LogRecord::Entry(e) => self.push_entry(lsn, e, entry_cost::<C>(len))?,
            LogRecord::Vote(v) => self.vote = Some(v),
            LogRecord::Committed(c) => self.committed = c,
            LogRecord::TruncateAfter(t) => self.truncate_after(t.as_ref()),
            LogRecord::Purge(p) => self.purge(p),
        }
        Ok(())
    }

    /// Records an entry written at `lsn`: it replaces every entry from its index on.
    /// `InvalidData` when it would leave a gap after the last entry (never written by this
    /// store: appends are checked first).
    fn push_entry(&mut self, lsn: Lsn, entry: EntryOf<C>, cost: usize) -> io::Result<()> {
        let index = entry.index();
        if self.lsns.is_empty() || index <= self.first {
            self.lsns.clear();
            self.cache.clear();
            self.first = index;
        } else if index > self.end() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "raft entry {index} after entry {}: a gap in the log",
                    self.end() - 1
                ),
            ));
        } else {
            self.drop_from(index);
        }
        self.lsns.push_back(lsn);
        self.last_log_id = Some(entry.log_id());
        self.cache.bytes += cost;
        self.cache.entries.push_back((entry, cost));
        self.evict();
        Ok(())
    }

    /// Drops the live entries from index `from` on (from the index and the cache).
    fn drop_from(&mut self, from: u64) {
        if from <= self.first {
            self.lsns.clear();
            self.cache.clear();
            return;
        }
        while self.end() > from && !self.lsns.is_empty() {
            if self.cache_start() < self.end() {
                self.cache.pop_back();
            }
            self.lsns.pop_back();
        }
    }

    fn truncate_after(&mut self, last: Option<&LogIdOf<C>>) {
        let from = last.map_or(0, |l| l.index() + 1);
        if from < self.end() {
            self.drop_from(from);
            self.last_log_id = match self.lsns.is_empty() {
                true => None,
                false => last.cloned(),
            };
        }
    }

    fn purge(&mut self, upto: LogIdOf<C>) {
        let keep_from = upto.index() + 1;
        while !self.lsns.is_empty() && self.first < keep_from {
            if self.cache_start() == self.first {
                self.cache.pop_front();
            }
            self.lsns.pop_front();
            self.first += 1;
        }
        if self.lsns.is_empty() {
            self.last_log_id = None;
            self.cache.clear();
        }
        self.last_purged = Some(upto);
        self.purges += 1;
    }

    /// Everything up to `lsn` is durable: the cache may evict it.
    fn durable_to(&mut self, lsn: Lsn) {
        if lsn > self.durable {
            self.durable = lsn;
            self.evict();
        }
    }

    /// Evicts the oldest cached entries, while over budget, as long as they are durable.
    fn evict(&mut self) {
        while self.cache.bytes > self.cache.budget && !self.cache.entries.is_empty() {
            let lsn = self.lsns[(self.cache_start() - self.first) as usize];
            if lsn > self.durable {
                return;
            }
            self.cache.pop_front();
        }
    }

    /// The oldest record the store still needs: the first live entry's, or `state_from`
    /// (where the latest state records start) if that is older.
    fn oldest_needed(&self, state_from: Lsn) -> Lsn {
        self.lsns
            .front()
            .map_or(state_from, |e| (*e).min(state_from))
    }

    /// `range` as live indexes `lo .. hi` (empty when `lo >= hi`).
    fn clamp(&self, range: &impl RangeBounds<u64>) -> (u64, u64) {
        let lo = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        (lo.max(self.first), hi.min(self.end()))
    }

    /// `InvalidInput` unless `entries` continue the log: consecutive indexes, the first one
    /// right after the last entry (or the last purged one; any index on an empty log).
    fn check_contiguous(&self, entries: &[EntryOf<C>]) -> io::Result<()> {
        let last = match self.lsns.is_empty() {
            false => Some(self.end() - 1),
            true => self.last_purged.as_ref().map(|l| l.index()),
        };
        let mut expected = last.map(|l| l + 1);
        for e in entries {
            if expected.is_some_and(|x| x != e.index()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "out-of-order append: entry {} where {} was expected (nothing appended)",
                        e.index(),
                        expected.unwrap_or(0)
                    ),
                ));
            }
            expected = Some(e.index() + 1);
        }
        Ok(())
    }
}

impl<C, B> RaftLogReader<C> for ShardLogStore<C, B>
where
    C: RaftTypeConfig,
    B: LogBackend,
    EntryOf<C>: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// The live entries in `range`: the cached ones from memory, the older ones read from
    /// the shard (see the module's "Reads" for the memory and the cost). Errors: the
    /// shard's read errors; `UnexpectedEof` / `InvalidData` when an indexed entry is not
    /// where the index says (a damaged or foreign log).
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        // What to read, decided under one borrow: the LSNs of the missed part, and clones
        // of the cached part.
        let (lo, missed, cached) = {
            let mut s = self.state.borrow_mut();
            let (lo, hi) = s.clamp(&range);
            if lo >= hi {
                return Ok(Vec::new());
            }
            let cache_start = s.cache_start();
            let missed: Vec<Lsn> = (lo..hi.min(cache_start))
                .map(|i| s.lsns[(i - s.first) as usize])
                .collect();
            let from = lo.max(cache_start);
            let cached: Vec<EntryOf<C>> = s
                .cache
                .entries
                .range((from - cache_start) as usize..(hi.max(from) - cache_start) as usize)
                .map(|(e, _)| e.clone())
                .collect();
            s.stats.entries_from_cache += cached.len() as u64;
            (lo, missed, cached)
        };
        let mut out = Vec::with_capacity(missed.len() + cached.len());
        if !missed.is_empty() {
            self.read_from_shard(lo, &missed, &mut out).await?;
        }
        out.extend(cached);
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.state.borrow().vote.clone())
    }
}

impl<C, B> RaftLogStorage<C> for ShardLogStore<C, B>
where
    C: RaftTypeConfig,
    B: LogBackend,
    EntryOf<C>: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let state = self.state.borrow();
        Ok(LogState {
            last_purged_log_id: state.last_purged.clone(),
            last_log_id: state
                .last_log_id
                .clone()
                .or_else(|| state.last_purged.clone()),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.write_durable(&LogRecord::Vote(vote.clone())).await?;
        self.state.borrow_mut().vote = Some(vote.clone());
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.write_durable(&LogRecord::Committed(committed.clone()))
            .await?;
        self.state.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.state.borrow().committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Raft appends right after the last entry (it truncates before it overwrites):
        // anything else is refused before a byte is written, so nothing is lost.
        let entries: Vec<EntryOf<C>> = entries.into_iter().collect();
        self.state.borrow().check_contiguous(&entries)?;
        // One batch (one ring copy; through the client, one cross-thread hop) per run of
        // entries that fits the backend's batch limit.
        let limit = self.backend.max_batch_bytes();
        let mut last = None;
        let mut batch: Vec<(Vec<u8>, EntryOf<C>)> = Vec::new();
        let mut batch_bytes = 0;
        for entry in entries {
            let bytes = codec::encode::<_, VoteOf<C>, LogIdOf<C>>(&LogRecord::Entry(&entry))?;
            let frame = shardwal::format::frame_bytes(bytes.len());
            if !batch.is_empty() && batch_bytes + frame > limit {
                last = Some(self.write_batch(std::mem::take(&mut batch)).await?);
                batch_bytes = 0;
            }
            batch_bytes += frame;
            batch.push((bytes, entry));
        }
        if !batch.is_empty() {
            last = Some(self.write_batch(batch).await?);
        }
        match last {
            None => callback.io_completed(Ok(())),
            Some(lsn) => {
                self.state.borrow_mut().unflushed.push_back((lsn, callback));
                self.complete_in_background();
            }
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.write_durable(&LogRecord::TruncateAfter(last_log_id.clone()))
            .await?;
        self.state.borrow_mut().truncate_after(last_log_id.as_ref());
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // The latest vote and committed id go again after every record that may be cut,
        // then the purge itself, so that replay from the cut rebuilds the same state.
        let (vote, committed) = {
            let s = self.state.borrow();
            (s.vote.clone(), s.committed.clone())
        };
        let state_from = self.write(&LogRecord::Committed(committed)).await?;
        if let Some(v) = vote {
            self.write(&LogRecord::Vote(v)).await?;
        }
        let end = self.write(&LogRecord::Purge(log_id.clone())).await?;
        self.backend.make_durable(end).await?;
        let before = {
            let mut s = self.state.borrow_mut();
            s.purge(log_id);
            s.oldest_needed(state_from)
        };
        // The kept reader goes first: its pin (client) or open file (shard) must not hold
        // back or outlive the segments the truncation removes.
        self.cursor.borrow_mut().take();
        self.backend.truncate_before(before).await?;
        Ok(())
    }
}
