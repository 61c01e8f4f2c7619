//! How a shard's executor waits for its segment writes: asleep (the default) or spinning
//! on glommio's poll ring ([`crate::WalConfigBuilder::poll_write_completions`]).
//!
//! glommio 0.9.0 decides once per thread and device whether `DmaFile` I/O goes to the
//! poll ring, by probing with an O_DIRECT, IOPOLL read at offset 0 of the first `DmaFile`
//! opened on that thread. The probe is all the control there is:
//! - on a non-empty file, the read reaches a device without poll queues and fails with
//!   `EOPNOTSUPP`: the main ring, where the executor sleeps until the kernel wakes it;
//! - on an empty file, the read "succeeds" without touching the device: the poll ring, on
//!   which the executor spins while an I/O is in flight. Writes work there: ext4's
//!   O_DIRECT writes (traced here; XFS's use the same iomap code, not measured) finish
//!   their completion in a kernel worker, so the kernel drops the polled flag and the
//!   interrupt completes them; glommio reaps them by polling. Polled reads are refused
//!   (`EOPNOTSUPP`) on such a device (upstream #670).
//!
//! Waiting asleep costs every write the wake-up of an idle CPU. On the measured 2-vCPU VM
//! a 4 KiB write completed in the kernel worker 85-90 us after submission and the sleeping
//! executor ran 40-50 us later (an inter-processor interrupt, then the halted vCPU's exit
//! from idle), while an executor spinning on the poll ring saw it at once.

use std::path::Path;

use crate::error::{Error, Result};
use crate::lsn::ShardId;
use crate::segment::BLOCK_BYTES;

/// Makes the first `DmaFile` probe of this thread choose the ring for `poll` (see the
/// module docs). Without polling, opens a 4 KiB file of ours so that the probe reads real
/// data; with it, opens an empty file, then checks with one 4 KiB write that the kernel
/// accepts polled writes, so that a refusal shows at open and never in a commit.
///
/// Errors: [`Error::Io`] when a probe file cannot be written or opened, or the test write
/// fails (with polling, `EOPNOTSUPP` means this kernel or file system refuses polled
/// writes: open with `poll_write_completions(false)`).
pub(super) async fn choose_ring(dir: &Path, shard: ShardId, poll: bool) -> Result<()> {
    if poll {
        open_empty_probe(dir, shard).await?;
    }
    let path = dir.join("iopoll.probe");
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BLOCK_BYTES as u64);
    if !ok {
        // Not synced: the probe only needs the bytes to be readable now (an O_DIRECT read
        // writes dirty cached pages back first), and a file a crash leaves empty or short
        // is written again here. (An fsync cost a journal commit on every fresh open.)
        std::fs::write(&path, [0xA5u8; BLOCK_BYTES])
            .map_err(|e| Error::io("writing the iopoll probe file", &path, e))?;
    }
    // Read access for the probe, write access for the test write.
    let f = glommio::io::OpenOptions::new()
        .read(true)
        .write(poll)
        .dma_open(&path)
        .await
        .map_err(|e| Error::io("opening the iopoll probe file", &path, e.into()))?;
    if poll {
        let written = test_write(&f).await;
        let _ = f.close().await;
        return written.map_err(|e| Error::io("a polled write (poll_write_completions)", &path, e));
    }
    let _ = f.close().await;
    Ok(())
}

/// Opens (and removes) an empty file, so that the thread's probe picks the poll ring. The
/// file is the shard's own: shards open side by side in one directory.
async fn open_empty_probe(dir: &Path, shard: ShardId) -> Result<()> {
    let path = dir.join(format!("iopoll.empty.{}", shard.0));
    std::fs::File::create(&path)
        .map_err(|e| Error::io("creating the empty iopoll probe file", &path, e))?;
    let opened = glommio::io::DmaFile::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let f =
        opened.map_err(|e| Error::io("opening the empty iopoll probe file", &path, e.into()))?;
    let _ = f.close().await;
    Ok(())
}

/// Overwrites the probe file's first block with its own bytes through `f`.
async fn test_write(f: &glommio::io::DmaFile) -> std::io::Result<()> {
    let mut buf = f.alloc_dma_buffer(BLOCK_BYTES);
    buf.as_bytes_mut().fill(0xA5);
    let n = f
        .write_at(buf, 0)
        .await
        .map_err(crate::storage::glommio_io)?;
    match n {
        BLOCK_BYTES => Ok(()),
        n => Err(std::io::Error::other(format!(
            "short test write: {n} of {BLOCK_BYTES} bytes"
        ))),
    }
}
