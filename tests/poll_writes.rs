//! `poll_write_completions`: a shard's segment writes go to glommio's poll ring (the
//! executor spins while they are in flight) or to its main ring (it sleeps), and with
//! either every acknowledged record is there after a crash and a reopen.
mod common;
use common::*;

use shardwal::{Lsn, Shard, ShardId};

const RECORDS: u64 = 1_500;

/// O_DIRECT writes on tmpfs go through neither ring (glommio turns direct I/O off there).
fn on_tmpfs(path: &std::path::Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `statfs` is a plain C struct of integers, for which all zero bytes is a
    // valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a writable `statfs` that lives
    // across the call; statfs only writes into it.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    assert_eq!(rc, 0, "statfs {}", path.display());
    buf.f_type == libc::TMPFS_MAGIC
}

/// Writes `RECORDS` durable records with `poll` set, crashes, and returns the writes each
/// ring completed: (poll ring, main ring).
fn write_then_crash(dir: &std::path::Path, poll: bool) -> (u64, u64) {
    let cfg = small(dir, 1).poll_write_completions(poll).build().unwrap();
    let c = cfg.clone();
    run(&cfg, || async move {
        // Counters since the executor started, taken (and reset) once.
        let s = Shard::open(&c, ShardId(0)).await.unwrap();
        for n in 0..RECORDS {
            let lsn = s.append_durable(&payload(0, n)).await.unwrap();
            assert_eq!(lsn, Lsn(n + 1));
        }
        let stats = glommio::executor().io_stats();
        crash(s);
        (
            stats.poll_ring.file_writes().0,
            stats.main_ring.file_writes().0,
        )
    })
}

fn check(poll: bool) {
    let d = tempfile::tempdir().unwrap();
    if on_tmpfs(d.path()) {
        eprintln!("tempdir is on tmpfs, which has no O_DIRECT rings: skipped");
        return;
    }
    let (polled, main) = write_then_crash(d.path(), poll);
    let expected: Vec<_> = (0..RECORDS).map(|n| payload(0, n)).collect();
    // Reopened without polling, on another thread (a fresh glommio probe).
    let dir = d.path().to_path_buf();
    let got = std::thread::spawn(move || {
        let cfg = small(&dir, 1).build().unwrap();
        let c = cfg.clone();
        run(&cfg, || async move {
            let s = Shard::open(&c, ShardId(0)).await.unwrap();
            let got = read_shard(&s);
            s.close().await.unwrap();
            got
        })
    })
    .join()
    .unwrap();
    assert_log_eq(&got, &expected, "after a crash and a reopen");
    if poll {
        // One write per durable append at least, every one of them polled.
        assert!(polled >= RECORDS, "polled {polled}, main {main}");
        assert_eq!(main, 0, "no segment write went to the main ring");
    } else {
        assert!(main >= RECORDS, "polled {polled}, main {main}");
        assert_eq!(polled, 0, "no segment write went to the poll ring");
    }
}

#[test]
fn with_polling_every_segment_write_is_polled_and_nothing_acknowledged_is_lost() {
    check(true);
}

#[test]
fn without_polling_no_segment_write_is_polled() {
    check(false);
}

/// Shards opened side by side in one directory (by `spawn`, each on its executor) each
/// choose the poll ring without disturbing the others.
#[test]
fn shards_opened_side_by_side_all_poll() {
    let d = tempfile::tempdir().unwrap();
    if on_tmpfs(d.path()) {
        eprintln!("tempdir is on tmpfs, which has no O_DIRECT rings: skipped");
        return;
    }
    const SHARDS: u32 = 4;
    let cfg = small(d.path(), SHARDS)
        .poll_write_completions(true)
        .build()
        .unwrap();
    let polled = shardwal::spawn(cfg, |shard: Shard| async move {
        for n in 0..100 {
            shard
                .append_durable(&payload(shard.id().0, n))
                .await
                .unwrap();
        }
        glommio::executor().io_stats().poll_ring.file_writes().0
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(polled.len(), SHARDS as usize);
    for (shard, writes) in polled.iter().enumerate() {
        assert!(*writes >= 100, "shard {shard}: {writes} polled writes");
    }
    for shard in 0..SHARDS {
        let expected: Vec<_> = (0..100).map(|n| payload(shard, n)).collect();
        assert_log_eq(&read_all(d.path(), shard), &expected, "after close");
    }
}

/// A probe file that cannot be made fails the open with `Error::Io` naming the step,
/// before recovery or anything is written: with polling the shard's empty probe, either
/// way the 4 KiB probe (here both are directories in the way).
#[test]
fn a_probe_that_cannot_be_made_fails_the_open() {
    for (poll, in_the_way, op) in [
        (
            true,
            "iopoll.empty.0",
            "creating the empty iopoll probe file",
        ),
        (false, "iopoll.probe", "opening the iopoll probe file"),
        (true, "iopoll.probe", "opening the iopoll probe file"),
    ] {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(in_the_way).join("x")).unwrap();
        let cfg = small(d.path(), 1)
            .poll_write_completions(poll)
            .build()
            .unwrap();
        let c = cfg.clone();
        let err = std::thread::spawn(move || {
            run(&c, || async { Shard::open(&c, ShardId(0)).await.err() })
        })
        .join()
        .unwrap();
        match err {
            Some(shardwal::Error::Io { op: got, .. }) => assert_eq!(got, op, "poll {poll}"),
            other => panic!("poll {poll}, {in_the_way} in the way: {other:?}"),
        }
        assert!(
            seg_files(d.path(), 0).is_empty(),
            "nothing written before the probe"
        );
    }
}
