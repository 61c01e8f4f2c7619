//! The shared header across processes: untorn cuts read by other processes while a writer
//! publishes, snapshots that hold back truncation (also when their process is killed), the
//! writer lease (a second writer is refused, a killed owner frees the log at once), and
//! headers that are damaged, foreign, stale or out of step with the disk.
//!
//! The multi-process tests re-run this test binary as the child: `child_process_entry` (an
//! ignored test) does what `SHARDWAL_SHM_CHILD` says and reports on stdout in lines that
//! start with `CHILD `.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shardwal::shm::{HeaderView, ShardState};
use shardwal::{Error, Lsn, Shard, ShardId, Wal, WalConfig};

const ROLE: &str = "SHARDWAL_SHM_CHILD";
const DIR: &str = "SHARDWAL_SHM_DIR";
const SECONDS: &str = "SHARDWAL_SHM_SECONDS";

/// Word offsets in `wal.shm`, from the layout drawn in the `shm::layout` module docs.
const W_LAYOUT_VERSION: u64 = 1;
const W_BOOT_ID_LO: u64 = 7;
const W_CREATED_UNIX_US: u64 = 8;
const W_IMMUTABLE_XXH3: u64 = 9;
const W_SHARDS: u64 = 24;
const S_SEQ: u64 = 0;
const S_DURABLE_LSN: u64 = 1;

fn header_path(dir: &Path) -> PathBuf {
    dir.join(shardwal::shm::HEADER_FILE_NAME)
}

/// Overwrites one 8-byte word of a header no process has open for writing.
fn poke_word(dir: &Path, word: u64, value: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(header_path(dir))
        .unwrap();
    f.write_all_at(&value.to_le_bytes(), word * 8).unwrap();
}

fn peek_word(dir: &Path, word: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(header_path(dir)).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, word * 8).unwrap();
    u64::from_le_bytes(b)
}

fn config(dir: &Path, shards: u32) -> WalConfig {
    small(dir, shards).build().unwrap()
}

/// Appends `per_shard` durable records to every shard and closes the log; returns the cut.
fn fill(cfg: &WalConfig, per_shard: u64) -> Vec<Lsn> {
    let out = shardwal::spawn(cfg.clone(), move |s: Shard| async move {
        for n in 0..per_shard {
            s.append_durable(&payload(s.id().0, n)).await.unwrap();
        }
        s.durable_lsn()
    })
    .unwrap()
    .join()
    .unwrap();
    out
}

fn spawn_child(role: &str, dir: &Path, seconds: f64) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DIR, dir)
        .env(SECONDS, seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// The next `CHILD <tag> ...` line of a child, without the prefix and tag.
fn child_line(out: &mut BufReader<ChildStdout>, tag: &str) -> String {
    // The test harness may have printed "test child_process_entry ... " on the same line.
    let marker = format!("CHILD {tag} ");
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the child exited before printing {marker:?}");
        if let Some(at) = line.find(&marker) {
            return line[at + marker.len()..].trim_end().to_string();
        }
    }
}

fn parse_lsns(s: &str) -> Vec<u64> {
    serde_json::from_str(s).unwrap()
}

fn open_view(dir: &Path) -> HeaderView {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match HeaderView::open(dir) {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("no usable header in {}: {e}", dir.display()),
        }
    }
}

/// The child processes' side.
#[test]
#[ignore = "entry point of the child processes that the multi-process tests spawn"]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let seconds: f64 = std::env::var(SECONDS).unwrap().parse().unwrap();
    match role.as_str() {
        // Own the log, make 50 records per shard durable, say so, and wait to be killed.
        "writer" => {
            let wal = Wal::start(config(&dir, 2)).unwrap();
            let client = wal.client();
            futures::executor::block_on(async {
                for n in 0..50u64 {
                    for s in 0..2 {
                        client
                            .append_durable(ShardId(s), payload(s, n))
                            .await
                            .unwrap();
                    }
                }
            });
            let cut: Vec<u64> = client
                .durable_cut()
                .as_slice()
                .iter()
                .map(|l| l.0)
                .collect();
            println!("CHILD owned {}", serde_json::to_string(&cut).unwrap());
            std::thread::sleep(Duration::from_secs(3600));
        }
        // Pin a snapshot, say so, and wait to be killed.
        "pin" => {
            let snap = open_view(&dir).snapshot().unwrap();
            let cut: Vec<u64> = snap.cut().as_slice().iter().map(|l| l.0).collect();
            println!("CHILD pinned {}", serde_json::to_string(&cut).unwrap());
            std::thread::sleep(Duration::from_secs(3600));
            drop(snap);
        }
        // Take cuts for `seconds`, checking each; read a pinned snapshot every 500 cuts
        // ("reader"), or only take cuts through a read-only mapping ("ro-reader").
        "reader" | "ro-reader" => {
            let read_only = role == "ro-reader";
            let view = match read_only {
                true => {
                    open_view(&dir); // waits for the header
                    HeaderView::open_read_only(&dir).unwrap()
                }
                false => open_view(&dir),
            };
            let shards = view.shard_count() as usize;
            let mut last = vec![0u64; shards];
            let (mut cuts, mut snapshots, mut records) = (0u64, 0u64, 0u64);
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < seconds {
                // A torn publication fails here (check word), as does an odd seqlock.
                let positions = view.positions().unwrap();
                for (i, p) in positions.iter().enumerate() {
                    assert!(p.durable_lsn.0 >= last[i], "shard {i} went back");
                    assert!(p.first_lsn.0 <= p.durable_lsn.0 + 1);
                    last[i] = p.durable_lsn.0;
                }
                cuts += 1;
                if !read_only && cuts % 500 == 0 {
                    let snap = view.snapshot().unwrap();
                    for s in 0..shards {
                        let shard = ShardId(s as u32);
                        let upto = snap.cut().get(shard).unwrap();
                        let from = snap.pinned_from(shard).unwrap();
                        let mut n = 0u64;
                        let mut expect = from;
                        for r in snap.reader(shard, from).unwrap() {
                            let r = r.unwrap();
                            assert_eq!(r.lsn, expect, "records are contiguous");
                            expect = r.lsn.next();
                            n += 1;
                        }
                        // Every record up to the cut is on disk: the cut is not ahead.
                        assert_eq!(n, (upto.0 + 1).saturating_sub(from.0), "shard {s}");
                        records += n;
                    }
                    snapshots += 1;
                }
            }
            println!(
                "CHILD done {}",
                serde_json::json!({"cuts": cuts, "snapshots": snapshots, "records": records, "last": last, "read_only": read_only})
            );
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn readers_in_other_processes_take_untorn_cuts_while_a_writer_publishes() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    fill(&cfg, 1); // the header exists before the readers start
                   // SHARDWAL_SHM_READ_SECONDS: how long the readers run (default 2 s in CI).
    let seconds: f64 = std::env::var("SHARDWAL_SHM_READ_SECONDS")
        .map(|s| s.parse().expect("SHARDWAL_SHM_READ_SECONDS: seconds"))
        .unwrap_or(2.0);
    let readers: Vec<_> = ["reader", "reader", "ro-reader"]
        .into_iter()
        .map(|role| spawn_child(role, d.path(), seconds))
        .collect();
    let writer_seconds = seconds + 1.0;
    let finals = shardwal::spawn(cfg.clone(), move |s: Shard| async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                glommio::spawn_local(async move {
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < writer_seconds {
                        s.append_durable(&payload(t, n)).await.unwrap();
                        n += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        s.durable_lsn().0
    })
    .unwrap()
    .join()
    .unwrap();
    for (mut child, mut out) in readers {
        let done: serde_json::Value = serde_json::from_str(&child_line(&mut out, "done")).unwrap();
        assert!(child.wait().unwrap().success());
        let cuts = done["cuts"].as_u64().unwrap();
        let snapshots = done["snapshots"].as_u64().unwrap();
        assert!(cuts >= 1000, "{done}");
        assert!(snapshots >= 1 || done["read_only"] == true, "{done}");
        let last = parse_lsns(&done["last"].to_string());
        for (i, l) in last.iter().enumerate() {
            assert!(
                *l <= finals[i],
                "a cut ({l}) beyond shard {i}'s durable lsn {}",
                finals[i]
            );
            assert!(*l > 1, "the reader saw shard {i} move");
        }
        eprintln!("reader: {done}");
    }
}

#[test]
fn a_second_writer_is_refused_with_the_owners_pid_and_a_killed_owner_frees_the_log_at_once() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, mut out) = spawn_child("writer", d.path(), 0.0);
    let acked = parse_lsns(&child_line(&mut out, "owned"));
    let pid = child.id();

    let cfg = config(d.path(), 2);
    match run(&cfg, || Shard::open(&cfg, ShardId(0))) {
        Err(Error::LogLocked { owner, .. }) => {
            assert!(owner.contains(&format!("pid {pid}")), "{owner}")
        }
        Err(e) => panic!("expected LogLocked, got {e}"),
        Ok(_) => panic!("two processes own the log"),
    }
    // Through the client API too: `Wal::start` waits for its shards and reports the lease.
    match Wal::start(cfg.clone()) {
        Err(Error::LogLocked { owner, .. }) => {
            assert!(owner.contains(&format!("pid {pid}")), "{owner}")
        }
        Err(e) => panic!("expected LogLocked from Wal::start, got {e}"),
        Ok(_) => panic!("two processes own the log"),
    }
    let view = HeaderView::open(d.path()).unwrap();
    let owner = view.owner().unwrap();
    assert_eq!((owner.pid, owner.alive), (pid, true));
    assert_eq!(
        view.cut().unwrap().as_slice(),
        &[Lsn(acked[0]), Lsn(acked[1])]
    );
    assert!(view
        .positions()
        .unwrap()
        .iter()
        .all(|p| p.state == ShardState::Open));

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !view.owner().unwrap().alive,
        "the header still names the dead owner"
    );

    // No waiting, no lock file to clean up: the kernel dropped the OFD lock with the process.
    let reopened = shardwal::spawn(cfg.clone(), |s: Shard| async move {
        let records = read_shard(&s);
        (s.durable_lsn().0, records.len() as u64)
    })
    .unwrap()
    .join()
    .unwrap();
    for (i, (durable, count)) in reopened.iter().enumerate() {
        assert!(*durable >= acked[i], "shard {i} lost acknowledged records");
        assert_eq!(*count, *durable);
    }
    let owner = HeaderView::open(d.path()).unwrap().owner();
    assert!(owner.is_none(), "a closed log has no owner: {owner:?}");
}

#[test]
fn a_read_only_view_takes_cuts_but_cannot_pin() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    let cut = fill(&cfg, 30);
    let view = HeaderView::open_read_only(d.path()).unwrap();
    assert!(!view.is_writable());
    assert_eq!(view.cut().unwrap().as_slice(), &cut[..]);
    assert!(view.owner().is_none());
    assert!(view.pins().is_empty());
    match view.snapshot() {
        Err(Error::BadHeader { detail, .. }) => assert!(detail.contains("read-only"), "{detail}"),
        Err(e) => panic!("expected BadHeader, got {e}"),
        Ok(_) => panic!("a read-only view pinned a snapshot"),
    }
    // The mapping really is read-only: a file opened O_RDONLY cannot be mapped for writing,
    // and the view's descriptor is the only one this process has on the header.
    let flags = open_flags(&header_path(d.path()));
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0] & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
    // It keeps working while a writer publishes.
    let again = fill(&cfg, 5);
    assert_eq!(view.cut().unwrap().as_slice(), &again[..]);
    assert!(again[0] > cut[0]);
}

#[test]
fn pin_slots_run_out_with_a_clear_error_and_come_back_when_dropped() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 1);
    fill(&cfg, 3);
    // Two views: their slot locks are separate open file descriptions and must exclude
    // each other, as two processes' would.
    let (a, b) = (
        HeaderView::open(d.path()).unwrap(),
        HeaderView::open(d.path()).unwrap(),
    );
    let mut held: Vec<_> = (0..32).map(|_| a.snapshot().unwrap()).collect();
    held.extend((0..32).map(|_| b.snapshot().unwrap()));
    assert_eq!(a.pins().len(), 64);
    for view in [&a, &b] {
        match view.snapshot() {
            Err(Error::TooManyReaders { slots, .. }) => assert_eq!(slots, 64),
            Err(e) => panic!("expected TooManyReaders, got {e}"),
            Ok(_) => panic!("a 65th pin in 64 slots"),
        }
    }
    drop(held.pop()); // one of b's
    let again = a.snapshot().unwrap();
    assert_eq!(again.cut().get(ShardId(0)), Some(Lsn(3)));
    assert_eq!(a.pins().len(), 64);
}

#[test]
fn one_process_cannot_open_a_log_with_two_shard_counts() {
    let d = tempfile::tempdir().unwrap();
    let two = config(d.path(), 2);
    let three = config(d.path(), 3);
    run(&two, || async {
        let s = Shard::open(&two, ShardId(0)).await.unwrap();
        match Shard::open(&three, ShardId(2)).await {
            Err(Error::InvalidConfig(msg)) => assert!(msg.contains("2 shards"), "{msg}"),
            Err(e) => panic!("expected InvalidConfig, got {e}"),
            Ok(_) => panic!("one log open with two shard counts"),
        }
        s.close().await.unwrap();
    });
}

#[test]
fn the_same_shard_twice_in_one_process_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 1);
    run(&cfg, || async {
        let first = Shard::open(&cfg, ShardId(0)).await.unwrap();
        match Shard::open(&cfg, ShardId(0)).await {
            Err(Error::LogLocked { owner, .. }) => {
                assert!(owner.contains("already open"), "{owner}")
            }
            Err(e) => panic!("expected LogLocked, got {e}"),
            Ok(_) => panic!("one shard opened twice"),
        }
        first.close().await.unwrap();
        drop(first);
    });
    // After a close the shard opens again in the same process.
    run(&cfg, || async {
        Shard::open(&cfg, ShardId(0))
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
    });
}

/// The flags of every descriptor this process has open on `path`, from /proc/self/fdinfo.
fn open_flags(path: &Path) -> Vec<u32> {
    let path = std::fs::canonicalize(path).unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(entry.path()).ok().as_deref() != Some(path.as_path()) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        out.push(flags);
    }
    out
}

#[test]
fn the_lease_descriptor_is_close_on_exec() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 1);
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let view = HeaderView::open(cfg.dir()).unwrap();
        let flags = open_flags(&header_path(cfg.dir()));
        // The writer's (holding the lease) and the view's (holding pin locks).
        assert_eq!(flags.len(), 2, "{flags:?}");
        for f in flags {
            assert_ne!(
                f & libc::O_CLOEXEC as u32,
                0,
                "a child process would inherit {f:o}"
            );
        }
        drop(view);
        s.close().await.unwrap();
    });
}

#[test]
fn a_snapshot_holds_back_truncation_until_dropped() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 1);
    let dir = d.path().to_path_buf();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        fill_segments(&s, 1000).await;
        let segments_before = seg_files(&dir, 0).len();
        assert!(segments_before >= 4, "{segments_before} segments");
        let snap = HeaderView::open(&dir).unwrap().snapshot().unwrap();
        assert_eq!(snap.pinned_from(ShardId(0)), Some(Lsn(1)));
        assert_eq!(snap.cut().get(ShardId(0)), Some(s.durable_lsn()));

        fill_segments(&s, 200).await;
        let removed = s.truncate_before(s.durable_lsn()).await.unwrap();
        assert_eq!(removed, 0, "a pinned segment was removed");
        assert_eq!(s.first_lsn(), Lsn(1));
        let records: Vec<_> = snap
            .reader_all(ShardId(0))
            .unwrap()
            .map(|r| r.unwrap().lsn)
            .collect();
        assert_eq!(records.len() as u64, snap.cut().get(ShardId(0)).unwrap().0);
        let pins = HeaderView::open(&dir).unwrap().pins();
        assert_eq!(pins.len(), 1);
        assert_eq!(pins[0].pid, std::process::id());

        drop(snap);
        let removed = s.truncate_before(s.durable_lsn()).await.unwrap();
        assert!(
            removed >= 4,
            "only {removed} segments removed once the pin was gone"
        );
        let view = HeaderView::open(&dir).unwrap();
        assert!(view.pins().is_empty());
        assert_eq!(view.positions().unwrap()[0].first_lsn, s.first_lsn());
        // A snapshot now starts at the truncation floor (the LSN asked for, at or above the
        // first stored one); below it is refused.
        let snap = view.snapshot().unwrap();
        assert_eq!(snap.pinned_from(ShardId(0)), Some(s.durable_lsn()));
        assert!(s.first_lsn() <= s.durable_lsn());
        assert_eq!(snap.reader_all(ShardId(0)).unwrap().count(), 1);
        assert!(matches!(
            snap.reader(ShardId(0), Lsn(1)),
            Err(Error::Truncated { .. })
        ));
        drop(snap);
        s.close().await.unwrap();
    });
}

#[test]
fn the_pin_of_a_killed_reader_process_is_reaped() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 1);
    let dir = d.path().to_path_buf();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        fill_segments(&s, 1000).await;
        let (mut child, mut out) = spawn_child("pin", &dir, 0.0);
        let cut = parse_lsns(&child_line(&mut out, "pinned"));
        assert_eq!(cut, vec![s.durable_lsn().0]);
        assert_eq!(s.truncate_before(s.durable_lsn()).await.unwrap(), 0);
        let pins = HeaderView::open(&dir).unwrap().pins();
        assert_eq!(
            (pins.len(), pins[0].pid, pins[0].alive),
            (1, child.id(), true)
        );

        child.kill().unwrap(); // SIGKILL: the reader never unpins
        child.wait().unwrap();
        let removed = s.truncate_before(s.durable_lsn()).await.unwrap();
        assert!(
            removed >= 4,
            "the dead reader's pin still held {removed} removals back"
        );
        assert!(
            HeaderView::open(&dir).unwrap().pins().is_empty(),
            "not reaped"
        );
        s.close().await.unwrap();
    });
}

#[test]
fn damaged_foreign_and_stale_headers_are_refused_by_readers_and_rebuilt_by_the_writer() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    let cut = fill(&cfg, 20);

    type Damage = Box<dyn Fn(&Path)>;
    let cases: [(&str, Damage, &str); 5] = [
        (
            "garbage",
            Box::new(|dir: &Path| std::fs::write(header_path(dir), vec![0x5a; 20000]).unwrap()),
            "magic",
        ),
        (
            "too short",
            Box::new(|dir: &Path| std::fs::write(header_path(dir), b"SWALSHM1").unwrap()),
            "too few",
        ),
        (
            "other layout version",
            Box::new(|dir: &Path| poke_word(dir, W_LAYOUT_VERSION, 99)),
            "layout version 99",
        ),
        (
            "damaged immutable word",
            Box::new(|dir: &Path| {
                let lo = peek_word(dir, W_BOOT_ID_LO);
                poke_word(dir, W_BOOT_ID_LO, lo ^ 1);
            }),
            "checksum",
        ),
        (
            "previous boot",
            Box::new(|dir: &Path| {
                let lo = peek_word(dir, W_BOOT_ID_LO);
                poke_word(dir, W_BOOT_ID_LO, lo ^ 1);
                // A consistent header of another boot: fix the checksum too.
                let mut bytes = Vec::new();
                for w in W_LAYOUT_VERSION..=W_CREATED_UNIX_US {
                    bytes.extend_from_slice(&peek_word(dir, w).to_le_bytes());
                }
                poke_word(dir, W_IMMUTABLE_XXH3, xxhash_rust::xxh3::xxh3_64(&bytes));
            }),
            "before the last reboot",
        ),
    ];
    for (what, damage, needle) in cases {
        damage(d.path());
        match HeaderView::open(d.path()) {
            Err(Error::BadHeader { detail, .. }) => {
                assert!(detail.contains(needle), "{what}: {detail}")
            }
            Err(e) => panic!("{what}: expected BadHeader, got {e}"),
            Ok(_) => panic!("{what}: a reader trusted a bad header"),
        }
        // The writer rebuilds it and publishes what is on disk.
        let again = fill(&cfg, 0);
        assert_eq!(again, cut, "{what}");
        let view = HeaderView::open(d.path()).unwrap();
        assert_eq!(view.cut().unwrap().as_slice(), &cut[..], "{what}");
    }
}

#[test]
fn reconcile_rewinds_a_header_ahead_of_the_disk_and_repairs_an_odd_seqlock() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), 2);
    let cut = fill(&cfg, 20);
    let generation = HeaderView::open(d.path()).unwrap().generation();

    // Ahead: the header claims records the disk does not hold.
    poke_word(d.path(), W_SHARDS + S_DURABLE_LSN, cut[0].0 + 1000);
    assert_eq!(fill(&cfg, 0), cut);
    let view = HeaderView::open(d.path()).unwrap();
    assert_eq!(view.cut().unwrap().as_slice(), &cut[..]);
    assert_eq!(
        view.generation(),
        generation + 1,
        "a rewind bumps the generation"
    );

    // Odd: a writer died in the middle of a publication. Readers give up on that shard
    // (bounded), the next writer repairs it.
    let seq = peek_word(d.path(), W_SHARDS + 8 + S_SEQ);
    poke_word(d.path(), W_SHARDS + 8 + S_SEQ, seq | 1);
    match HeaderView::open(d.path()).unwrap().cut() {
        Err(Error::BadHeader { detail, .. }) => assert!(detail.contains("odd"), "{detail}"),
        other => panic!("expected BadHeader for an odd seqlock, got {other:?}"),
    }
    assert_eq!(fill(&cfg, 0), cut);
    assert_eq!(
        HeaderView::open(d.path())
            .unwrap()
            .cut()
            .unwrap()
            .as_slice(),
        &cut[..]
    );
    // Behind: the header missed publications (a crash after an fdatasync): advanced.
    poke_word(d.path(), W_SHARDS + S_DURABLE_LSN, 1);
    assert_eq!(fill(&cfg, 0), cut);
    let view = HeaderView::open(d.path()).unwrap();
    assert_eq!(view.cut().unwrap().as_slice(), &cut[..]);
    assert_eq!(
        view.generation(),
        generation + 1,
        "advancing keeps the generation"
    );
}
