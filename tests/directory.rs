//! The shard count of a closed log, learned from its directory alone
//! (`shardwal::format::shard_count`), is enough to read every shard back.
mod common;
use common::*;

use futures::executor::block_on;
use shardwal::format::{list_shards, shard_count};
use shardwal::{Error, LogReader, Lsn, ShardId, Wal};

#[test]
fn a_closed_logs_shard_count_comes_from_its_directory() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("wal");
    // Nothing there yet: not a log.
    assert!(matches!(shard_count(&dir), Err(Error::BadDirectory { .. })));
    std::fs::create_dir(&dir).unwrap();
    assert!(matches!(shard_count(&dir), Err(Error::BadDirectory { .. })));

    let wal = Wal::start(small(&dir, 3).build().unwrap()).unwrap();
    let client = wal.client();
    block_on(async {
        for s in 0..3 {
            for i in 1..=(s as u64 + 1) * 10 {
                client
                    .append_durable(ShardId(s), payload(s, i))
                    .await
                    .unwrap();
            }
        }
    });
    wal.close().unwrap();
    // Names that only look like shard directories do not count.
    std::fs::write(dir.join("shard-0007"), b"a file, not a directory").unwrap();
    std::fs::create_dir(dir.join("shard-00009")).unwrap();
    std::fs::create_dir(dir.join("shard-x")).unwrap();

    assert_eq!(
        list_shards(&dir).unwrap(),
        vec![ShardId(0), ShardId(1), ShardId(2)]
    );
    let n = shard_count(&dir).unwrap();
    assert_eq!(n, 3);
    for s in 0..n {
        let records: Vec<_> = LogReader::open(&dir, ShardId(s), Lsn(1))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(records.len() as u64, (s as u64 + 1) * 10, "shard {s}");
        for r in records {
            assert_eq!(r.payload.as_ref(), payload(s, r.lsn.0).as_slice());
        }
    }
}
