//! A log directory given as a relative path, or reached through a symlink, works like an
//! absolute one: opening, reopening and reading back. glommio 0.9.0 opens directories with
//! `openat(-1, path)`, which fails for relative paths, so the configuration resolves the
//! path once, when it is built.
//!
//! This file changes the process's working directory, so it holds one test.
mod common;
use common::*;

use std::path::Path;

use futures::executor::block_on;
use shardwal::{LogReader, Lsn, ShardId, Wal};

const SHARDS: u32 = 2;
const PER_SHARD: u64 = 50;

/// Starts the log at `dir`, appends `PER_SHARD` durable records to every shard (numbered
/// from `first`), closes it, and returns the final durable LSN of each shard.
fn write_session(dir: &Path, first: u64) -> Vec<Lsn> {
    let cfg = small(dir, SHARDS).build().unwrap();
    assert!(cfg.dir().is_absolute(), "{}", cfg.dir().display());
    let wal = Wal::start(cfg).unwrap();
    let client = wal.client();
    block_on(async {
        for s in 0..SHARDS {
            for i in first..first + PER_SHARD {
                let lsn = client
                    .append_durable(ShardId(s), payload(s, i))
                    .await
                    .unwrap();
                assert_eq!(lsn, Lsn(i), "shard {s}: the log continues where it was");
            }
        }
    });
    wal.close().unwrap().as_slice().to_vec()
}

/// Every record of every shard read back through `dir`, checked against what was written.
fn check_read_back(dir: &Path, records: u64) {
    for s in 0..SHARDS {
        let got: Vec<_> = LogReader::open(dir, ShardId(s), Lsn(1))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got.len() as u64, records, "shard {s}");
        for r in got {
            assert_eq!(
                r.payload.as_ref(),
                payload(s, r.lsn.0).as_slice(),
                "shard {s}"
            );
        }
    }
}

#[test]
fn relative_and_symlinked_log_directories_work() {
    let d = tempfile::tempdir().unwrap();
    std::env::set_current_dir(d.path()).unwrap();
    let rel = Path::new("relwal");

    let cfg = small(rel, SHARDS).build().unwrap();
    assert_eq!(
        cfg.dir(),
        std::env::current_dir().unwrap().join("relwal"),
        "resolved against the working directory at build time"
    );

    // A fresh log, then a reopen, both through the relative path.
    let first = write_session(rel, 1);
    assert_eq!(first, vec![Lsn(PER_SHARD); SHARDS as usize]);
    let second = write_session(rel, PER_SHARD + 1);
    assert_eq!(second, vec![Lsn(2 * PER_SHARD); SHARDS as usize]);
    check_read_back(rel, 2 * PER_SHARD);

    // The same log through a symlink to its directory, a relative one at that.
    std::os::unix::fs::symlink("relwal", "linkwal").unwrap();
    let link = Path::new("linkwal");
    let third = write_session(link, 2 * PER_SHARD + 1);
    assert_eq!(third, vec![Lsn(3 * PER_SHARD); SHARDS as usize]);
    check_read_back(link, 3 * PER_SHARD);
    check_read_back(&d.path().join("relwal"), 3 * PER_SHARD);

    // A configuration built before the working directory changes keeps its directory.
    let cfg = small(rel, SHARDS).build().unwrap();
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
    let wal = Wal::start(cfg).unwrap();
    assert_eq!(
        wal.close().unwrap().as_slice(),
        &[Lsn(3 * PER_SHARD); SHARDS as usize]
    );
}
