//! Starting and closing a [`Wal`] from async code without blocking the caller's runtime.
//!
//! [`Wal::start`] waits for every shard to open, which runs recovery, and [`Wal::close`]
//! waits for every executor to stop: both block the calling thread. Inside a tokio runtime
//! (or any other) that stalls every task of that worker thread for as long as recovery
//! takes. [`Wal::start_async`] and [`Wal::close_async`] run the same calls on a short-lived
//! helper thread and resolve through a oneshot channel, so they work on any runtime and need
//! no runtime-specific blocking pool.

use futures::channel::oneshot;

use crate::client::Wal;
use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::lsn::Cut;

impl Wal {
    /// [`Wal::start`] for async callers: resolves once every shard has opened (recovery
    /// included), without blocking the calling thread. The future is `Send`, so it can be
    /// spawned on a multi-threaded runtime.
    ///
    /// Dropping the future before it resolves does not stop the start: the log opens in
    /// the background and is then closed again (as dropping a [`Wal`] does), so a new start
    /// of the same directory may meanwhile get [`Error::LogLocked`].
    ///
    /// Errors: as [`Wal::start`]; [`Error::Executor`] when the helper thread cannot be
    /// started.
    pub async fn start_async(config: WalConfig) -> Result<Wal> {
        off_thread("shardwal-start", move || Wal::start(config)).await
    }

    /// [`Wal::close`] for async callers: closes every shard, waits for their executors to
    /// stop without blocking the calling thread, and returns the final durable cut.
    /// Dropping the future before it resolves does not stop the close.
    ///
    /// Errors: as [`Wal::close`]; [`Error::Executor`] when the helper thread cannot be
    /// started (the log is then closed by dropping it, discarding errors).
    pub async fn close_async(self) -> Result<Cut> {
        off_thread("shardwal-close", move || self.close()).await
    }
}

/// Runs `f` on a new thread named `name` and resolves to its result.
async fn off_thread<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // The receiver may be gone (the caller dropped its future): then the result,
            // a `Wal` included, is dropped here, which closes it.
            let _ = tx.send(f());
        })
        .map_err(|e| Error::Executor(format!("cannot start the {name} thread: {e}")))?;
    match rx.await {
        Ok(result) => result,
        Err(oneshot::Canceled) => Err(Error::Executor(format!(
            "the {name} thread panicked before it answered"
        ))),
    }
}
