//! Per-core spawning: one glommio executor per shard.
//!
//! [`spawn`] starts `shard_count` executors (pinned or unbound, as configured), opens one
//! shard on each, runs the caller's async closure with it, closes the shard when the closure
//! returns, and hands back a [`WalHandle`] to join them. To run a shard inside an executor
//! you already have, use [`crate::Shard::open`].

use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{CpuPlacement, WalConfig};
use crate::error::{Error, Result};
use crate::lsn::ShardId;
use crate::segment::list_shards;
use crate::shard::Shard;

/// Joins the executors started by [`spawn`].
pub struct WalHandle<T: Send + 'static> {
    handles: Vec<glommio::ExecutorJoinHandle<Result<T>>>,
}

impl<T: Send + 'static> WalHandle<T> {
    /// Waits for every shard's closure to return and its shard to close. Returns each
    /// closure's output, indexed by shard, or the first error: a shard that failed to
    /// open, failed to close cleanly, or panicked.
    pub fn join(self) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.handles.len());
        let mut first_err = None;
        for (i, h) in self.handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(Error::Panicked {
                        shard: ShardId(i as u32),
                        message: e.to_string(),
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Refuses a directory that holds shards at or above `shard_count`: their records would be
/// silently ignored (and key routing would change).
pub(crate) fn check_shard_dirs(config: &WalConfig) -> Result<()> {
    let dir = config.dir();
    if let Some(&ShardId(id)) = list_shards(dir)?.last() {
        if id >= config.shard_count() {
            return Err(Error::BadDirectory {
                path: dir.to_path_buf(),
                detail: format!(
                    "it holds shard {id}, but shard_count = {}; open it with at least {} shards",
                    config.shard_count(),
                    id + 1
                ),
            });
        }
    }
    Ok(())
}

/// Starts one executor per shard and runs `f(shard)` on each (see the module docs).
///
/// Each executor gets `io_memory` = [`WalConfig::io_memory_bytes`] so that the shard's
/// buffers can be io_uring-registered memory.
///
/// Errors (before anything starts): [`Error::BadDirectory`] when the directory holds more
/// shards than configured, [`Error::Io`] when it cannot be created, [`Error::Executor`] when
/// glommio cannot start an executor (kernel < 5.8, io_uring blocked, memlock < 512 KiB).
pub fn spawn<F, Fut, T>(config: WalConfig, f: F) -> Result<WalHandle<T>>
where
    F: Fn(Shard) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    spawn_executors(config, move |cfg, id| {
        let f = f.clone();
        async move {
            let shard = Shard::open(&cfg, id).await?;
            let out = f(shard.clone()).await;
            shard.close().await?;
            Ok(out)
        }
    })
}

/// Makes the descriptors of files dropped on this executor really close before it ends.
///
/// glommio closes a `DmaFile` dropped without `close()` (a shard's segment files, when its
/// last handle goes) by queueing a close on the executor's main ring, submitted on a later
/// I/O poll. An executor that ended right after dropping its shard never got there, so
/// every closed log leaked its open segments' descriptors (and the disk space of any of
/// them removed later). Opening and closing the log directory through the same ring, and
/// waiting for it, submits the queued closes ahead of it (a close of a regular file runs
/// at submission).
async fn settle_deferred_closes(dir: &std::path::Path) {
    if let Ok(d) = glommio::io::Directory::open(dir).await {
        let _ = d.close().await;
    }
}

/// Starts one executor per shard, placed as configured, each running `body(config, id)`.
pub(crate) fn spawn_executors<B, Fut, T>(config: WalConfig, body: B) -> Result<WalHandle<T>>
where
    B: Fn(WalConfig, ShardId) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<T>> + 'static,
    T: Send + 'static,
{
    std::fs::create_dir_all(config.dir())
        .map_err(|e| Error::io("creating log directory", config.dir(), e))?;
    check_shard_dirs(&config)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut handles = Vec::with_capacity(config.shard_count() as usize);
    for i in 0..config.shard_count() {
        let placement = match config.placement() {
            CpuPlacement::PinnedPerShard => Placement::Fixed(i as usize % cpus),
            CpuPlacement::Unbound => Placement::Unbound,
        };
        let cfg = config.clone();
        let body = body.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shardwal-{i}"))
            .io_memory(config.io_memory_bytes())
            .spawn(move || async move {
                let dir = cfg.dir().to_path_buf();
                let out = body(cfg, ShardId(i)).await;
                settle_deferred_closes(&dir).await;
                out
            })
            .map_err(|e| Error::Executor(format!("starting executor for shard {i}: {e}")))?;
        handles.push(handle);
    }
    Ok(WalHandle { handles })
}
