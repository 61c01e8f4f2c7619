//! A deterministic storage simulator that knows what is durable, and can crash.
//!
//! [`SimStorage`] implements [`Storage`] over a real directory (so recovery's plain file
//! reads see exactly what a process would see), while it keeps, per file, the bytes that
//! an `fdatasync` made durable apart from the writes that completed since and the writes
//! still in flight, and, per directory, which names a directory fsync made durable.
//!
//! * Writes complete after a seeded number of yields, so completions come **out of order**
//!   exactly as io_uring may deliver them.
//! * `fdatasync` makes durable exactly the writes (and allocations, which grow a file)
//!   that completed before it.
//! * [`SimStorage::crash_after`] cuts the power after the Nth storage operation: from then
//!   on every operation fails (nothing more reaches the disk).
//! * [`SimStorage::materialize_crash`] then rewrites the directory into one possible
//!   post-crash state, chosen by the seed: every write that was not synced (completed or
//!   in flight) is dropped, kept, or **torn** at 512-byte sector boundaries, in a random
//!   order (an unsynced allocation is kept or dropped whole, so a file may come back
//!   shorter than it was allocated, down to its last synced write); in each directory, either every change since its last fsync (creates, removes,
//!   renames) is undone — created files vanish, removed ones come back with their durable
//!   contents, renamed ones get their old names back — or all of them reached the disk
//!   anyway (as when another fsync commits the file system journal).
//! * Faults from a [`FaultPlan`] (EIO, ENOSPC, short writes on any operation) apply too.
//!
//! Everything random comes from one seed, so a failing run replays exactly.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use glommio::io::DmaBuffer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::fault::{FaultKind, FaultOp, FaultPlan, Verdict};
use super::{Storage, StorageFile};

/// The sector size a torn write is cut at.
pub const SECTOR_BYTES: usize = 512;

/// A write or an allocation the disk may or may not hold after a crash.
#[derive(Clone, Debug)]
struct Unsynced {
    pos: u64,
    data: Vec<u8>,
    /// For an allocation ([`StorageFile::allocate`]): the length the file grows to, with
    /// `data` empty. A crash keeps or drops it whole (the file size is one field).
    extend_to_bytes: u64,
}

#[derive(Debug, Default)]
struct Inode {
    /// Contents as of the last successful fdatasync.
    durable: Vec<u8>,
    /// Writes completed since that fdatasync, in completion order.
    completed: Vec<Unsynced>,
    /// Writes submitted and not completed, by id.
    in_flight: BTreeMap<u64, Unsynced>,
}

/// Applies a completed write or allocation to `content`.
fn apply_change(content: &mut Vec<u8>, w: &Unsynced) {
    apply(content, w.pos, &w.data);
    let len = w.extend_to_bytes as usize;
    if content.len() < len {
        content.resize(len, 0);
    }
}

fn apply(content: &mut Vec<u8>, pos: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let pos = pos as usize;
    if content.len() < pos + data.len() {
        content.resize(pos + data.len(), 0);
    }
    content[pos..pos + data.len()].copy_from_slice(data);
}

/// What a simulated crash did to the unsynced state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced writes that left no trace.
    pub writes_dropped: u64,
    /// Unsynced writes that landed whole.
    pub writes_kept: u64,
    /// Unsynced writes of which only some sectors landed.
    pub writes_torn: u64,
    /// Unsynced allocations ([`StorageFile::allocate`]) lost: the file came back at its
    /// length before them (or the length of its writes).
    pub allocations_dropped: u64,
    /// Files created since their directory's last fsync that vanished.
    pub files_lost: u64,
    /// Files removed since their directory's last fsync that came back.
    pub files_restored: u64,
    /// Directories whose changes since their last fsync (creates, removes, renames) all
    /// reached the disk anyway, as a journal commit forced by another fsync does.
    pub dirs_committed: u64,
}

struct SimState {
    rng: StdRng,
    inodes: Vec<Inode>,
    /// The namespace as the process sees it.
    names: BTreeMap<PathBuf, usize>,
    /// The namespace as of each directory's last fsync.
    durable_names: BTreeMap<PathBuf, usize>,
    handles: HashMap<usize, std::fs::File>,
    ops: u64,
    crash_after: Option<u64>,
    crashed: bool,
    next_write_id: u64,
}

impl SimState {
    /// Counts an operation; fails it (and everything after) once the power is cut.
    fn tick(&mut self) -> io::Result<()> {
        if !self.crashed {
            self.ops += 1;
            if self.crash_after.is_some_and(|n| self.ops > n) {
                self.crashed = true;
            }
        }
        if self.crashed {
            return Err(power_loss());
        }
        Ok(())
    }

    /// The inode of `path`, adopting a file that existed before the simulation as durable.
    fn known(&mut self, path: &Path) -> io::Result<Option<usize>> {
        if let Some(&i) = self.names.get(path) {
            return Ok(Some(i));
        }
        match std::fs::read(path) {
            Ok(bytes) => {
                let i = self.inodes.len();
                self.inodes.push(Inode {
                    durable: bytes,
                    ..Inode::default()
                });
                self.names.insert(path.to_path_buf(), i);
                self.durable_names.insert(path.to_path_buf(), i);
                Ok(Some(i))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An open handle of `inode`, opened under its current name (a file renamed since it
    /// was opened keeps its inode, as a real file descriptor does).
    fn handle(&mut self, inode: usize) -> io::Result<&std::fs::File> {
        use std::collections::hash_map::Entry;
        match self.handles.entry(inode) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let path = self
                    .names
                    .iter()
                    .find(|(_, &i)| i == inode)
                    .map(|(p, _)| p.clone())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)?;
                Ok(e.insert(f))
            }
        }
    }
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
}

/// The simulator (see the module docs). Clones share one simulated disk.
#[derive(Clone)]
pub struct SimStorage {
    state: Rc<RefCell<SimState>>,
    plan: FaultPlan,
}

impl SimStorage {
    /// A simulator driven by `seed`, injecting the faults of `plan`.
    pub fn new(seed: u64, plan: FaultPlan) -> SimStorage {
        SimStorage {
            state: Rc::new(RefCell::new(SimState {
                rng: StdRng::seed_from_u64(seed),
                inodes: Vec::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                handles: HashMap::new(),
                ops: 0,
                crash_after: None,
                crashed: false,
                next_write_id: 0,
            })),
            plan,
        }
    }

    /// Cuts the power after `ops` more storage operations (0: the next one fails).
    pub fn crash_after(&self, ops: u64) {
        let mut st = self.state.borrow_mut();
        st.crash_after = Some(st.ops + ops);
    }

    /// Cuts the power now.
    pub fn crash_now(&self) {
        self.state.borrow_mut().crashed = true;
    }

    /// Whether the power is cut.
    pub fn crashed(&self) -> bool {
        self.state.borrow().crashed
    }

    /// Storage operations carried out so far.
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }

    /// Rewrites the directory into a post-crash state chosen by the seed (see the module
    /// docs) and returns what happened. Cuts the power first if it is still on. Call it once
    /// nothing uses this simulator any more; reopen the directory afterwards with any
    /// backend (a new simulator adopts the files as durable).
    pub fn materialize_crash(&self) -> io::Result<CrashReport> {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        st.crashed = true;
        st.handles.clear();
        let mut report = CrashReport::default();
        // Each directory with changes since its last fsync keeps either none or all of them
        // (ext4 journals namespace changes in order, and any fdatasync may commit them).
        let mut dirs: Vec<PathBuf> = st
            .names
            .iter()
            .chain(st.durable_names.iter())
            .filter_map(|(p, _)| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            let in_dir = |m: &BTreeMap<PathBuf, usize>| -> Vec<(PathBuf, usize)> {
                m.iter()
                    .filter(|(p, _)| p.parent() == Some(dir.as_path()))
                    .map(|(p, i)| (p.clone(), *i))
                    .collect()
            };
            let now = in_dir(&st.names);
            if now == in_dir(&st.durable_names) || !st.rng.random_bool(0.5) {
                continue;
            }
            st.durable_names
                .retain(|p, _| p.parent() != Some(dir.as_path()));
            st.durable_names.extend(now);
            report.dirs_committed += 1;
        }
        // Contents after the crash, per inode that a durable name still points to.
        let mut contents: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let durable: Vec<(PathBuf, usize)> = st
            .durable_names
            .iter()
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (_, inode) in &durable {
            if contents.contains_key(inode) {
                continue;
            }
            let node = &st.inodes[*inode];
            let mut content = node.durable.clone();
            let mut pending: Vec<Unsynced> = node.completed.clone();
            pending.extend(node.in_flight.values().cloned());
            pending.shuffle(&mut st.rng);
            for w in pending {
                let allocation = w.data.is_empty();
                match st.rng.random_range(0..3u8) {
                    0 | 2 if allocation => report.allocations_dropped += 1,
                    0 => report.writes_dropped += 1,
                    1 => {
                        apply_change(&mut content, &w);
                        report.writes_kept += 1;
                    }
                    _ => {
                        for (k, sector) in w.data.chunks(SECTOR_BYTES).enumerate() {
                            if st.rng.random_bool(0.5) {
                                apply(&mut content, w.pos + (k * SECTOR_BYTES) as u64, sector);
                            }
                        }
                        report.writes_torn += 1;
                    }
                }
            }
            contents.insert(*inode, content);
        }
        for (path, _) in st.names.iter() {
            if !st.durable_names.contains_key(path) {
                std::fs::remove_file(path)?;
                report.files_lost += 1;
            }
        }
        for (path, inode) in &durable {
            if !st.names.contains_key(path) {
                report.files_restored += 1;
            }
            std::fs::write(path, &contents[inode])?;
        }
        Ok(report)
    }

    fn file(&self, inode: usize) -> Rc<dyn StorageFile> {
        Rc::new(SimFile {
            sim: self.clone(),
            inode,
        })
    }

    /// Yields a seeded number of times (0..=3), so concurrent operations finish in a
    /// shuffled order.
    async fn jitter(&self) {
        let n = self.state.borrow_mut().rng.random_range(0..=3u32);
        for _ in 0..n {
            YieldNow(false).await;
        }
    }
}

struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

struct SimFile {
    sim: SimStorage,
    inode: usize,
}

#[async_trait(?Send)]
impl StorageFile for SimFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        let verdict = {
            let mut st = self.sim.state.borrow_mut();
            st.tick()?;
            self.sim.plan.check(FaultOp::Write)
        };
        let len = match verdict {
            Verdict::Proceed => buf.len(),
            Verdict::Fail(FaultKind::ShortWrite) => buf.len() / 2 / SECTOR_BYTES * SECTOR_BYTES,
            Verdict::Fail(kind) => return Err(kind.error(FaultOp::Write)),
        };
        let id = {
            let mut st = self.sim.state.borrow_mut();
            let id = st.next_write_id;
            st.next_write_id += 1;
            st.inodes[self.inode].in_flight.insert(
                id,
                Unsynced {
                    pos,
                    data: buf.as_bytes()[..len].to_vec(),
                    extend_to_bytes: 0,
                },
            );
            id
        };
        self.sim.jitter().await;
        let mut st = self.sim.state.borrow_mut();
        if st.crashed {
            // Lost with the power, or partly on disk: the crash decides.
            return Err(power_loss());
        }
        let w = st.inodes[self.inode]
            .in_flight
            .remove(&id)
            .expect("in-flight write");
        st.handle(self.inode)?.write_all_at(&w.data, w.pos)?;
        st.inodes[self.inode].completed.push(w);
        Ok(len)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        {
            let mut st = self.sim.state.borrow_mut();
            st.tick()?;
            self.sim.plan.gate(FaultOp::Fdatasync)?;
        }
        // Only what completed before the sync was submitted is covered.
        let covered = self.sim.state.borrow().inodes[self.inode].completed.len();
        self.sim.jitter().await;
        let mut st = self.sim.state.borrow_mut();
        if st.crashed {
            return Err(power_loss());
        }
        let node = &mut st.inodes[self.inode];
        let covered = covered.min(node.completed.len());
        let done: Vec<Unsynced> = node.completed.drain(..covered).collect();
        for w in done {
            apply_change(&mut node.durable, &w);
        }
        Ok(())
    }

    /// Grows the file the process sees at once; the growth is one more unsynced change
    /// that an fdatasync makes durable and a crash keeps or drops.
    async fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        let mut st = self.sim.state.borrow_mut();
        st.tick()?;
        self.sim.plan.gate(FaultOp::Allocate)?;
        let f = st.handle(self.inode)?;
        if f.metadata()?.len() < len_bytes {
            f.set_len(len_bytes)?;
        }
        st.inodes[self.inode].completed.push(Unsynced {
            pos: 0,
            data: Vec::new(),
            extend_to_bytes: len_bytes,
        });
        Ok(())
    }
}

#[async_trait(?Send)]
impl Storage for SimStorage {
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        let mut st = self.state.borrow_mut();
        st.tick()?;
        self.plan.gate(FaultOp::Create)?;
        st.known(path)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        // A new inode: its name is durable only after the directory is synced.
        let inode = st.inodes.len();
        st.inodes.push(Inode::default());
        st.names.insert(path.to_path_buf(), inode);
        Ok(self.file(inode))
    }

    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        let mut st = self.state.borrow_mut();
        st.tick()?;
        self.plan.gate(FaultOp::Open)?;
        match st.known(path)? {
            Some(inode) => Ok(self.file(inode)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            )),
        }
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.tick()?;
        self.plan.gate(FaultOp::Remove)?;
        let Some(inode) = st.known(path)? else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        std::fs::remove_file(path)?;
        st.names.remove(path);
        st.handles.remove(&inode);
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.tick()?;
        self.plan.gate(FaultOp::Rename)?;
        let Some(inode) = st.known(from)? else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        // A file `to` replaces must be known (adopted as durable) before it disappears,
        // so a crash before the directory sync brings it back.
        st.known(to)?;
        std::fs::rename(from, to)?;
        st.names.remove(from);
        // The replaced inode keeps no name (open handles of it stay valid).
        st.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.tick()?;
        self.plan.gate(FaultOp::SyncDir)?;
        let st = &mut *st;
        st.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, i) in st.names.iter() {
            if p.parent() == Some(dir) {
                st.durable_names.insert(p.clone(), *i);
            }
        }
        Ok(())
    }
}
