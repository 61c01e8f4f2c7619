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
    /// Makes every write (and allocation) that completed before this call durable.
    async fn fdatasync(&self) -> io::Result<()>;
    /// Reserves disk space for bytes `0..len_bytes` and makes the file at least that long
    /// (`fallocate` mode 0): blocks past the old end read as zeros and later writes into
    /// them cannot fail for want of space. The new length is durable only after a
    /// successful [`StorageFile::fdatasync`] (or a synced write that needs it). Errors:
    /// `ENOSPC` when the file system cannot hold `len_bytes`, any other I/O error;
    /// `EOPNOTSUPP` on a file system without `fallocate`.
    ///
    /// The reservation is advisory: the default does nothing, and the file then grows as
    /// it is written (slower on ext4, and space runs out at a write instead of here).
    /// Recovery reads a segment of any length.
    async fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        let _ = len_bytes;
        Ok(())
    }
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
    async fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.0
            .pre_allocate(len_bytes, false)
            .await
            .map_err(glommio_io)
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
