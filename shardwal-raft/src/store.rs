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
//!   the store at once (an in-memory map), not yet durable. `IOFlushed::io_completed` is
//!   called, in append order, from the group commit that covers them: many Raft appends share
//!   one fdatasync. A failed shard completes every pending callback with the error.
//! - `save_vote`, `save_committed`, `truncate_after` and `purge` return once their record is
//!   durable (covered by an fdatasync), as a Raft store must (a vote that is not synced can
//!   elect two leaders in one term).
//! - `purge` appends the current vote and committed id again after its own record, then
//!   truncates the shard before the oldest record still needed; the shard keeps anything a
//!   reader pin holds.
//!
//! ## Reads
//! The live entries (between the last purge and the end) stay in memory, so a range read
//! costs what the range holds and never reads a segment. Memory grows with the unpurged
//! log: purge after snapshots (openraft does, per its snapshot policy).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
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

/// openraft's log storage over one shard (one Raft group per shard), reached through the
/// backend `B`. Cheap to clone: the clones share the state, as openraft's log reader must.
/// Single-threaded (openraft's `single-threaded` mode): it lives on the thread that opened
/// it.
pub struct ShardLogStore<C: RaftTypeConfig, B: LogBackend = Shard> {
    backend: B,
    state: Rc<RefCell<State<C>>>,
}

impl<C: RaftTypeConfig, B: LogBackend> Clone for ShardLogStore<C, B> {
    fn clone(&self) -> Self {
        ShardLogStore {
            backend: self.backend.clone(),
            state: self.state.clone(),
        }
    }
}

/// What the store knows, rebuilt from the shard log on open.
struct State<C: RaftTypeConfig> {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    /// The live entries by index, with the LSN of their record.
    entries: BTreeMap<u64, (Lsn, EntryOf<C>)>,
    /// Appends whose callback waits for durability, in append order: (last LSN, callback).
    unflushed: VecDeque<(Lsn, IOFlushed<C>)>,
    /// Whether the task that completes `unflushed` runs.
    completer_running: bool,
}

impl<C, B> ShardLogStore<C, B>
where
    C: RaftTypeConfig,
    B: LogBackend,
    EntryOf<C>: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Opens the store on `backend`, replaying every durable record of its shard. Errors:
    /// the shard's read errors, or `InvalidData` for a record that is not this store's or is
    /// of a newer format version (nothing is changed then).
    pub async fn open(backend: B) -> io::Result<Self> {
        let mut state = State {
            vote: None,
            committed: None,
            last_purged: None,
            entries: BTreeMap::new(),
            unflushed: VecDeque::new(),
            completer_running: false,
        };
        backend
            .replay(|lsn, bytes| {
                state.replay(lsn, codec::decode(bytes)?);
                Ok(())
            })
            .await?;
        Ok(ShardLogStore {
            backend,
            state: Rc::new(RefCell::new(state)),
        })
    }

    /// The backend under the store (the shard, or the client and shard id).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Copies `record` into the shard's ring; returns its LSN.
    async fn write(&self, record: &RecordOf<C>) -> io::Result<Lsn> {
        self.backend.append(codec::encode(record)?).await
    }

    /// Appends encoded entries as one batch and records them; returns the last LSN.
    async fn write_batch(&self, batch: Vec<(Vec<u8>, EntryOf<C>)>) -> io::Result<Lsn> {
        assert!(!batch.is_empty());
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
        for (i, entry) in entries.into_iter().enumerate() {
            lsn = Lsn(first.0 + i as u64);
            state.replay_entry(lsn, entry);
        }
        Ok(lsn)
    }

    /// Writes `record` and waits until it is durable.
    async fn write_durable(&self, record: &RecordOf<C>) -> io::Result<Lsn> {
        let lsn = self.write(record).await?;
        self.backend.make_durable(lsn).await?;
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
}

impl<C: RaftTypeConfig> State<C> {
    /// Applies one replayed record.
    fn replay(&mut self, lsn: Lsn, record: RecordOf<C>) {
        match record {
            LogRecord::Entry(e) => {
                let index = e.index();
                self.entries.split_off(&index);
                self.entries.insert(index, (lsn, e));
            }
            LogRecord::Vote(v) => self.vote = Some(v),
            LogRecord::Committed(c) => self.committed = c,
            LogRecord::TruncateAfter(t) => self.truncate_after(t.as_ref()),
            LogRecord::Purge(p) => self.purge(p),
        }
    }

    fn truncate_after(&mut self, last: Option<&LogIdOf<C>>) {
        let from = last.map_or(0, |l| l.index() + 1);
        self.entries.split_off(&from);
    }

    fn purge(&mut self, upto: LogIdOf<C>) {
        let keep = self.entries.split_off(&(upto.index() + 1));
        self.entries = keep;
        self.last_purged = Some(upto);
    }

    /// The oldest record the store still needs: the first live entry's, or `state_from`
    /// (where the latest state records start) if that is older.
    fn oldest_needed(&self, state_from: Lsn) -> Lsn {
        let oldest_entry = self.entries.values().map(|(lsn, _)| *lsn).min();
        oldest_entry.map_or(state_from, |e| e.min(state_from))
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
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let state = self.state.borrow();
        Ok(state
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
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
        let last = state.entries.values().next_back().map(|(_, e)| e.log_id());
        Ok(LogState {
            last_purged_log_id: state.last_purged.clone(),
            last_log_id: last.or_else(|| state.last_purged.clone()),
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
        self.backend.truncate_before(before).await?;
        Ok(())
    }
}

impl<C: RaftTypeConfig> State<C> {
    /// `InvalidInput` unless `entries` continue the log: consecutive indexes, the first one
    /// right after the last entry (or the last purged one; any index on an empty log).
    fn check_contiguous(&self, entries: &[EntryOf<C>]) -> io::Result<()> {
        let last = self.entries.keys().next_back().copied();
        let last = last.or_else(|| self.last_purged.as_ref().map(|l| l.index()));
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

    /// Records an appended entry: it replaces every entry from its index on.
    fn replay_entry(&mut self, lsn: Lsn, entry: EntryOf<C>) {
        self.replay(lsn, LogRecord::Entry(entry));
    }
}
