//! Starting and closing a `Wal` from inside a tokio runtime (`Wal::start_async`,
//! `Wal::close_async`), and `Client::wait_for` resolving to the durable LSN.
mod common;
use common::*;

use shardwal::{Error, Lsn, ShardId, Wal};

const SHARDS: u32 = 2;

/// On a single-threaded runtime every call below runs on the runtime's only thread: the
/// log opens, serves, closes, and is released for the next writer when `close_async`
/// resolves.
#[tokio::test(flavor = "current_thread")]
async fn start_and_close_inside_a_current_thread_runtime() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), SHARDS).build().unwrap();
    let wal = Wal::start_async(cfg.clone()).await.unwrap();
    let client = wal.client();
    for s in 0..SHARDS {
        for i in 1..=20u64 {
            let lsn = client
                .append_durable(ShardId(s), payload(s, i))
                .await
                .unwrap();
            assert_eq!(lsn, Lsn(i));
        }
    }
    // A second writer of the same directory is refused while the first one runs, with the
    // typed error, also through the async start.
    match Wal::start_async(cfg.clone()).await {
        Err(Error::LogLocked { .. }) => {}
        Err(e) => panic!("expected LogLocked, got {e:?}"),
        Ok(_) => panic!("two writers of one directory"),
    }
    let cut = wal.close_async().await.unwrap();
    assert_eq!(cut.as_slice(), &[Lsn(20), Lsn(20)]);
    // The close waited for every executor: the lease is free at once.
    let wal = Wal::start_async(cfg).await.unwrap();
    let lsn = wal
        .client()
        .append_durable(ShardId(1), payload(1, 21))
        .await
        .unwrap();
    assert_eq!(lsn, Lsn(21), "the reopened log continues");
    assert_eq!(
        wal.close_async().await.unwrap().as_slice(),
        &[Lsn(20), Lsn(21)]
    );
}

/// The futures are `Send`: a multi-threaded runtime can spawn them as tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_close_as_spawned_tasks() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), SHARDS).build().unwrap();
    let wal = tokio::spawn(Wal::start_async(cfg)).await.unwrap().unwrap();
    let lsn = wal
        .client()
        .append_durable(ShardId(0), payload(0, 1))
        .await
        .unwrap();
    assert_eq!(lsn, Lsn(1));
    let cut = tokio::spawn(wal.close_async()).await.unwrap().unwrap();
    assert_eq!(cut.as_slice(), &[Lsn(1), Lsn(0)]);
}

/// `wait_for(lsn)` resolves to the shard's durable LSN: at least `lsn`, never beyond what
/// was appended, and exactly the last LSN once everything appended was waited for.
#[tokio::test(flavor = "current_thread")]
async fn wait_for_returns_the_durable_lsn() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::start_async(small(d.path(), 1).build().unwrap())
        .await
        .unwrap();
    let client = wal.client();
    let mut last = Lsn::ZERO;
    for i in 1..=100u64 {
        last = client.append(ShardId(0), payload(0, i)).await.unwrap();
    }
    assert_eq!(last, Lsn(100));
    let durable = client.wait_for(ShardId(0), Lsn(10)).await.unwrap();
    assert!(durable >= Lsn(10) && durable <= last, "{durable}");
    assert_eq!(client.wait_for(ShardId(0), last).await.unwrap(), last);
    // An LSN that is durable already answers with the durable LSN, not the one asked for.
    assert_eq!(client.wait_for(ShardId(0), Lsn(1)).await.unwrap(), last);
    match client.wait_for(ShardId(0), Lsn(101)).await {
        Err(Error::LsnNotAppended {
            requested,
            last_appended,
            ..
        }) => {
            assert_eq!((requested, last_appended), (Lsn(101), last));
        }
        other => panic!("expected LsnNotAppended, got {other:?}"),
    }
    wal.close_async().await.unwrap();
}
