//! The I/O seam: every byte a shard writes goes through [`Storage`] and [`StorageFile`].
//!
//! [`DmaStorage`] is the real backend: glommio `DmaFile`s (O_DIRECT through io_uring), one
//! write per call, `fdatasync` as an io_uring op. [`FaultyStorage`] wraps any backend and
//! fails a chosen write or fdatasync with an I/O error, once or forever, so tests can prove
//! what a shard does when the disk says no. The trait is called once per flush piece or
//! sync, never per record, so its dynamic dispatch is off the per-record path.
//!
//! Nothing here knows about records or LSNs; nothing above here knows about file
//! descriptors.

use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;

use async_trait::async_trait;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

/// A directory of segment files.
#[async_trait(?Send)]
pub trait Storage {
    /// Creates (or truncates) the file at `path` for direct writes.
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>>;
    /// Opens the existing file at `path` for direct writes at any position.
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>>;
    /// Removes the file at `path`.
    async fn remove(&self, path: &Path) -> io::Result<()>;
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

fn glommio_io(e: glommio::GlommioError<()>) -> io::Error {
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
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = glommio::io::Directory::open(dir)
            .await
            .map_err(glommio_io)?;
        let r = d.sync().await.map_err(glommio_io);
        let _ = d.close().await;
        r
    }
}

/// Which operation a [`FaultyStorage`] should fail.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// `StorageFile::write_at` (zero-filling writes included).
    Write,
    /// `StorageFile::fdatasync`.
    Fdatasync,
}

/// A plan of one injected fault: fail the `nth` (0-based) call of `op`, and every later call
/// of that kind too when `forever` is set.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The operation to fail.
    pub op: FaultOp,
    /// Index of the first call that fails, counting calls of `op` from 0.
    pub nth: u64,
    /// Keep failing after the first failure.
    pub forever: bool,
}

#[derive(Debug, Default)]
struct Counters {
    writes: Cell<u64>,
    syncs: Cell<u64>,
    injected: Cell<u64>,
}

/// Wraps a backend and fails one chosen operation with EIO (see [`Fault`]). For tests.
pub struct FaultyStorage<S> {
    inner: S,
    fault: Fault,
    counters: Rc<Counters>,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner`, injecting `fault`.
    pub fn new(inner: S, fault: Fault) -> FaultyStorage<S> {
        FaultyStorage {
            inner,
            fault,
            counters: Rc::default(),
        }
    }

    /// A handle that reports how many faults were injected so far.
    pub fn probe(&self) -> FaultProbe {
        FaultProbe(self.counters.clone())
    }
}

/// Reads the counters of a [`FaultyStorage`] after it moved into a shard.
#[derive(Clone, Debug)]
pub struct FaultProbe(Rc<Counters>);

impl FaultProbe {
    /// Number of operations that returned an injected error.
    pub fn injected(&self) -> u64 {
        self.0.injected.get()
    }
    /// Number of writes seen (failed ones included).
    pub fn writes(&self) -> u64 {
        self.0.writes.get()
    }
    /// Number of fdatasyncs seen (failed ones included).
    pub fn fdatasyncs(&self) -> u64 {
        self.0.syncs.get()
    }
}

struct FaultyFile {
    inner: Rc<dyn StorageFile>,
    fault: Fault,
    counters: Rc<Counters>,
}

fn should_fail(fault: &Fault, op: FaultOp, counter: &Cell<u64>, injected: &Cell<u64>) -> bool {
    let n = counter.get();
    counter.set(n + 1);
    let hit = fault.op == op && (n == fault.nth || (fault.forever && n > fault.nth));
    if hit {
        injected.set(injected.get() + 1);
    }
    hit
}

fn injected_error(op: FaultOp) -> io::Error {
    io::Error::other(format!("injected EIO on {op:?} (FaultyStorage)"))
}

#[async_trait(?Send)]
impl StorageFile for FaultyFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        let c = &self.counters;
        if should_fail(&self.fault, FaultOp::Write, &c.writes, &c.injected) {
            return Err(injected_error(FaultOp::Write));
        }
        self.inner.write_at(buf, pos).await
    }
    async fn fdatasync(&self) -> io::Result<()> {
        let c = &self.counters;
        if should_fail(&self.fault, FaultOp::Fdatasync, &c.syncs, &c.injected) {
            return Err(injected_error(FaultOp::Fdatasync));
        }
        self.inner.fdatasync().await
    }
}

#[async_trait(?Send)]
impl<S: Storage> Storage for FaultyStorage<S> {
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        let inner = self.inner.create(path).await?;
        Ok(Rc::new(FaultyFile {
            inner,
            fault: self.fault,
            counters: self.counters.clone(),
        }))
    }
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        let inner = self.inner.open(path).await?;
        Ok(Rc::new(FaultyFile {
            inner,
            fault: self.fault,
            counters: self.counters.clone(),
        }))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path).await
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir).await
    }
}
