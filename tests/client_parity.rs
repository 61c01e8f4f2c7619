//! What a shard can do, a `Client` can do from any thread: batches with contiguous LSNs,
//! sync, truncation (pins honoured), and reading the durable records of a live log. Bad
//! input gets its own error and costs nothing.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::rc::Rc;

use bytes::Bytes;
use futures::StreamExt;
use shardwal::client::READ_BATCH_BYTES;
use shardwal::storage::{FaultPlan, SimStorage};
use shardwal::{Client, Error, Lsn, Shard, ShardId, Wal};

/// A payload naming its writer and sequence number, 1 ..= ~600 bytes.
fn rec(writer: usize, seq: usize) -> Bytes {
    let tag = format!("<w{writer} n{seq}>");
    let len = tag.len() + (writer * 131 + seq * 17) % 580;
    Bytes::from(tag.bytes().cycle().take(len).collect::<Vec<u8>>())
}

/// Every durable record of `shard` through the client's read stream, checking that each
/// batch is non-empty and bounded.
async fn read_through(c: &Client, shard: ShardId, from: Lsn) -> Result<Vec<(Lsn, Bytes)>, Error> {
    let mut out = Vec::new();
    let mut stream = c.read(shard, from);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        assert!(!batch.is_empty(), "a batch is never empty");
        let bytes: usize = batch.iter().map(|r| r.payload.len()).sum();
        let last = batch.last().unwrap().payload.len();
        assert!(
            bytes - last < READ_BATCH_BYTES,
            "a batch stops at its byte bound"
        );
        out.extend(batch.into_iter().map(|r| (r.lsn, r.payload)));
    }
    Ok(out)
}

/// Writers on tokio send batches (1..=64 records, durable or not) and single records to
/// the same shards at once. Every batch's LSNs are contiguous and hold its records in
/// order; after close the log holds exactly what was acknowledged.
#[test]
fn concurrent_batches_get_contiguous_lsns_and_every_ack_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::start(small(d.path(), 2).build().unwrap()).unwrap();
    let c = wal.client();
    let rt = tokio_rt();
    let acked: Vec<(ShardId, Lsn, Bytes)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..6usize {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for round in 0..30usize {
                    let shard = ShardId((w + round) as u32 % 2);
                    if w % 3 == 2 {
                        let p = rec(w, round);
                        let lsn = c.append_durable(shard, p.clone()).await.unwrap();
                        acked.push((shard, lsn, p));
                        continue;
                    }
                    let n = 1 + (w * 7 + round * 13) % 64;
                    let batch: Vec<Bytes> = (0..n).map(|i| rec(w, round * 100 + i)).collect();
                    let lsns: RangeInclusive<Lsn> = if round % 2 == 0 {
                        c.append_batch_durable(shard, batch.clone()).await.unwrap()
                    } else {
                        c.append_batch(shard, batch.clone()).await.unwrap()
                    };
                    assert_eq!(lsns.end().0 - lsns.start().0 + 1, n as u64, "contiguous");
                    for (i, p) in batch.into_iter().enumerate() {
                        acked.push((shard, Lsn(lsns.start().0 + i as u64), p));
                    }
                }
                acked
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let cut = wal.close().unwrap();
    for s in 0..2u32 {
        let want: BTreeMap<Lsn, Bytes> = acked
            .iter()
            .filter(|(sh, _, _)| sh.0 == s)
            .map(|(_, l, p)| (*l, p.clone()))
            .collect();
        let got: BTreeMap<Lsn, Bytes> = read_all(d.path(), s)
            .into_iter()
            .map(|(l, p)| (l, Bytes::from(p)))
            .collect();
        assert_eq!(
            got, want,
            "shard {s}: the log is exactly what was acknowledged"
        );
        assert_eq!(cut.get(ShardId(s)), want.keys().last().copied());
    }
}

/// Sync makes non-durable appends durable and returns the durable LSN; a read stream
/// returns exactly the durable records in bounded batches; truncation through the client
/// keeps what an open stream still needs, removes it once the stream is dropped, and
/// refuses to go past the durable LSN.
#[test]
fn sync_read_and_truncate_through_the_client() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::start(small(d.path(), 1).build().unwrap()).unwrap();
    let c = wal.client();
    let s = ShardId(0);
    futures::executor::block_on(async {
        let mut sent = Vec::new();
        for b in 0..100usize {
            let batch: Vec<Bytes> = (0..50).map(|i| rec(b, i)).collect();
            let lsns = c.append_batch(s, batch.clone()).await.unwrap();
            sent.extend((lsns.start().0..=lsns.end().0).zip(batch));
        }
        let last = Lsn(sent.len() as u64);
        assert_eq!(c.sync(s).await.unwrap(), last);
        assert_eq!(c.durable_cut().get(s), Some(last));
        let read = read_through(&c, s, Lsn(1)).await.unwrap();
        let want: Vec<(Lsn, Bytes)> = sent.iter().map(|(l, p)| (Lsn(*l), p.clone())).collect();
        assert_eq!(
            read, want,
            "the stream returns every durable record in order"
        );
        let tail = read_through(&c, s, Lsn(2900)).await.unwrap();
        assert_eq!(tail, want[2899..].to_vec(), "a stream from a later LSN");

        // Past the durable LSN: refused, nothing removed.
        let segments = seg_files(d.path(), 0).len();
        assert!(segments > 4, "{segments} segments");
        match c.truncate_before(s, Lsn(last.0 + 2)).await {
            Err(Error::TruncateBeyondDurable { durable_lsn, .. }) => assert_eq!(durable_lsn, last),
            other => panic!("expected TruncateBeyondDurable, got {other:?}"),
        }
        assert_eq!(seg_files(d.path(), 0).len(), segments);

        // An open stream that has read its first batch pins the rest.
        let mut stream = c.read(s, Lsn(1));
        let first = stream.next().await.unwrap().unwrap();
        let pinned = first.last().unwrap().lsn.next();
        let removed = c.truncate_before(s, last).await.unwrap();
        let rest: Vec<(Lsn, Bytes)> = stream
            .flat_map(|b| futures::stream::iter(b.unwrap()))
            .map(|r| (r.lsn, r.payload))
            .collect()
            .await;
        assert_eq!(
            rest,
            want[pinned.0 as usize - 1..].to_vec(),
            "the pinned rest is readable"
        );
        // The stream is gone: its segments go now.
        let removed_after = c.truncate_before(s, last).await.unwrap();
        assert!(
            removed_after > 0,
            "the pin held back segments ({removed} went before)"
        );
        match read_through(&c, s, Lsn(1)).await {
            Err(Error::Truncated {
                first_available, ..
            }) => assert!(first_available > pinned),
            other => panic!("expected Truncated, got {other:?}"),
        }
    });
    wal.close().unwrap();
}

/// Each bad request gets its own error, and the log afterwards holds exactly the good
/// records: nothing of a refused request was appended, nothing else was lost.
#[test]
fn bad_input_gets_its_own_error_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::start(small(d.path(), 2).build().unwrap()).unwrap();
    let c = wal.client();
    let s = ShardId(1);
    let max_record = 16 << 10;
    futures::executor::block_on(async {
        let good = c
            .append_batch_durable(s, vec![rec(0, 0), rec(0, 1)])
            .await
            .unwrap();
        assert_eq!(good, Lsn(1)..=Lsn(2));
        let x = || Bytes::from_static(b"x");
        let e = c.append_batch(ShardId(2), vec![x()]).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::NoSuchShard {
                    shard: ShardId(2),
                    shard_count: 2
                }
            ),
            "{e}"
        );
        assert!(matches!(
            c.append_batch(s, vec![]).await,
            Err(Error::EmptyBatch)
        ));
        assert!(matches!(
            c.append_batch(s, vec![x(), Bytes::new()]).await,
            Err(Error::EmptyRecord)
        ));
        assert!(matches!(
            c.append_batch_durable(s, vec![x(), Bytes::from(vec![7u8; max_record + 1])])
                .await,
            Err(Error::RecordTooLarge { .. })
        ));
        let huge = vec![Bytes::from(vec![7u8; max_record]); c.max_batch_bytes() / max_record + 1];
        match c.append_batch(s, huge).await {
            Err(Error::BatchTooLarge {
                frame_bytes,
                max_batch_bytes,
            }) => assert!(frame_bytes > max_batch_bytes),
            other => panic!("expected BatchTooLarge, got {other:?}"),
        }
        assert!(matches!(
            c.sync(ShardId(9)).await,
            Err(Error::NoSuchShard { .. })
        ));
        assert!(matches!(
            c.truncate_before(ShardId(9), Lsn(1)).await,
            Err(Error::NoSuchShard { .. })
        ));
        let last = c.append(s, rec(0, 2)).await.unwrap();
        assert_eq!(last, Lsn(3), "refused requests took no LSN");
    });
    wal.close().unwrap();
    let want: Vec<(Lsn, Vec<u8>)> = (0..3)
        .map(|i| (Lsn(i + 1), rec(0, i as usize).to_vec()))
        .collect();
    assert_eq!(read_all(d.path(), 1), want);
    assert!(read_all(d.path(), 0).is_empty());
}

/// On the simulator: a batch larger than one flush buffer is appended whole and committed,
/// a second one is appended and not committed, then the power is cut. The committed batch
/// survives whole at its LSNs; of the uncommitted one at most a suffix of the log is lost.
/// (That no other append lands inside a batch is shown step by step in `tests/poll_steps.rs`.)
#[test]
fn a_committed_batch_survives_a_crash_whole() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).flush_buffer_count(2).build().unwrap();
    let sim = SimStorage::new(7, FaultPlan::new(Vec::new()));
    let (batch, batch_lsns) = run(&cfg, || {
        let (cfg, sim) = (cfg.clone(), sim.clone());
        async move {
            let shard = Shard::open_with_storage(&cfg, ShardId(0), Rc::new(sim.clone()))
                .await
                .unwrap();
            shard.append(b"before").await.unwrap();
            // Frames of ~10 KiB: the batch spans more than one 64 KiB buffer.
            let batch: Vec<Bytes> = (0..11)
                .map(|i| Bytes::from(vec![b'a' + i as u8; 10 << 10]))
                .collect();
            let lsns = shard.append_batch(&batch).await.unwrap();
            assert_eq!(lsns, Lsn(2)..=Lsn(12));
            shard.commit(*lsns.end()).await.unwrap();
            // Not committed: may be lost with the power.
            let late = shard.append_batch(&[&b"late"[..], &b"later"[..]]).await;
            assert_eq!(late.unwrap(), Lsn(13)..=Lsn(14));
            sim.crash_now();
            shardwal::shm::simulate_process_death(cfg.dir());
            (batch, lsns)
        }
    });
    let report = sim.materialize_crash().unwrap();
    let log = read_all(d.path(), 0);
    assert!(
        log.len() >= 12,
        "everything up to the commit survived ({report:?})"
    );
    assert_eq!(log[0], (Lsn(1), b"before".to_vec()));
    for (i, p) in batch.iter().enumerate() {
        let l = Lsn(batch_lsns.start().0 + i as u64);
        assert_eq!(log[l.0 as usize - 1], (l, p.to_vec()), "batch record {i}");
    }
    let late: [&[u8]; 2] = [b"late", b"later"];
    for (l, p) in &log[12..] {
        assert_eq!(
            p.as_slice(),
            late[l.0 as usize - 13],
            "uncommitted record {l}"
        );
    }
    for (i, (l, _)) in log.iter().enumerate() {
        assert_eq!(*l, Lsn(i as u64 + 1), "the log is a gapless prefix");
    }
}
