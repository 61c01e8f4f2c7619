//! Where a [`crate::ShardLogStore`] keeps its records: a [`Shard`] on the executor the store
//! runs on (openraft on [`crate::GlommioRuntime`]), or a shard behind the `Send`
//! [`Client`] ([`ClientShard`], openraft on tokio or any other runtime).

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures::StreamExt;
use shardwal::{Client, Error, Lsn, Shard, ShardId};

/// A shardwal error as the `io::Error` openraft's storage API speaks, keeping its kind.
pub(crate) fn io_error(e: Error) -> io::Error {
    io::Error::new(e.io_kind().unwrap_or(io::ErrorKind::Other), e)
}

/// The four things a log store needs from a shard.
pub trait LogBackend: Clone + 'static {
    /// Copies `record` into the shard's ring; resolves to its LSN (not yet durable).
    fn append(&self, record: Vec<u8>) -> impl Future<Output = io::Result<Lsn>>;

    /// Copies `records` into the shard's ring as one batch with contiguous LSNs; resolves to
    /// the first one. The caller keeps a batch within [`LogBackend::max_batch_bytes`].
    fn append_batch(&self, records: Vec<Vec<u8>>) -> impl Future<Output = io::Result<Lsn>>;

    /// The largest batch [`LogBackend::append_batch`] takes: the sum of its records' frame
    /// lengths (`shardwal::format::frame_bytes`), in bytes.
    fn max_batch_bytes(&self) -> usize;

    /// Resolves once every record up to `lsn` is durable.
    fn make_durable(&self, lsn: Lsn) -> impl Future<Output = io::Result<()>>;

    /// Drops the shard's whole segments below `before` (reader pins are honoured).
    fn truncate_before(&self, before: Lsn) -> impl Future<Output = io::Result<()>>;

    /// Calls `visit` with every durable record, in LSN order, from the first one stored.
    fn replay(
        &self,
        visit: impl FnMut(Lsn, &[u8]) -> io::Result<()>,
    ) -> impl Future<Output = io::Result<()>>;
}

impl LogBackend for Shard {
    async fn append(&self, record: Vec<u8>) -> io::Result<Lsn> {
        Shard::append(self, &record).await.map_err(io_error)
    }

    async fn append_batch(&self, records: Vec<Vec<u8>>) -> io::Result<Lsn> {
        let lsns = Shard::append_batch(self, &records)
            .await
            .map_err(io_error)?;
        Ok(*lsns.start())
    }

    fn max_batch_bytes(&self) -> usize {
        Shard::max_batch_bytes(self)
    }

    async fn make_durable(&self, lsn: Lsn) -> io::Result<()> {
        self.commit(lsn).await.map_err(io_error)
    }

    async fn truncate_before(&self, before: Lsn) -> io::Result<()> {
        Shard::truncate_before(self, before)
            .await
            .map(drop)
            .map_err(io_error)
    }

    async fn replay(&self, mut visit: impl FnMut(Lsn, &[u8]) -> io::Result<()>) -> io::Result<()> {
        for record in self.reader(self.first_lsn()).map_err(io_error)? {
            let record = record.map_err(io_error)?;
            visit(record.lsn, &record.payload)?;
        }
        Ok(())
    }
}

/// One shard of a log behind the `Send` client: a store for openraft on tokio (or any
/// runtime), one Raft group per shard.
#[derive(Clone)]
pub struct ClientShard {
    /// The client of the running log.
    pub client: Client,
    /// The shard this store owns.
    pub shard: ShardId,
}

impl LogBackend for ClientShard {
    async fn append(&self, record: Vec<u8>) -> io::Result<Lsn> {
        self.client
            .append(self.shard, Bytes::from(record))
            .await
            .map_err(io_error)
    }

    async fn append_batch(&self, records: Vec<Vec<u8>>) -> io::Result<Lsn> {
        let records = records.into_iter().map(Bytes::from).collect();
        let lsns = self.client.append_batch(self.shard, records).await;
        Ok(*lsns.map_err(io_error)?.start())
    }

    fn max_batch_bytes(&self) -> usize {
        self.client.max_batch_bytes()
    }

    async fn make_durable(&self, lsn: Lsn) -> io::Result<()> {
        self.client
            .wait_for(self.shard, lsn)
            .await
            .map(drop)
            .map_err(io_error)
    }

    async fn truncate_before(&self, before: Lsn) -> io::Result<()> {
        self.client
            .truncate_before(self.shard, before)
            .await
            .map(drop)
            .map_err(io_error)
    }

    async fn replay(&self, mut visit: impl FnMut(Lsn, &[u8]) -> io::Result<()>) -> io::Result<()> {
        let mut from = Lsn(1);
        'again: loop {
            let mut batches = self.client.read(self.shard, from);
            while let Some(batch) = batches.next().await {
                match batch {
                    Ok(records) => {
                        for r in records {
                            visit(r.lsn, &r.payload)?;
                        }
                    }
                    // The log was truncated before LSN 1: start where it starts now.
                    Err(Error::Truncated {
                        first_available, ..
                    }) if from == Lsn(1) => {
                        from = first_available;
                        continue 'again;
                    }
                    Err(e) => return Err(io_error(e)),
                }
            }
            return Ok(());
        }
    }
}

/// A record of a [`MemoryBackend`]: its LSN and bytes.
type MemoryRecord = (Lsn, Vec<u8>);

/// Records kept in memory only, "durable" at once: the same store with the cost of
/// durability taken out, as a ceiling for replication benchmarks. Never use it for data.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    records: std::rc::Rc<std::cell::RefCell<Vec<MemoryRecord>>>,
    last_lsn: std::rc::Rc<std::cell::Cell<u64>>,
}

impl LogBackend for MemoryBackend {
    async fn append(&self, record: Vec<u8>) -> io::Result<Lsn> {
        let lsn = Lsn(self.last_lsn.get() + 1);
        self.last_lsn.set(lsn.0);
        self.records.borrow_mut().push((lsn, record));
        Ok(lsn)
    }

    async fn append_batch(&self, records: Vec<Vec<u8>>) -> io::Result<Lsn> {
        let first = Lsn(self.last_lsn.get() + 1);
        for r in records {
            LogBackend::append(self, r).await?;
        }
        Ok(first)
    }

    fn max_batch_bytes(&self) -> usize {
        usize::MAX
    }

    async fn make_durable(&self, _lsn: Lsn) -> io::Result<()> {
        Ok(())
    }

    async fn truncate_before(&self, before: Lsn) -> io::Result<()> {
        self.records.borrow_mut().retain(|(l, _)| *l >= before);
        Ok(())
    }

    async fn replay(&self, mut visit: impl FnMut(Lsn, &[u8]) -> io::Result<()>) -> io::Result<()> {
        for (lsn, bytes) in self.records.borrow().iter() {
            visit(*lsn, bytes)?;
        }
        Ok(())
    }
}
