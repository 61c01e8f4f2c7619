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
fn a_shard_that_cannot_open_answers_closed_instead_of_hanging() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 2).build().unwrap();
    // A foreign file where shard 1's first segment would be: shard 1 refuses to open.
    let sdir = shardwal::segment::shard_dir(d.path(), ShardId(1));
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(shardwal::segment::segment_path(&sdir, 1), vec![b'x'; 8192]).unwrap();
    let wal = Wal::start(cfg).unwrap();
    let client = wal.client();
    let (ok, refused) = futures::executor::block_on(async {
        let ok = client.append_durable(ShardId(0), b"fine".to_vec()).await;
        let refused = client.append_durable(ShardId(1), b"nowhere".to_vec()).await;
        (ok, refused)
    });
    assert_eq!(ok.unwrap(), Lsn(1));
    assert!(
        matches!(refused, Err(shardwal::Error::Closed { shard: ShardId(1) })),
        "{refused:?}"
    );
    match wal.close() {
        Err(shardwal::Error::ForeignFile { path }) => assert!(path.starts_with(&sdir)),
        other => panic!("expected the open error, got {other:?}"),
    }
    // Shard 0 closed cleanly all the same.
    let n = shardwal::LogReader::open(d.path(), ShardId(0), Lsn(1))
        .unwrap()
        .count();
    assert_eq!(n, 1);
}
