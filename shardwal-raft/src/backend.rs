//! Where a [`crate::ShardLogStore`] keeps its records: a [`Shard`] on the executor the store
//! runs on (openraft on [`crate::GlommioRuntime`]), or a shard behind the `Send`
//! [`Client`] ([`ClientShard`], openraft on tokio or any other runtime).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::StreamExt;
use shardwal::{Client, Error, LogReader, Lsn, ReadStream, Record, Shard, ShardId};

/// A shardwal error as the `io::Error` openraft's storage API speaks, keeping its kind.
pub(crate) fn io_error(e: Error) -> io::Error {
    io::Error::new(e.io_kind().unwrap_or(io::ErrorKind::Other), e)
}

/// What a log store needs from a shard: append, make durable, truncate, replay, and read
/// forward from an LSN.
pub trait LogBackend: Clone + 'static {
    /// A forward reader over the shard's durable records, from [`LogBackend::read_from`].
    type Cursor: 'static;

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

    /// A reader over the durable records from `from` on, in LSN order, up to the durable
    /// LSN at about this call (a later record may or may not be covered: the reader then
    /// ends, and a new one picks up from there). Errors: the shard's, `from` below the first
    /// stored record among them (for the client backend they come from the first
    /// [`LogBackend::next_record`]).
    fn read_from(&self, from: Lsn) -> io::Result<Self::Cursor>;

    /// The next record of `cursor` (its LSN and payload); `None` at its end. After an
    /// `Err` the cursor is done.
    fn next_record(
        cursor: &mut Self::Cursor,
    ) -> impl Future<Output = Option<io::Result<(Lsn, Bytes)>>>;
}

/// [`Shard::reader`]: `std::fs` reads on the calling thread (the shard's executor), in
/// chunks of `shardwal::format::CHUNK_BYTES`. It starts at the first frame of the segment
/// that holds `from` and walks the frames before `from` without handing them out.
impl LogBackend for Shard {
    type Cursor = LogReader;
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

    fn read_from(&self, from: Lsn) -> io::Result<LogReader> {
        self.reader(from).map_err(io_error)
    }

    async fn next_record(cursor: &mut LogReader) -> Option<io::Result<(Lsn, Bytes)>> {
        let record = cursor.next()?;
        Some(record.map(|r| (r.lsn, r.payload)).map_err(io_error))
    }
}

/// A [`ClientShard`]'s reader: the client's [`ReadStream`] (read pin included) and the rest
/// of its current batch (up to 1 MiB of payload).
pub struct ClientCursor {
    stream: Pin<Box<ReadStream>>,
    batch: VecDeque<Record>,
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

/// [`Client::read`]: the stream reads the segment files on the polling thread, in batches
/// of up to 1 MiB of payload (it reads ahead to fill a batch), starting at the first frame
/// of the segment that holds `from`; its read pin holds back truncation of what it still
/// needs until it is dropped.
impl LogBackend for ClientShard {
    type Cursor = ClientCursor;
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

    fn read_from(&self, from: Lsn) -> io::Result<ClientCursor> {
        Ok(ClientCursor {
            stream: Box::pin(self.client.read(self.shard, from)),
            batch: VecDeque::new(),
        })
    }

    async fn next_record(cursor: &mut ClientCursor) -> Option<io::Result<(Lsn, Bytes)>> {
        loop {
            if let Some(r) = cursor.batch.pop_front() {
                return Some(Ok((r.lsn, r.payload)));
            }
            match cursor.stream.next().await? {
                Ok(records) => cursor.batch = records.into(),
                Err(e) => return Some(Err(io_error(e))),
            }
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

/// A [`MemoryBackend`]'s reader: the next LSN it hands out.
pub struct MemoryCursor {
    records: std::rc::Rc<std::cell::RefCell<Vec<MemoryRecord>>>,
    next: Lsn,
}

impl LogBackend for MemoryBackend {
    type Cursor = MemoryCursor;
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

    fn read_from(&self, from: Lsn) -> io::Result<MemoryCursor> {
        let first = self.records.borrow().first().map_or(Lsn(1), |(l, _)| *l);
        if from < first {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("lsn {from} was truncated (the log starts at {first})"),
            ));
        }
        Ok(MemoryCursor {
            records: self.records.clone(),
            next: from,
        })
    }

    async fn next_record(cursor: &mut MemoryCursor) -> Option<io::Result<(Lsn, Bytes)>> {
        let records = cursor.records.borrow();
        let at = records.partition_point(|(l, _)| *l < cursor.next);
        let (lsn, bytes) = records.get(at)?;
        cursor.next = lsn.next();
        Some(Ok((*lsn, Bytes::from(bytes.clone()))))
    }
}
