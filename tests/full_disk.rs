//! A real full disk (ENOSPC) on a small loop-mounted ext4 file system.
//!
//! A WAL with a small geometry writes until the file system is full. The test checks that
//! the shard fails with [`Error::ShardFailed`] naming the ENOSPC, that later calls keep
//! failing, that reopening while the disk is still full loses nothing, and that once space
//! is freed (a filler file written before the WAL is deleted) the log reopens with every
//! acknowledged record byte for byte and takes appends again.
//!
//! Needs root, `mkfs.ext4`, `mount` and a working loop device. Without them the test prints
//! `full_disk: SKIPPED: <reason>` and passes.
mod common;
use common::*;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use futures::executor::block_on;
use shardwal::{CpuPlacement, Error, Lsn, ShardId, Wal, WalConfig};

const IMAGE_BYTES: u64 = 32 << 20;
const FILLER_BYTES: usize = 8 << 20;
const SHARDS: u32 = 2;
/// Concurrent writers per shard.
const WRITERS: u32 = 8;

/// Unmounts the file system (lazily if it is still busy) when dropped, panics included.
struct Mounted {
    at: PathBuf,
    umount: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new(&self.umount)
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "full_disk: umount {} failed; detaching it lazily",
                self.at.display()
            );
            let _ = Command::new(&self.umount).arg("-l").arg(&self.at).status();
        }
    }
}

/// The first of `names` that exists (absolute paths) or starts from `PATH` (`<name> -V`).
fn find_tool(names: &[&str]) -> Option<PathBuf> {
    for n in names {
        let p = PathBuf::from(n);
        if (p.is_absolute() && p.exists()) || Command::new(n).arg("-V").output().is_ok() {
            return Some(p);
        }
    }
    None
}

/// Creates and mounts the image, or says why it cannot.
fn mount_small_ext4(tmp: &Path) -> Result<Mounted, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "not running as root (euid {euid}); loop mounts need root"
        ));
    }
    let mkfs = find_tool(&["mkfs.ext4", "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"])
        .ok_or("mkfs.ext4 is not installed (e2fsprogs)")?;
    let mount =
        find_tool(&["mount", "/usr/bin/mount", "/bin/mount"]).ok_or("mount is not installed")?;
    let umount = find_tool(&["umount", "/usr/bin/umount", "/bin/umount"])
        .ok_or("umount is not installed")?;
    let image = tmp.join("disk.img");
    let f = std::fs::File::create(&image).map_err(|e| format!("creating the image: {e}"))?;
    f.set_len(IMAGE_BYTES)
        .map_err(|e| format!("sizing the image: {e}"))?;
    drop(f);
    let out = Command::new(&mkfs)
        .args(["-q", "-F", "-m", "0", "-b", "4096"])
        .arg(&image)
        .output()
        .map_err(|e| format!("running mkfs.ext4: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mkfs.ext4 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let at = tmp.join("mnt");
    std::fs::create_dir(&at).map_err(|e| format!("creating the mount point: {e}"))?;
    let out = Command::new(&mount)
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&at)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -o loop failed ({}): {} (no loop devices in this container?)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Mounted { at, umount })
}

fn config(dir: &Path) -> WalConfig {
    WalConfig::builder(dir)
        .shard_count(SHARDS)
        .placement(CpuPlacement::Unbound)
        .segment_bytes(1 << 20)
        .flush_buffer_bytes(64 << 10)
        .flush_buffer_count(4)
        .max_record_bytes(16 << 10)
        .build()
        .unwrap()
}

/// The payload of record `seq` of `writer` on `shard` in `phase`: a tag, then filler, 1 to
/// ~12 KiB long, so the disk fills after a few hundred group commits.
fn payload(phase: u32, shard: u32, writer: u32, seq: u64) -> Vec<u8> {
    let tag = format!("p{phase}s{shard}w{writer}q{seq}|");
    let extra = ((seq * 7919 + writer as u64 * 104_729 + phase as u64 * 31) % 12_000) as usize;
    let fill = format!("{shard}{writer}{seq}-");
    let mut v = tag.clone().into_bytes();
    v.extend(fill.bytes().cycle().take(extra));
    v
}

/// Whether `p` is exactly a payload [`payload`] makes for shard `shard`.
fn is_valid(p: &[u8], shard: u32) -> bool {
    let Some(end) = p.iter().position(|&b| b == b'|') else {
        return false;
    };
    let Ok(tag) = std::str::from_utf8(&p[..end]) else {
        return false;
    };
    let parse = || -> Option<(u32, u32, u32, u64)> {
        let (ph, rest) = tag.strip_prefix('p')?.split_once('s')?;
        let (s, rest) = rest.split_once('w')?;
        let (w, q) = rest.split_once('q')?;
        Some((
            ph.parse().ok()?,
            s.parse().ok()?,
            w.parse().ok()?,
            q.parse().ok()?,
        ))
    };
    matches!(parse(), Some((ph, s, w, q)) if s == shard && payload(ph, s, w, q) == p)
}

/// Whether `e` is an I/O error of kind ENOSPC ([`std::io::ErrorKind::StorageFull`]), as
/// [`Error::Io`] or as the cause of [`Error::ShardFailed`].
fn is_enospc(e: &Error) -> bool {
    e.io_kind() == Some(std::io::ErrorKind::StorageFull)
}

/// Acknowledged records by shard, then LSN.
type Acked = BTreeMap<(u32, u64), Vec<u8>>;

/// Runs `WRITERS` durable-append loops per shard until each gets an error (or `limit`
/// records each); returns what was acknowledged and every error, by shard.
fn write_until_error(wal: &Wal, phase: u32, limit: u64) -> (Acked, Vec<(u32, Error)>) {
    let client = wal.client();
    let acked = RefCell::new(Acked::new());
    let errors = RefCell::new(Vec::new());
    let loops = (0..SHARDS)
        .flat_map(|s| (0..WRITERS).map(move |w| (s, w)))
        .map(|(s, w)| {
            let (client, acked, errors) = (&client, &acked, &errors);
            async move {
                for seq in 0..limit {
                    let p = payload(phase, s, w, seq);
                    match client.append_durable(ShardId(s), p.clone()).await {
                        Ok(lsn) => {
                            let old = acked.borrow_mut().insert((s, lsn.0), p);
                            assert!(old.is_none(), "lsn {lsn} of shard {s} acknowledged twice");
                        }
                        Err(e) => {
                            errors.borrow_mut().push((s, e));
                            return;
                        }
                    }
                }
            }
        });
    block_on(futures::future::join_all(loops));
    (acked.into_inner(), errors.into_inner())
}

/// Reads every shard of the closed log, checks LSNs run 1, 2, 3, ..., that every record is
/// one that was written, and that every acknowledged record is there byte for byte.
fn verify(dir: &Path, acked: &Acked, what: &str) -> usize {
    let mut total = 0;
    for s in 0..SHARDS {
        let log = read_all(dir, s);
        for (i, (lsn, p)) in log.iter().enumerate() {
            assert_eq!(
                *lsn,
                Lsn(i as u64 + 1),
                "{what}: shard {s}: LSNs contiguous"
            );
            assert!(
                is_valid(p, s),
                "{what}: shard {s}: lsn {lsn} holds a payload nobody wrote"
            );
        }
        for ((_, lsn), p) in acked.range((s, 0)..(s + 1, 0)) {
            let got = log.get(*lsn as usize - 1).map(|(_, q)| q);
            assert!(
                got == Some(p),
                "{what}: shard {s}: acknowledged lsn {lsn} is {} (log ends at {})",
                if got.is_some() {
                    "different"
                } else {
                    "missing"
                },
                log.len()
            );
        }
        total += log.len();
    }
    total
}

/// The files under `dir` this process holds open.
fn open_files_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(dir))
        .collect()
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

#[test]
fn enospc_fails_the_shard_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = match mount_small_ext4(tmp.path()) {
        Ok(m) => m,
        Err(why) => {
            println!("full_disk: SKIPPED: {why}");
            return;
        }
    };
    let root = mnt.at.clone();
    // A file written before the WAL, deleted later to free space.
    let filler = root.join("filler.bin");
    std::fs::write(&filler, vec![0x5Au8; FILLER_BYTES]).unwrap();
    std::fs::File::open(&filler).unwrap().sync_all().unwrap();
    let dir = root.join("wal");
    let cfg = config(&dir);
    println!(
        "full_disk: {} MiB ext4 image, {} MiB free after a {} MiB filler",
        IMAGE_BYTES >> 20,
        free_bytes(&root) >> 20,
        FILLER_BYTES >> 20
    );

    // 1. Write until the disk is full. 64 MiB of records per shard cannot fit in 32 MiB.
    let wal = Wal::start(cfg.clone()).expect("open on an empty disk");
    let (mut acked, errors) = write_until_error(&wal, 0, 64 << 20 >> 13);
    assert!(
        !acked.is_empty(),
        "something was written before the disk filled"
    );
    assert_eq!(
        errors.len() as u32,
        SHARDS * WRITERS,
        "every writer stopped on an error"
    );
    let first = &errors[0].1;
    println!("full_disk: first error: {first}");
    println!("full_disk: debug form: {first:?}");
    for (s, e) in &errors {
        assert!(
            matches!(e, Error::ShardFailed { shard, .. } if shard.0 == *s) && is_enospc(e),
            "shard {s}: expected ShardFailed with ENOSPC, got {e:?}"
        );
    }
    println!(
        "full_disk: {} records acknowledged before ENOSPC, {} KiB free",
        acked.len(),
        free_bytes(&root) >> 10
    );

    // 2. Later calls keep failing, the same way.
    let client = wal.client();
    for s in 0..SHARDS {
        let id = ShardId(s);
        for r in [
            block_on(client.append_durable(id, payload(9, s, 0, 0))),
            block_on(client.append(id, payload(9, s, 0, 1))),
        ] {
            assert!(
                matches!(&r, Err(e @ Error::ShardFailed { .. }) if is_enospc(e)),
                "shard {s}: a later append must fail: {r:?}"
            );
        }
        let r = block_on(client.wait_for(id, Lsn(1)));
        assert!(
            matches!(&r, Err(Error::ShardFailed { .. })),
            "shard {s}: a later wait must fail: {r:?}"
        );
    }
    let closed = wal.close();
    assert!(
        matches!(&closed, Err(e @ Error::ShardFailed { .. }) if is_enospc(e)),
        "close reports the failure: {closed:?}"
    );
    let records = verify(&dir, &acked, "after ENOSPC");
    println!(
        "full_disk: {records} records in the log after ENOSPC (all acknowledged ones among them)"
    );

    // 3. Reopening while the disk is still full: opening, recovery and whatever appends
    //    succeed must not cost a record; failures must be ENOSPC.
    match Wal::start(cfg.clone()) {
        Err(e) => assert!(is_enospc(&e), "reopen on a full disk: {e:?}"),
        Ok(wal) => {
            let (more, errors) = write_until_error(&wal, 1, 50);
            for (s, e) in &errors {
                assert!(
                    is_enospc(e) || matches!(e, Error::Closed { .. }),
                    "shard {s}: on a full disk: {e:?}"
                );
            }
            let closed = wal.close();
            println!(
                "full_disk: reopened on the full disk: {} more acknowledged, {} errors, close: {}",
                more.len(),
                errors.len(),
                match &closed {
                    Ok(cut) => format!("ok {cut:?}"),
                    Err(e) => e.to_string(),
                }
            );
            if let Err(e) = &closed {
                assert!(is_enospc(e), "close on a full disk: {e:?}");
            }
            acked.extend(more);
        }
    }
    verify(&dir, &acked, "after reopening on the full disk");

    // 4. Free space, reopen: everything acknowledged is there and appends work again.
    std::fs::remove_file(&filler).unwrap();
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    println!(
        "full_disk: filler deleted, {} MiB free",
        free_bytes(&root) >> 20
    );
    verify(&dir, &acked, "before reopening with space");
    let wal = Wal::start(cfg.clone()).expect("reopen after freeing space");
    let (more, errors) = write_until_error(&wal, 2, 10);
    assert!(errors.is_empty(), "appends after freeing space: {errors:?}");
    assert_eq!(more.len() as u32, SHARDS * WRITERS * 10);
    let cut = wal.close().expect("clean close after freeing space");
    acked.extend(more);
    let records = verify(&dir, &acked, "after freeing space");
    for s in 0..SHARDS {
        let last = acked
            .range((s, 0)..(s + 1, 0))
            .next_back()
            .map(|((_, l), _)| *l);
        assert_eq!(
            Some(cut.as_slice()[s as usize].0),
            last,
            "shard {s}: final durable LSN"
        );
    }
    println!(
        "full_disk: after freeing space: {} records acknowledged in all, {records} in the log",
        acked.len()
    );
    let held = open_files_under(&root);
    assert!(
        held.is_empty(),
        "closed WALs still hold files open: {held:?}"
    );
    drop(mnt);
}

/// Regression: a WAL closed through `Wal::close` or `spawn(..).join()` used to leave its
/// segment files open (glommio closes a dropped `DmaFile` on the executor's next I/O poll,
/// and the executor ended first), so the descriptors leaked, removed segments kept their
/// space, and the full-disk test above could not unmount its file system. Needs no root.
#[test]
fn a_closed_wal_holds_no_files_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    // Small segments, so that rotations happen and old segments are dropped while running.
    let cfg = small(&dir, SHARDS).build().unwrap();
    for round in 0..3u32 {
        let wal = Wal::start(cfg.clone()).unwrap();
        let (acked, errors) = write_until_error(&wal, round, 30);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(acked.len() as u32, SHARDS * WRITERS * 30);
        wal.close().unwrap();
        let held = open_files_under(tmp.path());
        assert!(
            held.is_empty(),
            "round {round}: Wal::close left files open: {held:?}"
        );

        shardwal::spawn(cfg.clone(), move |shard| async move {
            for seq in 0..50 {
                shard
                    .append_durable(&payload(round + 10, shard.id().0, 0, seq))
                    .await
                    .unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
        let held = open_files_under(tmp.path());
        assert!(
            held.is_empty(),
            "round {round}: spawn(..).join() left files open: {held:?}"
        );
    }
}
