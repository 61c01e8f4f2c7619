//! One error type for the whole crate.
//!
//! Every failure a caller can see is a variant of [`Error`], with a message that names what
//! went wrong and where (shard, file, offset, LSN). Bad input ([`Error::EmptyRecord`],
//! [`Error::RecordTooLarge`], [`Error::InvalidConfig`], ...) is rejected before anything is
//! written, so it never costs data.
//!
//! I/O failures stay typed: [`Error::Io`] keeps the operating system's [`std::io::Error`],
//! and [`Error::ShardFailed`] carries a [`ShardFailure`] that says which operation failed
//! ([`FailedOp`]), on which path, with which [`std::io::ErrorKind`]. A service tells a full
//! disk from a dying one with [`Error::io_kind`], not by matching text. [`Error`] is
//! `Clone` (the I/O errors are shared behind an [`Arc`]), so one failure can answer many
//! waiting requests unchanged.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lsn::{Lsn, ShardId};

/// The result type of every fallible shardwal call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shardwal.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent with another one.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `append` was called with a zero-length record. Records hold 1 byte or more.
    #[error("empty record: a record must hold at least 1 byte")]
    EmptyRecord,

    /// `append` was called with a record longer than the configured maximum.
    #[error("record of {len_bytes} bytes exceeds max_record_bytes = {max_record_bytes}")]
    RecordTooLarge {
        /// Length of the rejected record in bytes.
        len_bytes: usize,
        /// The configured limit in bytes.
        max_record_bytes: usize,
    },

    /// A call named an LSN that this shard has not handed out yet.
    #[error("shard {shard}: lsn {requested} has not been appended yet (last appended lsn is {last_appended})")]
    LsnNotAppended {
        /// The shard.
        shard: ShardId,
        /// The LSN asked for.
        requested: Lsn,
        /// The highest LSN appended so far.
        last_appended: Lsn,
    },

    /// A read asked for records that truncation already removed.
    #[error(
        "shard {shard}: lsn {requested} was truncated; the log now starts at lsn {first_available}"
    )]
    Truncated {
        /// The shard.
        shard: ShardId,
        /// The LSN asked for.
        requested: Lsn,
        /// The lowest LSN still stored.
        first_available: Lsn,
    },

    /// Truncation asked to remove records that are not durable yet.
    #[error("shard {shard}: cannot truncate before lsn {requested}: only lsns up to {durable_lsn} are durable")]
    TruncateBeyondDurable {
        /// The shard.
        shard: ShardId,
        /// The LSN asked for.
        requested: Lsn,
        /// The shard's durable LSN.
        durable_lsn: Lsn,
    },

    /// The shard hit an I/O error earlier and refuses to acknowledge anything until the WAL
    /// is reopened. A commit that fails this way has an unknown outcome: the record may or
    /// may not be found after reopening.
    #[error("shard {shard} has failed after an I/O error ({cause}); reopen the WAL to recover")]
    ShardFailed {
        /// The shard.
        shard: ShardId,
        /// The first I/O error the shard hit: the operation, the path and the
        /// [`io::Error`] (see [`ShardFailure`]).
        #[source]
        cause: ShardFailure,
    },

    /// The shard was closed; it accepts nothing more.
    #[error("shard {shard} is closed")]
    Closed {
        /// The shard.
        shard: ShardId,
    },

    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What shardwal was doing ("creating segment", "reading segment", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error from the operating system (shared, so that [`Error`] is `Clone`).
        #[source]
        source: Arc<io::Error>,
    },

    /// A file in the log directory is not a shardwal segment (its magic number is wrong).
    #[error("{}: not a shardwal segment (bad magic); refusing to touch a foreign file", path.display())]
    ForeignFile {
        /// The file.
        path: PathBuf,
    },

    /// A segment was written by a newer shardwal with a format this build cannot read.
    #[error("{}: segment format version {found} is newer than this build supports ({supported}); upgrade shardwal", path.display())]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The highest version this build reads.
        supported: u32,
    },

    /// Stored data is damaged below the point that is known to have been durable: an
    /// acknowledged record cannot be read back. shardwal reports this instead of cutting the
    /// log short; the bytes are left in place for inspection.
    ///
    /// When: opening reports damage in the newest segments (those it walks frame by frame
    /// to find the end of the log) and in any segment header; damage inside an older,
    /// sealed segment is reported by whatever reads it ([`crate::LogReader`],
    /// [`crate::Shard::reader`], `Client::read`, `shardwal verify`) when it reaches the
    /// damaged record, and the iterator then stops.
    #[error("shard {shard}: corruption in {} at byte offset {offset} (expected lsn {expected_lsn}): {detail}", path.display())]
    Corruption {
        /// The shard.
        shard: ShardId,
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// The LSN the damaged frame should have held.
        expected_lsn: Lsn,
        /// What was wrong.
        detail: String,
    },

    /// The log directory is in a state shardwal cannot open (for example it holds more
    /// shards than configured).
    #[error("log directory {}: {detail}", path.display())]
    BadDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Another process owns the log directory for writing (it holds the writer lease, an
    /// OFD lock on the shared header file), or this process already has the shard open.
    /// The lease is released the moment the owner exits, also when it is killed, so a
    /// retry after the owner is gone succeeds at once.
    #[error("log directory {} is locked for writing: {owner}", path.display())]
    LogLocked {
        /// The directory.
        path: PathBuf,
        /// Who holds it, for example `"owned by pid 4242 (running since 2026-11-21 06:00:00 UTC)"`.
        owner: String,
    },

    /// The shared header file (`wal.shm`) cannot be used by a reader: it is missing, being
    /// rebuilt, of another layout version or byte order, damaged, or left from a previous
    /// boot. A writer rebuilds such a header when it opens the log; a reader reports it.
    #[error("shared header {}: {detail}", path.display())]
    BadHeader {
        /// The header file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Every reader pin slot of the shared header is held by a live reader.
    #[error("shared header {}: all {slots} reader pin slots are held by live readers", path.display())]
    TooManyReaders {
        /// The header file.
        path: PathBuf,
        /// The number of pin slots.
        slots: usize,
    },

    /// glommio could not start an executor or run a task (kernel too old, io_uring blocked
    /// by seccomp, memlock limit below 512 KiB, CPU out of range, ...).
    #[error("executor: {0}")]
    Executor(String),

    /// A shard task panicked; the message is the panic payload when it was a string.
    #[error("shard {shard} task panicked: {message}")]
    Panicked {
        /// The shard.
        shard: ShardId,
        /// The panic payload.
        message: String,
    },

    /// A request named a shard the log does not have. Refused before it was queued:
    /// nothing was appended.
    #[error("shard {shard} does not exist; the log has {shard_count} shards")]
    NoSuchShard {
        /// The shard asked for.
        shard: ShardId,
        /// How many shards the log has (valid ids are `0..shard_count`).
        shard_count: u32,
    },

    /// `append_batch` was called with no records. Nothing was appended.
    #[error("empty batch: a batch must hold at least 1 record")]
    EmptyBatch,

    /// A batch's frames would not fit in the shard's flush ring at once. Nothing was
    /// appended; split the batch.
    #[error("batch of {frame_bytes} frame bytes exceeds the flush ring's {max_batch_bytes} bytes; split it")]
    BatchTooLarge {
        /// The batch's size on disk: the sum of its records' frame lengths, in bytes.
        frame_bytes: usize,
        /// The limit in bytes (see [`crate::Shard::max_batch_bytes`]).
        max_batch_bytes: usize,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The [`io::ErrorKind`] behind an [`Error::Io`] or an [`Error::ShardFailed`], for
    /// example [`io::ErrorKind::StorageFull`] on a full disk; `None` for every other
    /// variant.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::ShardFailed { cause, .. } => Some(cause.kind()),
            _ => None,
        }
    }
}

/// The storage operation a shard was doing when it failed (see [`ShardFailure::op`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailedOp {
    /// Writing a batch of records to a segment. A write that wrote fewer bytes than asked
    /// (usually a full disk) is reported with [`io::ErrorKind::WriteZero`].
    Write,
    /// The fdatasync that makes completed writes durable. Never retried: after a failed
    /// fdatasync the kernel may have dropped the dirty pages.
    Fdatasync,
    /// Preparing the next segment: creating it or recycling a spare, zero-filling it, and
    /// syncing the shard directory.
    PrepareSegment,
    /// Renaming a truncated segment to a spare, during [`crate::Shard::truncate_before`].
    Rename,
    /// Removing a truncated segment, during [`crate::Shard::truncate_before`].
    Remove,
    /// Syncing the shard directory after truncation renamed or removed segments.
    SyncDir,
}

impl FailedOp {
    /// A short lower-case name for messages, for example `"fdatasync"`.
    pub fn name(self) -> &'static str {
        match self {
            FailedOp::Write => "write",
            FailedOp::Fdatasync => "fdatasync",
            FailedOp::PrepareSegment => "preparing a segment",
            FailedOp::Rename => "renaming a segment to a spare",
            FailedOp::Remove => "removing a segment",
            FailedOp::SyncDir => "syncing the shard directory",
        }
    }
}

impl std::fmt::Display for FailedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a shard failed: the first I/O error it hit, kept whole. Cheap to clone (one
/// reference count); every request the failure answers shares it.
#[derive(Clone, Debug)]
pub struct ShardFailure(Arc<FailureParts>);

#[derive(Debug)]
struct FailureParts {
    op: FailedOp,
    path: PathBuf,
    error: Arc<io::Error>,
}

impl ShardFailure {
    pub(crate) fn new(op: FailedOp, path: impl Into<PathBuf>, error: Arc<io::Error>) -> Self {
        ShardFailure(Arc::new(FailureParts {
            op,
            path: path.into(),
            error,
        }))
    }

    /// The operation that failed.
    pub fn op(&self) -> FailedOp {
        self.0.op
    }

    /// The kind of the I/O error, for example [`io::ErrorKind::StorageFull`] (ENOSPC).
    pub fn kind(&self) -> io::ErrorKind {
        self.0.error.kind()
    }

    /// The I/O error itself ([`io::Error::raw_os_error`] gives the errno when there is one).
    pub fn io_error(&self) -> &io::Error {
        &self.0.error
    }

    /// The segment file the operation was on, or the shard directory when it spanned
    /// several files (an fdatasync of more than one segment, preparing a segment).
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

impl std::fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &*self.0;
        write!(f, "{} failed on {}: {}", p.op, p.path.display(), p.error)
    }
}

impl std::error::Error for ShardFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_clone_and_keep_their_io_kind() {
        let e = Error::io("reading segment", "/x", io::ErrorKind::NotFound.into());
        let c = e.clone();
        assert_eq!(c.io_kind(), Some(io::ErrorKind::NotFound));
        let f = ShardFailure::new(
            FailedOp::Fdatasync,
            "/x/shard-0000",
            Arc::new(io::Error::from_raw_os_error(libc::ENOSPC)),
        );
        let e = Error::ShardFailed {
            shard: ShardId(3),
            cause: f,
        };
        let Error::ShardFailed { cause, .. } = e.clone() else {
            unreachable!("a clone keeps its variant")
        };
        assert_eq!(cause.op(), FailedOp::Fdatasync);
        assert_eq!(cause.kind(), io::ErrorKind::StorageFull);
        assert_eq!(cause.io_error().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(e.io_kind(), Some(io::ErrorKind::StorageFull));
        assert_eq!(Error::EmptyRecord.io_kind(), None);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "shard 3 has failed after an I/O error (fdatasync failed on /x/shard-0000: "
            ),
            "{text}"
        );
    }
}
