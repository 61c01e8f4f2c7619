//! Injected I/O errors: a [`FaultPlan`] decides which operation fails and how, and
//! [`FaultyStorage`] applies one to any [`Storage`] backend. The simulator ([`super::sim`])
//! uses the same plans.

use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;

use async_trait::async_trait;
use glommio::io::DmaBuffer;

use super::{Storage, StorageFile};

/// An operation of the storage seam.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// [`StorageFile::write_at`] (zeroing ahead of the write head and clearing a recycled
    /// segment's header block included).
    Write,
    /// [`StorageFile::fdatasync`].
    Fdatasync,
    /// [`Storage::create`].
    Create,
    /// [`Storage::open`].
    Open,
    /// [`Storage::remove`].
    Remove,
    /// [`Storage::sync_dir`].
    SyncDir,
    /// [`Storage::rename`] (turning a segment into a spare, or a spare into a segment).
    Rename,
    /// [`StorageFile::allocate`] (reserving a new segment's blocks).
    Allocate,
}

impl FaultOp {
    /// Every operation kind.
    pub const ALL: [FaultOp; 8] = [
        FaultOp::Write,
        FaultOp::Fdatasync,
        FaultOp::Create,
        FaultOp::Open,
        FaultOp::Remove,
        FaultOp::SyncDir,
        FaultOp::Rename,
        FaultOp::Allocate,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// How an injected fault fails.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `EIO` (os error 5).
    Eio,
    /// `ENOSPC` (os error 28).
    Enospc,
    /// A write that reports fewer bytes than asked (half, rounded down to 512 bytes; the
    /// bytes it reports are really written). On other operations: `EIO`.
    ShortWrite,
}

impl FaultKind {
    /// Every fault kind.
    pub const ALL: [FaultKind; 3] = [FaultKind::Eio, FaultKind::Enospc, FaultKind::ShortWrite];

    /// The error this fault returns (for a short write: what other operations return).
    pub fn error(self, op: FaultOp) -> io::Error {
        let code = match self {
            FaultKind::Enospc => libc::ENOSPC,
            FaultKind::Eio | FaultKind::ShortWrite => libc::EIO,
        };
        let e = io::Error::from_raw_os_error(code);
        io::Error::new(e.kind(), format!("injected on {op:?}: {e}"))
    }
}

/// One injected fault: the `nth` (0-based) call of `op` fails with `kind`, and so does every
/// later call of `op` when `forever` is set.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The operation to fail.
    pub op: FaultOp,
    /// Index of the first call that fails, counting calls of `op` from 0.
    pub nth: u64,
    /// Keep failing after the first failure.
    pub forever: bool,
    /// How it fails.
    pub kind: FaultKind,
}

impl Fault {
    /// An EIO fault.
    pub fn eio(op: FaultOp, nth: u64, forever: bool) -> Fault {
        Fault {
            op,
            nth,
            forever,
            kind: FaultKind::Eio,
        }
    }
}

/// What a [`FaultPlan`] decided for one call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Carry the operation out.
    Proceed,
    /// Fail it with this kind.
    Fail(FaultKind),
}

#[derive(Debug, Default)]
struct Counters {
    calls: [Cell<u64>; FaultOp::ALL.len()],
    injected: Cell<u64>,
}

/// Counts calls per operation and decides which ones fail. Shared (`Rc`) between a storage
/// and its files.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    faults: Rc<Vec<Fault>>,
    counters: Rc<Counters>,
}

impl FaultPlan {
    /// A plan that injects `faults` (none: every call proceeds).
    pub fn new(faults: Vec<Fault>) -> FaultPlan {
        FaultPlan {
            faults: Rc::new(faults),
            counters: Rc::default(),
        }
    }

    /// Counts one call of `op` and decides its fate.
    pub fn check(&self, op: FaultOp) -> Verdict {
        let c = &self.counters.calls[op.index()];
        let n = c.get();
        c.set(n + 1);
        for f in self.faults.iter() {
            if f.op == op && (n == f.nth || (f.forever && n > f.nth)) {
                self.counters.injected.set(self.counters.injected.get() + 1);
                return Verdict::Fail(f.kind);
            }
        }
        Verdict::Proceed
    }

    /// Fails with the planned error, or `Ok` to proceed (for operations other than writes).
    pub fn gate(&self, op: FaultOp) -> io::Result<()> {
        match self.check(op) {
            Verdict::Proceed => Ok(()),
            Verdict::Fail(kind) => Err(kind.error(op)),
        }
    }

    /// A handle to read the counters after the plan moved into a shard.
    pub fn probe(&self) -> FaultProbe {
        FaultProbe(self.counters.clone())
    }
}

/// Reads a [`FaultPlan`]'s counters.
#[derive(Clone, Debug)]
pub struct FaultProbe(Rc<Counters>);

impl FaultProbe {
    /// Operations that returned an injected error (or short count).
    pub fn injected(&self) -> u64 {
        self.0.injected.get()
    }
    /// Calls of `op` seen so far (failed ones included).
    pub fn calls(&self, op: FaultOp) -> u64 {
        self.0.calls[op.index()].get()
    }
    /// Writes seen (failed ones included).
    pub fn writes(&self) -> u64 {
        self.calls(FaultOp::Write)
    }
    /// fdatasyncs seen (failed ones included).
    pub fn fdatasyncs(&self) -> u64 {
        self.calls(FaultOp::Fdatasync)
    }
}

/// Wraps a backend and injects the faults of a [`FaultPlan`]. For tests.
pub struct FaultyStorage<S> {
    inner: S,
    plan: FaultPlan,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner`, injecting `fault`.
    pub fn new(inner: S, fault: Fault) -> FaultyStorage<S> {
        FaultyStorage::with_plan(inner, FaultPlan::new(vec![fault]))
    }

    /// Wraps `inner`, injecting the faults of `plan`.
    pub fn with_plan(inner: S, plan: FaultPlan) -> FaultyStorage<S> {
        FaultyStorage { inner, plan }
    }

    /// A handle that reports what was injected so far.
    pub fn probe(&self) -> FaultProbe {
        self.plan.probe()
    }
}

struct FaultyFile {
    inner: Rc<dyn StorageFile>,
    plan: FaultPlan,
}

#[async_trait(?Send)]
impl StorageFile for FaultyFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        match self.plan.check(FaultOp::Write) {
            Verdict::Proceed => self.inner.write_at(buf, pos).await,
            // A short write of a DMA buffer cannot be issued through the real backend (it
            // writes whole buffers); report the short count without writing, which is what
            // the shard sees from a device that gave up.
            Verdict::Fail(FaultKind::ShortWrite) => Ok(buf.len() / 2 / 512 * 512),
            Verdict::Fail(kind) => Err(kind.error(FaultOp::Write)),
        }
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.plan.gate(FaultOp::Fdatasync)?;
        self.inner.fdatasync().await
    }
    async fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.plan.gate(FaultOp::Allocate)?;
        self.inner.allocate(len_bytes).await
    }
}

#[async_trait(?Send)]
impl<S: Storage> Storage for FaultyStorage<S> {
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        self.plan.gate(FaultOp::Create)?;
        let inner = self.inner.create(path).await?;
        Ok(Rc::new(FaultyFile {
            inner,
            plan: self.plan.clone(),
        }))
    }
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        self.plan.gate(FaultOp::Open)?;
        let inner = self.inner.open(path).await?;
        Ok(Rc::new(FaultyFile {
            inner,
            plan: self.plan.clone(),
        }))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.plan.gate(FaultOp::Remove)?;
        self.inner.remove(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plan.gate(FaultOp::Rename)?;
        self.inner.rename(from, to).await
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.plan.gate(FaultOp::SyncDir)?;
        self.inner.sync_dir(dir).await
    }
}
