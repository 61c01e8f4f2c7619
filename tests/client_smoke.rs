mod common;
use common::*;

use shardwal::{Lsn, ShardId, Wal};

#[test]
fn tokio_tasks_append_durable_through_the_client() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 2).build().unwrap();
    let wal = Wal::start(cfg).unwrap();
    let client = wal.client();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let acked: Vec<(ShardId, Lsn)> = rt.block_on(async {
        let tasks: Vec<_> = (0..64u32)
            .map(|t| {
                let c = client.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..20u64 {
                        let shard = ShardId(t % 2);
                        let lsn = c.append_durable(shard, payload(t, i)).await.unwrap();
                        out.push((shard, lsn));
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(acked.len(), 64 * 20);
    let cut = wal.close().unwrap();
    assert_eq!(cut.as_slice(), &[Lsn(640), Lsn(640)]);
    for s in 0..2 {
        let n = shardwal::LogReader::open(d.path(), ShardId(s), Lsn(1))
            .unwrap()
            .count();
        assert_eq!(n, 640);
    }
}

#[test]
fn a_shard_that_cannot_open_fails_the_start_and_the_others_close_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 2).build().unwrap();
    // A foreign file where shard 1's first segment would be: shard 1 refuses to open.
    let sdir = shardwal::format::shard_dir(d.path(), ShardId(1));
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(shardwal::format::segment_path(&sdir, 1), vec![b'x'; 8192]).unwrap();
    match Wal::start(cfg.clone()) {
        Err(shardwal::Error::ForeignFile { path }) => assert!(path.starts_with(&sdir)),
        Err(e) => panic!("expected the open error, got {e:?}"),
        Ok(_) => panic!("started a log whose shard 1 cannot open"),
    }
    // Shard 0 opened and closed cleanly, and nothing holds the log any more: with the
    // foreign file gone the same directory starts at once.
    std::fs::remove_file(shardwal::format::segment_path(&sdir, 1)).unwrap();
    let wal = Wal::start(cfg).unwrap();
    let lsn = futures::executor::block_on(wal.client().append_durable(ShardId(1), b"x".to_vec()));
    assert_eq!(lsn.unwrap(), Lsn(1));
    wal.close().unwrap();
    let n = shardwal::LogReader::open(d.path(), ShardId(1), Lsn(1))
        .unwrap()
        .count();
    assert_eq!(n, 1);
}
