//! # shardwal
//!
//! A durable, thread-per-core write-ahead log for async services on Linux.
//!
//! Every core runs one **shard** on a [glommio] executor. A shard owns its DMA-aligned
//! buffers, its ring of flush buffers and its own segment files, written with O_DIRECT
//! through io_uring, so the append path takes no lock and crosses no core. Appending returns
//! an [`Lsn`] at once; [`Shard::commit`] resolves when that record is durable. Many appends
//! share one write and one fdatasync (group commit).
//!
//! ```no_run
//! use shardwal::{Lsn, WalConfig};
//!
//! let config = WalConfig::builder("/var/lib/myapp/wal").shard_count(2).build()?;
//! let handle = shardwal::spawn(config, |shard| async move {
//!     let lsn = shard.append(b"hello").await?;
//!     shard.commit(lsn).await?;                 // durable now
//!     let lsn2 = shard.append_durable(b"world").await?;
//!     for record in shard.reader(Lsn(1))? {     // replay what is durable
//!         let record = record?;
//!         println!("{} {:?}", record.lsn, record.payload);
//!     }
//!     Ok::<Lsn, shardwal::Error>(lsn2)
//! })?;
//! for last in handle.join()? { last?; }
//! # Ok::<(), shardwal::Error>(())
//! ```
//!
//! ## Guarantees
//! * `commit(lsn)` resolves `Ok` only after an fdatasync that covers every record of the
//!   shard up to `lsn` has completed ([`Durability::Dsync`]: after the O_DSYNC writes
//!   completed).
//! * After any I/O error the shard is failed: every pending and later commit returns
//!   [`Error::ShardFailed`] until the log is reopened. The outcome of a failed commit is
//!   unknown.
//! * No write ever covers bytes that hold an earlier record: every batch starts at a fresh
//!   4 KiB block.
//! * Reopening recovers every acknowledged record, cuts a torn tail, and reports damage to
//!   acknowledged data as [`Error::Corruption`]: at open for the newest segments (the only
//!   ones that can hold a torn tail) and any segment header; for the older, sealed
//!   segments, which opening takes from their headers without reading their records, when
//!   a reader ([`LogReader`], [`Shard::reader`], `shardwal verify`) reaches the damage.
//! * Readers never see a record that is not durable.
//! * One process at a time writes a log directory (the writer lease, see [`shm`]); a second
//!   one gets [`Error::LogLocked`] naming the owner's pid.
//! * A [`Cut`] read from the shared header ([`HeaderView::cut`]), in any process, is never torn
//!   and never ahead of what each shard made durable; a [`Snapshot`] keeps every segment it
//!   needs until it is dropped or its process dies.
//!
//! ## The public surface
//! * The crate root: [`Wal`] and [`Client`] (any thread or runtime), [`Shard`] and
//!   [`spawn`] (inside glommio executors), [`WalConfig`], [`LogReader`], [`HeaderView`],
//!   [`Error`] and its parts.
//! * [`config`]: the configuration's defaults and limits; [`error`]: the error types;
//!   [`client`]: the client's limits.
//! * [`shm`]: the shared header, for monitors in other processes.
//! * [`format`](mod@format): the on-disk format, for tools that read files directly.
//! * With the `testing` cargo feature only (not a stable API): `storage` (fault injection,
//!   the crash simulator), `recovery` (the scan), `shm::simulate_process_death`,
//!   `Shard::open_with_storage`.
//!
//! Inside, data flows one way: shard (append) -> ring (flush buffers) -> storage (I/O) ->
//! commit (durable watermark, waiters) -> shm (published positions); recovery and the
//! reader only read.
//!
//! Linux only: glommio needs io_uring (kernel >= 5.8).
//!
//! [glommio]: https://docs.rs/glommio

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "linux"))]
compile_error!("shardwal runs on Linux only: it needs io_uring (kernel >= 5.8) through glommio");

pub(crate) mod arena;
pub(crate) mod batch;
pub mod client;
pub mod config;
pub mod error;
pub mod format;
mod lifecycle;
pub(crate) mod lsn;
pub(crate) mod metrics;
pub(crate) mod reader;
pub(crate) mod record;
#[cfg(feature = "testing")]
pub mod recovery;
#[cfg(not(feature = "testing"))]
pub(crate) mod recovery;
pub(crate) mod ring;
pub(crate) mod runtime;
pub(crate) mod seek;
pub(crate) mod segment;
pub(crate) mod shard;
pub mod shm;
#[cfg(feature = "testing")]
pub mod storage;
#[cfg(not(feature = "testing"))]
pub(crate) mod storage;
pub(crate) mod walk;
pub(crate) mod zero_ahead;

pub use client::{shard_for_key, Client, ClientFuture, ReadStream, Wal};
pub use config::{CpuPlacement, Durability, WalConfig, WalConfigBuilder};
pub use error::{Error, FailedOp, Result, ShardFailure};
pub use lsn::{Cut, Lsn, ShardId};
pub use metrics::ShardMetrics;
pub use reader::{LogReader, Record};
pub use runtime::{spawn, WalHandle};
pub use shard::{Commit, Shard};
pub use shm::{HeaderView, Snapshot};
