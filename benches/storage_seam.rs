//! What the storage seam costs the real backend: 4 KiB write + fdatasync into a pre-zeroed
//! file, straight through glommio's `DmaFile` and through `Rc<dyn StorageFile>`
//! (`DmaStorage`), in interleaved rounds. Prints medians and the ratio, plus the seam's own
//! cost per call measured without I/O (a boxed future through dynamic dispatch).
//! `cargo bench --bench storage_seam`.

use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaFile, OpenOptions};
use shardwal::storage::{DmaStorage, Storage, StorageFile};
use shardwal_cli::stats::median;

const OPS: usize = 2000;
const ROUNDS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("seam.dat");
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("executor");
    ex.run(async move {
        // Pre-zero 8 MiB so both loops overwrite really-written blocks.
        let f: DmaFile = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&path)
            .await
            .expect("open");
        let mut zeros = f.alloc_dma_buffer(1 << 20);
        zeros.as_bytes_mut().fill(0);
        let zeros = Rc::new(zeros);
        for i in 0..8u64 {
            f.write_rc_at(zeros.clone(), i << 20).await.expect("zero");
        }
        f.fdatasync().await.expect("sync");
        let seam: Rc<dyn StorageFile> = DmaStorage::new(false).open(&path).await.expect("open");
        let mut block = f.alloc_dma_buffer(4096);
        block.as_bytes_mut().fill(0x5A);
        let block = Rc::new(block);

        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS * 2 {
            // Alternate which loop goes first, so neither gets the quieter half of a round.
            let seam_first = round % 2 == 1;
            for pass in 0..2 {
                let through_seam = (pass == 0) == seam_first;
                let t = Instant::now();
                for i in 0..OPS as u64 {
                    let pos = (i % 2048) * 4096;
                    if through_seam {
                        seam.write_at(block.clone(), pos).await.expect("write");
                        seam.fdatasync().await.expect("sync");
                    } else {
                        f.write_rc_at(block.clone(), pos).await.expect("write");
                        f.fdatasync().await.expect("sync");
                    }
                }
                let us = t.elapsed().as_secs_f64() * 1e6 / OPS as f64;
                if through_seam {
                    through.push(us);
                } else {
                    direct.push(us);
                }
            }
        }
        // The seam's own cost: a call through `dyn StorageFile` to a future that is ready
        // at once, so only dispatch and the boxed future are measured.
        struct Ready;
        #[async_trait::async_trait(?Send)]
        impl StorageFile for Ready {
            async fn write_at(&self, buf: Rc<glommio::io::DmaBuffer>, _: u64) -> std::io::Result<usize> {
                Ok(buf.len())
            }
            async fn fdatasync(&self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let ready: Rc<dyn StorageFile> = Rc::new(Ready);
        let n = 1_000_000;
        let t = Instant::now();
        for i in 0..n {
            std::hint::black_box(ready.write_at(block.clone(), i).await.unwrap());
        }
        let call_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let (d, s) = (median(direct), median(through));
        let (rounds, ratio) = (ROUNDS * 2, s / d);
        println!(
            "storage_seam: 4 KiB write + fdatasync, median of {rounds} alternating rounds of {OPS}: direct DmaFile {d:.1} us, through the seam {s:.1} us (ratio {ratio:.3}); the seam alone costs {call_ns:.0} ns per call"
        );
        f.close().await.expect("close");
    });
}
