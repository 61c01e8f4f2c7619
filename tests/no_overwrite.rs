//! Proves "no write ever covers bytes that hold an earlier record": a storage wrapper records
//! every write that carries data and the test fails if any write (data, or zeros written
//! ahead of the write head) overlaps an earlier completed data write or any write still in
//! flight in the same file, across single commits, full buffers, segment rotation, zeroing
//! ahead while idle, and a reopen that resumes inside a segment.

mod common;
use common::*;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use async_trait::async_trait;
use glommio::io::DmaBuffer;
use shardwal::storage::{DmaStorage, Storage, StorageFile};
use shardwal::{Lsn, Shard, ShardId};

type WriteLog = Rc<RefCell<HashMap<PathBuf, Vec<(u64, u64)>>>>;

/// Data writes submitted and not completed yet, in this session.
type InFlight = Rc<RefCell<Vec<(PathBuf, u64, u64)>>>;

thread_local! {
    /// Data writes seen by every wrapper on this thread.
    static DATA_WRITES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Writes of zeros (zeroing ahead, clearing a recycled header) seen on this thread.
    static ZERO_WRITES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

struct Recording {
    inner: DmaStorage,
    log: WriteLog,
    in_flight: InFlight,
}

struct RecordingFile {
    inner: Rc<dyn StorageFile>,
    path: PathBuf,
    log: WriteLog,
    in_flight: InFlight,
}

#[async_trait(?Send)]
impl StorageFile for RecordingFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        let data = buf.as_bytes().iter().any(|&b| b != 0);
        let len = buf.len() as u64;
        let end = pos + len;
        // Nothing, zeros included, may be written over a completed data write, nor over any
        // write in flight (zeroing ahead of the write head must stay ahead of the records).
        {
            let log = self.log.borrow();
            for &(s, e) in log.get(&self.path).into_iter().flatten() {
                assert!(
                    end <= s || pos >= e,
                    "{}: write {pos}..{end} (data: {data}) overlaps earlier completed data write {s}..{e}",
                    self.path.display()
                );
            }
            let mut in_flight = self.in_flight.borrow_mut();
            for (p, s, e) in in_flight.iter() {
                assert!(
                    p != &self.path || end <= *s || pos >= *e,
                    "{}: write {pos}..{end} (data: {data}) overlaps write {s}..{e} in flight",
                    self.path.display()
                );
            }
            in_flight.push((self.path.clone(), pos, end));
        }
        if data {
            DATA_WRITES.with(|c| c.set(c.get() + 1));
        } else {
            ZERO_WRITES.with(|c| c.set(c.get() + 1));
        }
        let result = self.inner.write_at(buf, pos).await;
        self.in_flight
            .borrow_mut()
            .retain(|(p, s, _)| !(p == &self.path && *s == pos));
        let n = result?;
        // Only a completed write holds bytes that may belong to a record: a write that was
        // never submitted before a crash left nothing behind to protect.
        if data {
            let mut log = self.log.borrow_mut();
            log.entry(self.path.clone()).or_default().push((pos, end));
        }
        Ok(n)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.inner.fdatasync().await
    }
    async fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.allocate(len_bytes).await
    }
}

#[async_trait(?Send)]
impl Storage for Recording {
    async fn create(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        self.log.borrow_mut().remove(path);
        Ok(Rc::new(RecordingFile {
            inner: self.inner.create(path).await?,
            path: path.to_path_buf(),
            log: self.log.clone(),
            in_flight: self.in_flight.clone(),
        }))
    }
    async fn open(&self, path: &Path) -> io::Result<Rc<dyn StorageFile>> {
        Ok(Rc::new(RecordingFile {
            inner: self.inner.open(path).await?,
            path: path.to_path_buf(),
            log: self.log.clone(),
            in_flight: self.in_flight.clone(),
        }))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // A renamed file is a retired segment (a spare) or a spare becoming a new segment:
        // its old bytes hold no record any more, so its history starts over. (A file opened
        // under its spare name keeps recording under that name, which no other file gets.)
        {
            let mut log = self.log.borrow_mut();
            log.remove(from);
            log.remove(to);
        }
        self.inner.rename(from, to).await
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir).await
    }
}

/// Waits until the quiet shard zeroed ahead of its write head (in a new segment, with room
/// for a piece past the open batch's reach); records then follow over the zeroed blocks.
async fn wait_for_zeroing(s: &Shard) {
    for _ in 0..1000 {
        if s.metrics().zeroed_bytes > 0 {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("a quiet shard did not zero ahead: {:?}", s.metrics());
}

#[test]
fn no_data_write_overlaps_an_earlier_one() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    let log: WriteLog = Rc::default();
    let mut seq = 0u64;
    for session in 0..3 {
        let session_log = log.clone();
        let session_cfg = cfg.clone();
        seq = run(&cfg, || async move {
            let storage = Rc::new(Recording {
                inner: DmaStorage::new(false),
                log: session_log,
                in_flight: InFlight::default(),
            });
            let cfg = session_cfg;
            let s = Shard::open_with_storage(&cfg, ShardId(0), storage)
                .await
                .unwrap();
            // Single durable records (one padded write each), then bursts that fill whole
            // buffers, then concurrent committers: enough to rotate segments.
            for i in 0..40 {
                seq += 1;
                s.append_durable(&payload(0, seq)).await.unwrap();
                if session == 0 && i == 9 {
                    wait_for_zeroing(&s).await;
                }
            }
            for _ in 0..300 {
                seq += 1;
                s.append(&payload(0, seq)).await.unwrap();
            }
            s.sync().await.unwrap();
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let s = s.clone();
                    glommio::spawn_local(async move {
                        for _ in 0..10 {
                            s.append_durable(b"concurrent").await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
            seq = s.last_appended_lsn().0;
            // Drop old segments so that later segments are recycled spares: writes into a
            // recycled file must not overlap this generation's earlier writes either.
            if session < 2 {
                s.truncate_before(Lsn(s.durable_lsn().0 + 1)).await.unwrap();
            }
            // Sessions 0 and 1 crash (no close); session 2 closes cleanly.
            if session == 2 {
                s.close().await.unwrap();
            } else {
                shardwal::shm::simulate_process_death(cfg.dir());
            }
            assert!(s.metrics().rotations > 0 || session > 0);
            seq
        });
        let written = DATA_WRITES.with(|c| c.get());
        assert!(written > 40 * (session + 1), "the wrapper saw the writes");
        assert!(
            ZERO_WRITES.with(|c| c.get()) > 0,
            "the wrapper saw zeroing ahead"
        );
    }
    let lsns: Vec<u64> = shardwal::LogReader::open_all(d.path(), ShardId(0))
        .unwrap()
        .map(|r| r.unwrap().lsn.0)
        .collect();
    assert_eq!(lsns.last().copied(), Some(seq));
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
}
