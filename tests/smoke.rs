mod common;
use common::*;
use shardwal::{Lsn, Shard, ShardId};

#[test]
fn append_commit_reopen_read() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        for i in 1..=3000u64 {
            let lsn = s.append(&payload(0, i)).await.unwrap();
            assert_eq!(lsn, Lsn(i));
            if i % 100 == 0 {
                s.commit(lsn).await.unwrap();
            }
        }
        let last = s.close().await.unwrap();
        assert_eq!(last, Lsn(3000));
        eprintln!("{:?}", s.metrics());
    });
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        assert_eq!(s.durable_lsn(), Lsn(3000));
        let got: Vec<_> = s.reader(Lsn(1)).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3000);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.lsn, Lsn(i as u64 + 1));
            assert_eq!(&r.payload[..], &payload(0, i as u64 + 1)[..]);
        }
        s.close().await.unwrap();
    });
}
