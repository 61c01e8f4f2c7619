//! Group commit: many commits share one write and one fdatasync, and the
//! `Shard::expect_appends` hint gathers late writers into the batch a commit is waiting on.

mod common;
use common::*;

use std::time::Duration;

use shardwal::{Shard, ShardId};

#[test]
fn concurrent_committers_share_flushes() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        let m0 = s.metrics();
        durable_writers(&s, 32, 20).await;
        let m = s.metrics();
        let records = m.appends - m0.appends;
        let syncs = m.fdatasyncs - m0.fdatasyncs;
        assert_eq!(records, 640);
        // 32 writers that each wait for their own record: every fdatasync after the first
        // covers the whole group (the flusher lets woken writers append before sealing).
        assert!(
            syncs <= 40,
            "{syncs} fdatasyncs for {records} records: no group commit"
        );
        // Every commit waited (nothing was durable before it), so each one was measured.
        let h = s.commit_latency_us();
        assert_eq!(h.len(), 640, "one latency sample per waiting commit");
        assert!(h.min() >= 1 && h.max() >= h.value_at_quantile(0.5));
        s.close().await.unwrap();
    });
}

#[test]
fn a_held_commit_takes_the_announced_records_along() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        s.append_durable(b"warm up").await.unwrap();
        let m0 = s.metrics();
        // Announce 3 records; the first one's commit must wait for the other two (which
        // arrive from another task later) instead of going out alone.
        s.expect_appends(3, Duration::from_secs(30));
        let first = s.append(b"one").await.unwrap();
        let committer = {
            let s = s.clone();
            glommio::spawn_local(async move { s.commit(first).await })
        };
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert!(
            s.durable_lsn() < first,
            "the commit went out before the announced records"
        );
        s.append(b"two").await.unwrap();
        let third = s.append(b"three").await.unwrap();
        committer.await.unwrap();
        s.commit(third).await.unwrap();
        let m = s.metrics();
        assert_eq!(m.flushes - m0.flushes, 1, "all three records in one batch");
        assert_eq!(m.fdatasyncs - m0.fdatasyncs, 1);
        s.close().await.unwrap();
    });
}

#[test]
fn a_hold_expires_and_never_blocks_a_commit() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        // Announced records that never come: the commit still resolves once the window
        // passes, and the shard keeps working.
        s.expect_appends(1000, Duration::from_millis(2));
        let lsn = s.append_durable(b"alone").await.unwrap();
        assert!(s.durable_lsn() >= lsn);
        s.append_durable(b"after").await.unwrap();
        // Closing ends a hold at once.
        s.expect_appends(1000, Duration::from_secs(3600));
        s.append(b"pending").await.unwrap();
        let last = s.close().await.unwrap();
        assert_eq!(last, s.last_appended_lsn());
    });
}

#[test]
fn a_hold_lasts_while_records_keep_arriving() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(d.path(), 1).build().unwrap();
    run(&cfg, || async {
        let s = Shard::open(&cfg, ShardId(0)).await.unwrap();
        s.append_durable(b"warm up").await.unwrap();
        let m0 = s.metrics();
        // 9 records announced, arriving every 100 ms: 800 ms in all, longer than one gap
        // (500 ms) but each arrival well within one. The hold must stretch over all of them.
        s.expect_appends(9, Duration::from_millis(500));
        let first = s.append(b"0").await.unwrap();
        let committer = {
            let s = s.clone();
            glommio::spawn_local(async move { s.commit(first).await })
        };
        let mut last = first;
        for i in 1..9u8 {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            last = s.append(&[b'0' + i]).await.unwrap();
        }
        committer.await.unwrap();
        s.commit(last).await.unwrap();
        let m = s.metrics();
        assert_eq!(m.flushes - m0.flushes, 1, "the 9 records went out together");
        s.close().await.unwrap();
    });
}
