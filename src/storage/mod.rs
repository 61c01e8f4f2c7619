//! The I/O seam: every byte a shard writes goes through [`Storage`] and [`StorageFile`].
//!
//! * [`DmaStorage`] is the real backend: glommio `DmaFile`s (O_DIRECT through io_uring), one
//!   write per call, `fdatasync` as an io_uring op.
//! * [`FaultyStorage`] ([`fault`]) wraps any backend and fails the Nth operation of a kind
//!   with EIO, ENOSPC or a short write, once or forever.
//! * [`SimStorage`] ([`sim`]) is a deterministic, seeded simulator that keeps synced and
//!   unsynced bytes apart and can crash, dropping or tearing what was not synced.
//!
//! The trait is called once per flush piece or sync, never per record, so its dynamic
//! dispatch is off the per-record path.
//!
//! Nothing here knows about records or LSNs; nothing above here knows about file
//! descriptors.

use std::io;
use std::path::Path;
use std::rc::Rc;

use async_trait::async_trait;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

#[cfg(feature = "testing")]
pub mod fault;
#[cfg(feature = "testing")]
pub mod sim;

#[cfg(feature = "testing")]
pub use fault::{Fault, FaultKind, FaultOp, FaultPlan, FaultProbe, FaultyStorage};
#[cfg(feature = "testing")]
pub use sim::{CrashReport, SimStorage};

/// A directory of segment files.
#[async_trait(?Send)]
pub trait Storage {
    /// Creates (or truncates) the file at `path` for direct writes.
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>>;
    /// Opens the existing file at `path` for direct writes at any position.
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>>;
    /// Removes the file at `path`.
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames the file `from` to `to` (same directory; replaces `to` if it exists). Files
    /// already open stay open and keep writing to the same inode. Durable only after
    /// [`Storage::sync_dir`] of the directory.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations and removals in `dir` durable (fsync of the directory).
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment file.
#[async_trait(?Send)]
pub trait StorageFile {
    /// Writes all of `buf` at byte `pos` (both 4 KiB-aligned); returns the bytes written,
    /// which may be fewer than asked (the caller treats that as an error).
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize>;
    /// Makes every write that completed before this call durable.
    async fn fdatasync(&self) -> io::Result<()>;
}

/// The real backend: glommio `DmaFile`s, optionally opened with `O_DSYNC`.
#[derive(Clone, Debug, Default)]
pub struct DmaStorage {
    dsync: bool,
}

impl DmaStorage {
    /// A backend whose files are opened with `O_DSYNC` when `dsync` is true.
    pub fn new(dsync: bool) -> DmaStorage {
        DmaStorage { dsync }
    }

    fn options(&self) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if self.dsync {
            o.custom_flags(libc::O_DSYNC);
        }
        o
    }
}

pub(crate) fn glommio_io(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

struct DmaSegmentFile(DmaFile);

#[async_trait(?Send)]
impl StorageFile for DmaSegmentFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        self.0.write_rc_at(buf, pos).await.map_err(glommio_io)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.0.fdatasync().await.map_err(glommio_io)
    }
}

#[async_trait(?Send)]
impl Storage for DmaStorage {
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        let mut o = self.options();
        o.create(true).truncate(true);
        let f = o.dma_open(path).await.map_err(glommio_io)?;
        Ok(Rc::new(DmaSegmentFile(f)))
    }
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        let f = self.options().dma_open(path).await.map_err(glommio_io)?;
        Ok(Rc::new(DmaSegmentFile(f)))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = glommio::io::Directory::open(dir)
            .await
            .map_err(glommio_io)?;
        let r = d.sync().await.map_err(glommio_io);
        let _ = d.close().await;
        r
    }
}
