//! [`Wal`]: the executors that serve [`Client`]s, and their lifecycle guards.

use std::sync::Arc;

use super::inbox::Inbox;
use super::server::serve;
use super::Client;
use crate::batch::BatchLimits;
use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::lsn::{Cut, Lsn, ShardId};
use crate::shard::Shard;

/// Tells [`Wal::start`] whether a shard opened; dropped unsent (a panic), it says "no".
struct OpenSignal(Option<std::sync::mpsc::Sender<bool>>);

impl OpenSignal {
    fn send(&mut self, opened: bool) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(opened);
        }
    }
}

impl Drop for OpenSignal {
    fn drop(&mut self) {
        self.send(false);
    }
}

/// Shuts an inbox when its server's executor stops, however it stops (unwinding included).
struct ShutOnExit(Arc<Inbox>);

impl Drop for ShutOnExit {
    fn drop(&mut self) {
        self.0.shut();
    }
}

/// A running log served to [`Client`]s: one executor per shard.
///
/// Dropping a `Wal` without [`Wal::close`] closes it all the same and waits for its
/// executors (errors are discarded). A process that dies without either is safe too:
/// whatever was not yet durable may be lost, and reopening recovers the rest.
pub struct Wal {
    client: Client,
    handles: Option<crate::runtime::WalHandle<Lsn>>,
}

impl Wal {
    /// Starts one executor per shard (see [`crate::spawn`]), each serving a [`Client`], and
    /// waits until every shard has opened (recovery included), so that the log is owned by
    /// this process and its shared header is published when this returns.
    ///
    /// Errors: as [`crate::spawn`]; when a shard fails to open (for example
    /// [`Error::LogLocked`]: another process owns the directory), the shards that did open
    /// are closed and the first shard's error is returned.
    pub fn start(config: WalConfig) -> Result<Wal> {
        let shard_count = config.shard_count();
        let inboxes: Arc<[Arc<Inbox>]> = (0..shard_count)
            .map(|i| Arc::new(Inbox::new(ShardId(i))))
            .collect();
        let client = Client::new(inboxes.clone(), BatchLimits::of(&config));
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<bool>();
        let handle = crate::runtime::spawn_executors(config, move |cfg, id| {
            let inbox = inboxes[id.index()].clone();
            let mut opened = OpenSignal(Some(opened_tx.clone()));
            async move {
                let _shut = ShutOnExit(inbox.clone());
                let shard = Shard::open(&cfg, id).await;
                opened.send(shard.is_ok());
                serve(shard?, inbox).await
            }
        });
        let wal = Wal {
            client,
            handles: Some(handle?),
        };
        // Every executor answers once (a panic before it could counts as a failure).
        let all_opened = (0..shard_count).all(|_| opened_rx.recv().unwrap_or(false));
        if all_opened {
            return Ok(wal);
        }
        match wal.close() {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Executor("a shard did not open".into())),
        }
    }

    /// A new handle for sending requests (clone it freely; it is `Send + Sync`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Closes every shard ([`Client::close`]), waits for their executors to stop, and returns
    /// the final durable cut. Blocks the calling thread: from async code, use
    /// [`Client::close`] and then drop the `Wal` (or call this in a blocking task).
    ///
    /// Errors: the first shard that failed to open, failed, or panicked.
    pub fn close(mut self) -> Result<Cut> {
        let closed = futures::executor::block_on(self.client.close());
        // A shard that failed to open or panicked answers `Closed`; its executor's own
        // error says why, so it comes first.
        self.join()?;
        closed
    }

    fn join(&mut self) -> Result<()> {
        let Some(h) = self.handles.take() else {
            return Ok(());
        };
        h.join()?;
        Ok(())
    }
}

impl Drop for Wal {
    /// Closes every shard and waits for its executor to stop, like [`Wal::close`] but
    /// discarding errors. Waiting matters: a directory must never have two writers, and
    /// starting a new `Wal` on it right after this drop is then safe. Do not drop a `Wal`
    /// on one of its own shard threads.
    fn drop(&mut self) {
        if self.handles.is_some() {
            self.client.close_inboxes();
            let _ = self.join();
        }
    }
}
