//! The few Linux facts the header needs: OFD byte-range locks, the boot id, a process's
//! start time.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Tries to take an OFD lock (`F_OFD_SETLK`) on the single byte at `offset` of `file`:
/// exclusive (`F_WRLCK`) or shared. `Ok(false)` when another open file description holds a
/// conflicting lock. OFD locks belong to the open file description, not to the process: they
/// are released when its last descriptor closes, also when the process is killed, and they
/// conflict between two descriptions opened by the same process.
pub(crate) fn try_lock_byte(file: &File, offset: u64, exclusive: bool) -> std::io::Result<bool> {
    let ty = if exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    };
    match ofd_setlk(file, offset, ty as libc::c_short) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases this description's lock on the byte at `offset` (a no-op when it holds none).
pub(crate) fn unlock_byte(file: &File, offset: u64) -> std::io::Result<()> {
    ofd_setlk(file, offset, libc::F_UNLCK as libc::c_short)
}

fn ofd_setlk(file: &File, offset: u64, ty: libc::c_short) -> std::io::Result<()> {
    let lock = libc::flock {
        l_type: ty,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: offset as libc::off_t,
        l_len: 1,
        l_pid: 0, // must be 0 for OFD locks
    };
    // SAFETY: `fcntl(F_OFD_SETLK)` reads one `struct flock` through the pointer, which
    // points to a live, initialised local; the descriptor is owned by `file` and open for
    // the duration of the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`) as 128 bits. A header written under
/// another boot id describes a machine state that no longer exists.
pub(crate) fn boot_id() -> std::io::Result<u128> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    u128::from_str_radix(&hex, 16).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("boot_id {text:?}: {e}"),
        )
    })
}

/// The start time of process `pid`, in clock ticks after boot (`/proc/<pid>/stat` field 22),
/// or `None` when no such process exists. With the pid it names one process for this boot.
pub(crate) fn pid_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 on; field 22 is the 20th of them.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start_ticks` still runs (a reused pid with
/// another start time does not count).
pub(crate) fn process_alive(pid: u32, start_ticks: u64) -> bool {
    pid != 0 && pid_start_ticks(pid) == Some(start_ticks)
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_and_boot_id_are_readable() {
        let me = std::process::id();
        let ticks = pid_start_ticks(me).expect("own /proc/<pid>/stat");
        assert!(process_alive(me, ticks));
        assert!(!process_alive(me, ticks + 1));
        assert_ne!(boot_id().unwrap(), 0);
    }

    #[test]
    fn ofd_locks_conflict_between_descriptions_of_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let a = File::options().read(true).write(true).open(&path).unwrap();
        let b = File::options().read(true).write(true).open(&path).unwrap();
        assert!(try_lock_byte(&a, 1 << 40, true).unwrap());
        assert!(
            try_lock_byte(&a, 1 << 40, true).unwrap(),
            "same description: no conflict"
        );
        assert!(!try_lock_byte(&b, 1 << 40, true).unwrap());
        assert!(!try_lock_byte(&b, 1 << 40, false).unwrap());
        assert!(
            try_lock_byte(&b, (1 << 40) + 1, true).unwrap(),
            "other byte is free"
        );
        drop(a);
        assert!(
            try_lock_byte(&b, 1 << 40, true).unwrap(),
            "closing releases the lock"
        );
        unlock_byte(&b, 1 << 40).unwrap();
    }
}
