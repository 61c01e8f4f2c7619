//! The writer's side of the header: the lease, (re)building, reconciling, publishing.
//!
//! One [`HeaderOwner`] per log directory per process holds the writer lease and the
//! read-write mapping; every shard of that process opened on the directory shares it (a
//! process-wide registry finds it) and gets a [`ShardHeader`] for its own block.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::{Arc, Mutex, Weak};

use super::layout::*;
use super::map::ShmMap;
use super::protocol::{floor_then_scan, seqlock_is_odd, seqlock_write};
use super::sys::{boot_id, pid_start_ticks, try_lock_byte, unix_micros, unlock_byte};
use super::{check_header, describe_owner, payload_check};
use crate::error::{Error, Result};
use crate::lsn::{Lsn, ShardId};

/// Log directories this process owns, by canonical path.
static OWNERS: Mutex<Vec<(PathBuf, Weak<HeaderOwner>)>> = Mutex::new(Vec::new());

/// The writer lease on one log directory and the read-write mapping of its header.
pub(crate) struct HeaderOwner {
    path: PathBuf,
    /// Holds the lease (an OFD lock on [`LEASE_LOCK_BYTE`]) for as long as it is open.
    file: File,
    map: ShmMap,
    geometry: Geometry,
    /// Shards of this process that have the header attached (opened twice = two writers).
    attached: Mutex<Vec<bool>>,
    /// Serialises pin reaping between this process's shards: they share one open file
    /// description, so their slot locks do not exclude each other.
    reaping: Mutex<()>,
    /// Set by [`abandon`]: a simulated process death; this owner must not touch the header.
    abandoned: std::sync::atomic::AtomicBool,
}

impl HeaderOwner {
    /// Takes the writer lease on `dir` for this process, or joins the one this process
    /// already holds, and makes sure the header is valid for `shard_count` shards
    /// (rebuilding it if not).
    ///
    /// Errors: [`Error::LogLocked`] when another process holds the lease;
    /// [`Error::InvalidConfig`] when this process has the log open with another shard count;
    /// [`Error::Io`] when the header file cannot be created, locked, grown or mapped.
    pub fn acquire(dir: &Path, shard_count: u32) -> Result<Arc<HeaderOwner>> {
        let canon =
            std::fs::canonicalize(dir).map_err(|e| Error::io("resolving log directory", dir, e))?;
        let mut owners = OWNERS.lock().unwrap_or_else(|p| p.into_inner());
        // This process owned the directory and its last handle is gone: its lock may still
        // be held for a moment (see `lock_lease`).
        let releasing = owners
            .iter()
            .any(|(p, w)| *p == canon && w.strong_count() == 0);
        owners.retain(|(_, w)| w.strong_count() > 0);
        if let Some(owner) = owners
            .iter()
            .find(|(p, _)| *p == canon)
            .and_then(|(_, w)| w.upgrade())
        {
            if owner.geometry.shard_count != shard_count as usize {
                return Err(Error::InvalidConfig(format!(
                    "{} is open in this process with {} shards; it cannot be opened with {shard_count} at the same time",
                    canon.display(),
                    owner.geometry.shard_count
                )));
            }
            return Ok(owner);
        }
        let path = canon.join(FILE_NAME);
        // std opens with O_CLOEXEC: a child process never inherits the lease.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| Error::io("opening the shared header", &path, e))?;
        let locked = lock_lease(&file, releasing)
            .map_err(|e| Error::io("locking the shared header (writer lease)", &path, e))?;
        if !locked {
            return Err(Error::LogLocked {
                path: canon,
                owner: describe_owner(&file),
            });
        }
        let fresh = file.metadata().is_ok_and(|m| m.len() == 0);
        let geometry = Geometry::new(shard_count as usize);
        let boot = boot_id()
            .map_err(|e| Error::io("reading the boot id", "/proc/sys/kernel/random/boot_id", e))?;
        let problem = match check_header(&file, boot) {
            Ok((g, _)) if g == geometry => None,
            Ok((g, _)) => Some(format!(
                "it describes {} shards and {} pin slots, the log is opened with {} and {}",
                g.shard_count, g.pin_slot_count, geometry.shard_count, geometry.pin_slot_count
            )),
            Err(detail) => Some(detail),
        };
        let map = match &problem {
            None => ShmMap::new(&file, geometry.total_words(), true),
            Some(_) => rebuild(&file, geometry, boot),
        }
        .map_err(|e| Error::io("mapping the shared header", &path, e))?;
        if let Some(why) = &problem {
            if fresh {
                tracing::debug!(path = %path.display(), "created the shared header");
            } else {
                tracing::warn!(path = %path.display(), reason = %why, "rebuilt the shared header");
            }
        }
        let pid = std::process::id();
        map.word(W_OWNER_PID).store(pid as u64, Relaxed);
        map.word(W_OWNER_START_TICKS)
            .store(pid_start_ticks(pid).unwrap_or(0), Relaxed);
        map.word(W_OWNER_SINCE_UNIX_US)
            .store(unix_micros(), Relaxed);
        map.word(W_LEASE_COUNT).fetch_add(1, Release);
        let owner = Arc::new(HeaderOwner {
            path,
            file,
            map,
            geometry,
            attached: Mutex::new(vec![false; shard_count as usize]),
            reaping: Mutex::new(()),
            abandoned: std::sync::atomic::AtomicBool::new(false),
        });
        owners.push((canon, Arc::downgrade(&owner)));
        Ok(owner)
    }

    /// Attaches shard `shard`: from now on only the returned handle writes its block.
    ///
    /// Errors: [`Error::LogLocked`] when this process already has the shard open.
    pub fn attach(self: &Arc<Self>, shard: ShardId, publishing: bool) -> Result<ShardHeader> {
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut attached[shard.index()];
        if *slot {
            return Err(Error::LogLocked {
                path: self.path.parent().unwrap_or(&self.path).to_path_buf(),
                owner: format!(
                    "shard {shard} is already open in this process (pid {})",
                    std::process::id()
                ),
            });
        }
        *slot = true;
        Ok(ShardHeader {
            owner: self.clone(),
            shard: shard.index(),
            publishing,
            publishes: 0,
        })
    }
}

/// Makes this process behave, for `dir`, as if it had died: releases the writer lease and
/// forgets every shard attachment, so the log can be opened again in this process. Shards
/// of the abandoned owner must never run again (tests leak them on purpose).
#[cfg(feature = "testing")]
pub(crate) fn abandon(dir: &Path) {
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return;
    };
    let mut owners = OWNERS.lock().unwrap_or_else(|p| p.into_inner());
    owners.retain(|(p, w)| {
        if *p != canon {
            return true;
        }
        if let Some(owner) = w.upgrade() {
            owner.abandoned.store(true, Relaxed);
            let _ = unlock_byte(&owner.file, LEASE_LOCK_BYTE);
        }
        false
    });
}

/// How long [`lock_lease`] waits for this process's previous owner to close its file.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Takes the writer lease on `file`. When `releasing` (this process's previous owner of the
/// directory is gone, but the lock it held may outlive it for a moment: its last `Arc` can
/// be dropped on another thread, and an OFD lock lasts as long as its open file
/// description, which a child process forked by another thread shares until its `exec`
/// closes the `O_CLOEXEC` descriptor), retries every millisecond for up to
/// [`RELEASE_WAIT`] instead of reporting the log locked by "another process". Returns
/// whether the lease was taken.
fn lock_lease(file: &File, releasing: bool) -> std::io::Result<bool> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        if try_lock_byte(file, LEASE_LOCK_BYTE, true)? {
            return Ok(true);
        }
        if !releasing || std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

impl Drop for HeaderOwner {
    fn drop(&mut self) {
        if self.abandoned.load(Relaxed) {
            return;
        }
        // Diagnostics only: the lease itself ends when `file` closes, right after this.
        self.map.word(W_OWNER_PID).store(0, Relaxed);
        self.map.word(W_OWNER_START_TICKS).store(0, Relaxed);
    }
}

/// Writes a fresh header for `geometry` over whatever the file held. Readers that have the
/// old one mapped see the magic go to zero first (and refuse it) and the new magic last.
fn rebuild(file: &File, geometry: Geometry, boot: u128) -> std::io::Result<ShmMap> {
    let len = file.metadata()?.len();
    if len >= WORD_BYTES as u64 {
        ShmMap::new(file, 1, true)?.word(W_MAGIC).store(0, Release);
    }
    if len < geometry.total_bytes() {
        // Grow only: a reader may have the file mapped, and shrinking it under a mapping
        // would fault that reader's next access (SIGBUS).
        file.set_len(geometry.total_bytes())?;
    }
    let map = ShmMap::new(file, geometry.total_words(), true)?;
    map.word(W_MAGIC).store(0, Release);
    for i in 1..geometry.total_words() {
        map.word(i).store(0, Relaxed);
    }
    let immutable = [
        (W_LAYOUT_VERSION, LAYOUT_VERSION),
        (W_ENDIAN, ENDIAN_MARKER),
        (W_SHARD_COUNT, geometry.shard_count as u64),
        (W_PIN_SLOT_COUNT, geometry.pin_slot_count as u64),
        (W_TOTAL_BYTES, geometry.total_bytes()),
        (W_BOOT_ID_HI, (boot >> 64) as u64),
        (W_BOOT_ID_LO, boot as u64),
        (W_CREATED_UNIX_US, unix_micros()),
    ];
    for (i, v) in immutable {
        map.word(i).store(v, Relaxed);
    }
    map.word(W_IMMUTABLE_XXH3)
        .store(super::immutable_checksum(&map), Relaxed);
    // A generation no reader can have seen before: cuts taken from the old header are void.
    map.word(W_GENERATION).store(unix_micros(), Relaxed);
    map.word(W_MAGIC).store(MAGIC, Release);
    Ok(map)
}

/// What reconciling a shard's block with the recovered log found (logged at open).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reconciled {
    /// The header already said what is on disk.
    Matched,
    /// The header was behind the disk (a crash after an fdatasync, before its publication).
    Advanced { header_durable_lsn: Lsn },
    /// The header was ahead of the disk: acknowledged-looking positions that recovery did not
    /// find. The header generation was bumped so readers drop cuts they took.
    Rewound { header_durable_lsn: Lsn },
}

/// One shard's block of the header, written only through this handle (from the shard's own
/// executor).
pub(crate) struct ShardHeader {
    owner: Arc<HeaderOwner>,
    shard: usize,
    publishing: bool,
    publishes: u64,
}

impl ShardHeader {
    fn word(&self, field: usize) -> &std::sync::atomic::AtomicU64 {
        self.owner
            .map
            .word(self.owner.geometry.shard_word(self.shard, field))
    }

    /// Brings the block to what recovery found: `durable` (the last durable LSN), `first`
    /// (the lowest stored LSN) and the active segment's generation. Repairs a seqlock left
    /// odd by a writer that died mid-publication; rewinds (and bumps the header generation)
    /// when the header claimed more than the disk holds.
    pub fn reconcile(&mut self, durable: Lsn, first: Lsn, active_generation: u64) {
        let odd = seqlock_is_odd(self.word(S_SEQ));
        let header_durable = Lsn(self.word(S_DURABLE_LSN).load(Relaxed));
        self.publishes = self.word(S_PUBLISHES).load(Relaxed);
        let outcome = if header_durable > durable {
            self.owner.map.word(W_GENERATION).fetch_add(1, Release);
            Reconciled::Rewound {
                header_durable_lsn: header_durable,
            }
        } else if header_durable < durable {
            Reconciled::Advanced {
                header_durable_lsn: header_durable,
            }
        } else {
            Reconciled::Matched
        };
        if odd || outcome != Reconciled::Matched {
            tracing::info!(shard = self.shard, ?outcome, seqlock_was_odd = odd, durable_lsn = %durable,
                "reconciled the shared header with the recovered log");
        }
        // What is on disk is the truth: below `first` nothing is stored, so the floor can go
        // there even if a previous owner had raised it higher.
        self.word(S_FLOOR).store(first.0, Relaxed);
        self.word(S_STATE).store(SHARD_OPEN, Relaxed);
        self.write(durable, first, active_generation);
    }

    /// Publishes the shard's position after a group commit (or a truncation). A no-op when
    /// publishing was disabled in the configuration.
    #[inline]
    pub fn publish(&mut self, durable: Lsn, first: Lsn, active_generation: u64) {
        if self.publishing {
            self.write(durable, first, active_generation);
        }
    }

    #[inline]
    fn write(&mut self, durable: Lsn, first: Lsn, active_generation: u64) {
        self.publishes += 1;
        let g = &self.owner.geometry;
        let m = &self.owner.map;
        let w = |f| m.word(g.shard_word(self.shard, f));
        let values = [
            durable.0,
            first.0,
            self.publishes,
            active_generation,
            payload_check(durable.0, first.0, self.publishes, active_generation),
        ];
        seqlock_write(w(S_SEQ), SHARD_PAYLOAD.map(w), values);
    }

    /// Marks the shard failed (after an I/O error) for readers of the header.
    pub fn set_failed(&self) {
        self.word(S_STATE).store(SHARD_FAILED, Relaxed);
    }

    /// The truncation half of the pin handshake: raises the shard's floor to `before`,
    /// reaps the pins of dead readers, and returns the LSN below which segments may really
    /// go: `before`, or the lowest LSN a live reader pinned in this shard if that is lower.
    pub fn retention_floor(&self, before: Lsn) -> Lsn {
        let o = &*self.owner;
        let g = &o.geometry;
        {
            let _reaping = o.reaping.lock().unwrap_or_else(|p| p.into_inner());
            for slot in 0..g.pin_slot_count {
                let state = o.map.word(g.pin_word(slot, P_STATE));
                if state.load(Relaxed) == PIN_FREE {
                    continue;
                }
                // A live reader holds its slot's lock for as long as its pin exists; getting
                // the lock means the reader is gone (exited, or killed). While we hold it no
                // reader can claim the slot, so clearing it races with nobody.
                if let Ok(true) = try_lock_byte(&o.file, PIN_LOCK_BASE + slot as u64, true) {
                    let pid = o.map.word(g.pin_word(slot, P_PID)).load(Relaxed);
                    state.store(PIN_FREE, Relaxed);
                    let _ = unlock_byte(&o.file, PIN_LOCK_BASE + slot as u64);
                    tracing::info!(
                        shard = self.shard,
                        slot,
                        pid,
                        "reaped the pin of a reader that is gone"
                    );
                }
            }
        }
        let pins = (0..g.pin_slot_count).map(|slot| {
            (
                o.map.word(g.pin_word(slot, P_STATE)),
                o.map.word(g.pin_word(slot, P_LSNS + self.shard)),
            )
        });
        let lowest_pin = floor_then_scan(self.word(S_FLOOR), before.0, PIN_HELD, pins);
        Lsn(before.0.min(lowest_pin))
    }
}

impl Drop for ShardHeader {
    fn drop(&mut self) {
        if self.owner.abandoned.load(Relaxed) {
            return;
        }
        if self.word(S_STATE).load(Relaxed) == SHARD_OPEN {
            self.word(S_STATE).store(SHARD_CLOSED, Relaxed);
        }
        let mut attached = self
            .owner
            .attached
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        attached[self.shard] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_this_process_is_releasing_is_waited_for_and_a_held_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("lease");
        std::fs::write(&path, [0u8; 8]).unwrap();
        let open = || File::options().read(true).write(true).open(&path).unwrap();
        let holder = open();
        assert!(try_lock_byte(&holder, LEASE_LOCK_BYTE, true).unwrap());
        let next = open();
        // Held by another open file description and not being released: refused at once.
        assert!(!lock_lease(&next, false).unwrap());
        // Being released: the holder's file closes 20 ms later, and the lease is taken.
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(holder);
        });
        assert!(lock_lease(&next, true).unwrap());
        closer.join().unwrap();
        // Held for longer than the wait: refused after it.
        let third = open();
        assert!(!lock_lease(&third, true).unwrap());
    }
}
