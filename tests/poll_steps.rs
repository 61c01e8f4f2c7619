//! How the shard's futures poll, step by step (`tokio_test::task`): the storage is the
//! simulator behind gates that hold writes or fdatasyncs until the test opens them, so
//! every state is reached on purpose and nothing depends on timing.

mod common;
use common::*;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};

use async_trait::async_trait;
use glommio::io::DmaBuffer;
use shardwal::storage::{FaultPlan, SimStorage, Storage, StorageFile};
use shardwal::{Lsn, Shard, ShardId, WalConfig};
use tokio_test::{assert_pending, assert_ready_ok, task};

/// Holds the operations that pass it while closed; opening wakes them.
#[derive(Default)]
struct Gate {
    closed: Cell<bool>,
    /// Operations that reached the gate while it was closed and still wait.
    held: Cell<u32>,
    wakers: RefCell<Vec<Waker>>,
}

impl Gate {
    fn close(&self) {
        self.closed.set(true);
    }

    fn open(&self) {
        self.closed.set(false);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn pass(&self) {
        let mut counted = false;
        std::future::poll_fn(|cx| {
            if !self.closed.get() {
                if counted {
                    self.held.set(self.held.get() - 1);
                }
                return Poll::Ready(());
            }
            if !counted {
                counted = true;
                self.held.set(self.held.get() + 1);
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The simulator, with a gate in front of every write and every fdatasync.
#[derive(Clone)]
struct Gated {
    sim: SimStorage,
    writes: Rc<Gate>,
    syncs: Rc<Gate>,
}

struct GatedFile {
    inner: Rc<dyn StorageFile>,
    writes: Rc<Gate>,
    syncs: Rc<Gate>,
}

impl Gated {
    fn new() -> Gated {
        Gated {
            sim: SimStorage::new(1, FaultPlan::new(Vec::new())),
            writes: Rc::default(),
            syncs: Rc::default(),
        }
    }

    fn wrap(&self, inner: Rc<dyn StorageFile>) -> Rc<dyn StorageFile> {
        Rc::new(GatedFile {
            inner,
            writes: self.writes.clone(),
            syncs: self.syncs.clone(),
        })
    }
}

#[async_trait(?Send)]
impl StorageFile for GatedFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        self.writes.pass().await;
        self.inner.write_at(buf, pos).await
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.syncs.pass().await;
        self.inner.fdatasync().await
    }
}

#[async_trait(?Send)]
impl Storage for Gated {
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        Ok(self.wrap(self.sim.create(path).await?))
    }
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        Ok(self.wrap(self.sim.open(path).await?))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.sim.remove(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to).await
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.sync_dir(dir).await
    }
}

/// Yields to the executor's other tasks (the flusher, the simulator's I/O) once.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Yields until `done()` holds; panics after 10 000 yields (a stuck test, not a slow one:
/// the simulator finishes an operation within a few yields).
async fn yield_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        yield_once().await;
    }
    panic!("never happened: {what}");
}

async fn open_gated(cfg: &WalConfig) -> (Shard, Gated) {
    let gated = Gated::new();
    let shard = Shard::open_with_storage(cfg, ShardId(0), Rc::new(gated.clone()))
        .await
        .unwrap();
    (shard, gated)
}

/// `commit` stays Pending while its record is written and while the fdatasync that
/// covers it is held; it is woken and Ready only once that fdatasync completed.
#[test]
fn commit_stays_pending_until_the_covering_fdatasync_completes() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let (shard, gated) = open_gated(&cfg).await;
        gated.syncs.close();
        let lsn = shard.append(b"one record").await.unwrap();
        let mut commit = task::spawn(shard.commit(lsn));
        assert_pending!(commit.poll());
        // The flusher seals, writes, and starts the fdatasync, which the gate holds.
        yield_until(
            "the write completes and an fdatasync reaches the gate",
            || shard.metrics().write_ops == 1 && gated.syncs.held.get() > 0,
        )
        .await;
        for _ in 0..100 {
            yield_once().await;
        }
        assert!(
            !commit.is_woken(),
            "nothing woke the commit before its fdatasync"
        );
        assert_pending!(commit.poll());
        assert!(shard.durable_lsn() < lsn);
        gated.syncs.open();
        yield_until("the commit is woken", || commit.is_woken()).await;
        assert_ready_ok!(commit.poll());
        assert!(shard.durable_lsn() >= lsn);
        shard.close().await.unwrap();
    });
}

/// With every write held, appends fill the ring until one is Pending; it stays Pending
/// (polled again, after the flusher ran) while the writes are held, and a completed flush
/// (writes let through) wakes it and makes it Ready.
#[test]
fn a_full_ring_makes_append_pending_until_a_flush_completes() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).flush_buffer_count(2).build().unwrap();
    let record = vec![7u8; 8 << 10];
    run(&cfg, || async {
        let (shard, gated) = open_gated(&cfg).await;
        gated.writes.close();
        let mut appended = 0u32;
        let mut append = loop {
            let mut a = task::spawn(shard.append(&record));
            match a.poll() {
                Poll::Ready(r) => {
                    r.unwrap();
                    appended += 1;
                    assert!(appended < 1000, "the ring never filled");
                }
                Poll::Pending => break a,
            }
        };
        // Two 64 KiB buffers of ~8 KiB frames: about 14 records fit.
        assert!(
            (10..20).contains(&appended),
            "{appended} appends before the ring was full"
        );
        for _ in 0..100 {
            yield_once().await;
        }
        assert!(
            gated.writes.held.get() > 0,
            "the flusher's writes wait at the gate"
        );
        assert_pending!(append.poll());
        for _ in 0..100 {
            yield_once().await;
        }
        assert_pending!(append.poll());
        gated.writes.open();
        yield_until("the append is woken", || append.is_woken()).await;
        let lsn = assert_ready_ok!(append.poll());
        assert_eq!(lsn, Lsn(appended as u64 + 1));
        shard.close().await.unwrap();
    });
}

/// A batch that needs the ring to turn takes a hold: once a flush frees room, a single
/// append polled before the batch resumes stays Pending (without the hold it would take
/// the room and land inside the batch), and gets the LSN after the batch's last.
#[test]
fn an_append_waits_while_a_batch_is_under_way() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).flush_buffer_count(2).build().unwrap();
    run(&cfg, || async {
        let (shard, gated) = open_gated(&cfg).await;
        gated.writes.close();
        // One record first: then the batch's 11 frames of ~10 KiB need a third buffer.
        shard.append(&[9u8; 10 << 10]).await.unwrap();
        let records: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; 10 << 10]).collect();
        let mut batch = task::spawn(shard.append_batch(&records));
        assert_pending!(batch.poll());
        let part = shard.last_appended_lsn();
        assert!(
            part > Lsn(1) && part < Lsn(12),
            "the batch stopped part-way at {part}"
        );
        gated.writes.open();
        yield_until("a flush frees room for the batch", || batch.is_woken()).await;
        let mut single = task::spawn(shard.append(b"single"));
        assert_pending!(single.poll());
        assert_eq!(
            shard.last_appended_lsn(),
            part,
            "the single append took no room"
        );
        let lsns = loop {
            if let Poll::Ready(r) = batch.poll() {
                break r.unwrap();
            }
            yield_until("the batch is woken", || batch.is_woken()).await;
        };
        assert_eq!(lsns, Lsn(2)..=Lsn(12));
        yield_until("the single append is woken", || single.is_woken()).await;
        assert_eq!(assert_ready_ok!(single.poll()), Lsn(13));
        shard.close().await.unwrap();
    });
}

/// Dropping a pending commit leaves no waiter: the mock task's waker is held by nothing
/// but the mock itself afterwards.
#[test]
fn dropping_a_pending_commit_leaves_no_waiter_behind() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let (shard, gated) = open_gated(&cfg).await;
        gated.syncs.close();
        let lsn = shard.append(b"x").await.unwrap();
        let mut mock = task::spawn(());
        let mut commit = Box::pin(shard.commit(lsn));
        mock.enter(|cx, _| assert!(commit.as_mut().poll(cx).is_pending()));
        assert_eq!(
            mock.waker_ref_count(),
            2,
            "the shard's waiter list holds the waker"
        );
        drop(commit);
        assert_eq!(mock.waker_ref_count(), 1, "nothing holds it after the drop");
        gated.syncs.open();
        shard.close().await.unwrap();
    });
}
