//! The `Send + Sync` client ([`shardwal::Wal`], [`shardwal::Client`]) driven from tokio,
//! plain threads and other glommio executors: every acknowledged record is found after
//! reopening, at its LSN and byte for byte; cancellation leaves no ghost and loses no
//! acknowledgement; close answers what it accepted and refuses the rest; a full inbox makes
//! callers wait instead of failing.
mod common;
use common::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::executor::block_on;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardwal::{Client, Cut, Error, Lsn, ShardId, Wal};

/// What one acknowledged append returned: its shard, its LSN and the payload sent.
type Acked = (ShardId, Lsn, Vec<u8>);

/// A payload naming its writer and sequence number, 1 ..= ~900 bytes.
fn rec(writer: usize, seq: usize) -> Vec<u8> {
    let tag = format!("<w{writer} n{seq}>");
    let len = tag.len() + (writer * 131 + seq * 17) % 880;
    tag.bytes().cycle().take(len).collect()
}

/// The key a record is routed by.
fn key(writer: usize, seq: usize) -> String {
    format!("writer-{writer}/record-{seq}")
}

/// Every record of every shard of the closed log in `dir`, checking that each shard's LSNs
/// run 1, 2, 3, ... without a gap.
fn read_log(dir: &Path, shards: u32) -> Vec<Vec<(Lsn, Vec<u8>)>> {
    (0..shards)
        .map(|s| {
            let recs = read_all(dir, s);
            for (i, (lsn, _)) in recs.iter().enumerate() {
                assert_eq!(
                    *lsn,
                    Lsn(i as u64 + 1),
                    "shard {s}: LSNs must be contiguous"
                );
            }
            recs
        })
        .collect()
}

/// Checks that the closed log in `dir` holds exactly `acked` (every acknowledged record at
/// its LSN, byte for byte, and nothing else) and that `cut` is the last LSN of each shard.
fn assert_log_is_exactly(dir: &Path, shards: u32, acked: &[Acked], cut: &Cut) {
    assert_eq!(cut.shard_count(), shards as usize);
    let log = read_log(dir, shards);
    let mut per_shard: Vec<BTreeMap<Lsn, &[u8]>> = vec![BTreeMap::new(); shards as usize];
    for (s, lsn, p) in acked {
        let prev = per_shard[s.index()].insert(*lsn, p);
        assert!(prev.is_none(), "shard {s}: LSN {lsn} acknowledged twice");
    }
    for (s, recs) in log.iter().enumerate() {
        let want = &per_shard[s];
        assert_eq!(
            recs.len(),
            want.len(),
            "shard {s}: records in the log vs acknowledged"
        );
        for (lsn, p) in recs {
            assert_eq!(
                Some(&p.as_slice()),
                want.get(lsn),
                "shard {s}: payload at LSN {lsn}"
            );
        }
        let last = recs.last().map_or(Lsn::ZERO, |(l, _)| *l);
        assert_eq!(
            cut.get(ShardId(s as u32)),
            Some(last),
            "shard {s}: the final cut is the last LSN"
        );
    }
}

/// One writer: `per_writer` durable records, each routed by its key.
async fn one_writer(c: Client, w: usize, per_writer: usize) -> Vec<Acked> {
    let mut out = Vec::with_capacity(per_writer);
    let mut last: HashMap<ShardId, Lsn> = HashMap::new();
    for i in 0..per_writer {
        let shard = c.shard_for_key(key(w, i).as_bytes());
        let p = rec(w, i);
        let lsn = c.append_durable(shard, p.clone()).await.unwrap();
        // One writer's records on one shard get increasing LSNs.
        let prev = last.insert(shard, lsn).unwrap_or(Lsn::ZERO);
        assert!(lsn > prev, "writer {w}: LSN {lsn} after {prev}");
        out.push((shard, lsn, p));
    }
    out
}

#[test]
fn tokio_tasks_append_durable_and_every_ack_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let shards = 3;
    let wal = Wal::start(small(d.path(), shards).build().unwrap()).unwrap();
    let client = wal.client();
    let (writers, per_writer) = (200, 12);
    let acked: Vec<Acked> = tokio_rt().block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| tokio::spawn(one_writer(client.clone(), w, per_writer)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(acked.len(), writers * per_writer);
    let used: HashSet<ShardId> = acked.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(used.len(), shards as usize, "keys spread over every shard");
    let cut = wal.close().unwrap();
    assert_eq!(client.durable_cut(), cut, "close publishes the final cut");
    assert_log_is_exactly(d.path(), shards, &acked, &cut);
}

#[test]
fn plain_threads_with_block_on_and_every_ack_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let shards = 2;
    let wal = Wal::start(small(d.path(), shards).build().unwrap()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let c = wal.client();
            std::thread::spawn(move || {
                // One record at a time, then a burst of concurrent ones.
                let mut acked = block_on(one_writer(c.clone(), w, 25));
                let burst = (25..45).map(|i| {
                    let (c, p) = (c.clone(), rec(w, i));
                    let shard = c.shard_for_key(key(w, i).as_bytes());
                    async move { (shard, c.append_durable(shard, p.clone()).await.unwrap(), p) }
                });
                acked.extend(block_on(futures::future::join_all(burst)));
                acked
            })
        })
        .collect();
    let acked: Vec<Acked> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 8 * 45);
    let cut = wal.close().unwrap();
    assert_log_is_exactly(d.path(), shards, &acked, &cut);
}

#[test]
fn another_glommio_executor_awaits_client_futures() {
    let d = tempfile::tempdir().unwrap();
    let shards = 2;
    let wal = Wal::start(small(d.path(), shards).build().unwrap()).unwrap();
    let client = wal.client();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap();
    let (acked, cut) = ex.run(async move {
        let tasks: Vec<_> = (0..6)
            .map(|w| glommio::spawn_local(one_writer(client.clone(), w, 30)))
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await);
        }
        // Close from inside the executor too: `Client::close` is an ordinary future.
        let cut = client.close().await.unwrap();
        (acked, cut)
    });
    drop(wal);
    assert_eq!(acked.len(), 6 * 30);
    assert_log_is_exactly(d.path(), shards, &acked, &cut);
}

#[test]
fn wait_for_and_wait_for_cut_and_bad_requests() {
    let d = tempfile::tempdir().unwrap();
    let shards = 3;
    let cfg = small(d.path(), shards).build().unwrap();
    let max = cfg.max_record_bytes();
    let wal = Wal::start(cfg).unwrap();
    let c = wal.client();
    let mut acked: Vec<Acked> = Vec::new();
    block_on(async {
        assert_eq!(c.shard_count(), shards);
        assert_eq!(c.durable_cut(), Cut::new(vec![Lsn::ZERO; 3]), "empty log");

        // Plain appends on shards 0 and 1 (shard 2 stays empty: its cut entry is 0).
        let mut last = vec![Lsn::ZERO; 3];
        for i in 0..40 {
            let s = ShardId(i as u32 % 2);
            let p = rec(s.index(), i);
            let lsn = c.append(s, p.clone()).await.unwrap();
            assert_eq!(lsn, last[s.index()].next(), "appends get the next LSN");
            last[s.index()] = lsn;
            acked.push((s, lsn, p));
        }
        c.wait_for(ShardId(0), Lsn(3)).await.unwrap();
        c.wait_for(ShardId(0), last[0]).await.unwrap();
        c.wait_for(ShardId(2), Lsn::ZERO).await.unwrap();
        let cut = Cut::new(last.clone());
        c.wait_for_cut(&cut).await.unwrap();
        c.wait_for_cut(&cut).await.unwrap(); // already durable: at once
        c.wait_for_cut(&Cut::new(vec![Lsn(1)])).await.unwrap(); // a cut over fewer shards

        // `durable_cut` is published after the completer's group commits, so it may lag a
        // `wait_for` answered from the shard's own watermark. A durable append on every
        // shard is a later commit: after it the published cut covers `cut`.
        for s in 0..shards {
            let p = format!("fence {s}").into_bytes();
            let lsn = c.append_durable(ShardId(s), p.clone()).await.unwrap();
            acked.push((ShardId(s), lsn, p));
            last[s as usize] = lsn;
        }
        let published = c.durable_cut();
        for s in 0..shards {
            let id = ShardId(s);
            assert!(published.get(id).unwrap() >= cut.get(id).unwrap());
            assert!(published.get(id).unwrap() >= last[s as usize]);
        }

        // Never appended.
        match c.wait_for(ShardId(1), Lsn(last[1].0 + 1000)).await {
            Err(Error::LsnNotAppended {
                shard,
                requested,
                last_appended,
            }) => {
                assert_eq!(shard, ShardId(1));
                assert_eq!(requested, Lsn(last[1].0 + 1000));
                assert_eq!(last_appended, last[1]);
            }
            other => panic!("expected LsnNotAppended, got {other:?}"),
        }
        let beyond = Cut::new(vec![last[0], Lsn(last[1].0 + 1), Lsn::ZERO]);
        assert!(matches!(
            c.wait_for_cut(&beyond).await,
            Err(Error::LsnNotAppended { .. })
        ));

        // Shards that do not exist: their own error, naming the shard and the count.
        assert!(matches!(
            c.wait_for(ShardId(3), Lsn(1)).await,
            Err(Error::NoSuchShard {
                shard: ShardId(3),
                shard_count: 3
            })
        ));
        assert!(matches!(
            c.append(ShardId(7), &b"x"[..]).await,
            Err(Error::NoSuchShard { .. })
        ));
        assert!(matches!(
            c.append_durable(ShardId(u32::MAX), &b"x"[..]).await,
            Err(Error::NoSuchShard { .. })
        ));
        assert!(matches!(
            c.wait_for_cut(&Cut::new(vec![Lsn(1); 4])).await,
            Err(Error::InvalidConfig(_))
        ));

        // Bad records cost nothing.
        assert!(matches!(
            c.append(ShardId(0), Vec::new()).await,
            Err(Error::EmptyRecord)
        ));
        assert!(matches!(
            c.append_durable(ShardId(2), Bytes::new()).await,
            Err(Error::EmptyRecord)
        ));
        match c.append_durable(ShardId(1), vec![9u8; max + 1]).await {
            Err(Error::RecordTooLarge {
                len_bytes,
                max_record_bytes,
            }) => {
                assert_eq!(len_bytes, max + 1);
                assert_eq!(max_record_bytes, max);
            }
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        // The largest allowed record is fine, and LSNs carry on without a gap.
        let p = vec![b'm'; max];
        let lsn = c.append_durable(ShardId(1), p.clone()).await.unwrap();
        assert_eq!(lsn, last[1].next());
        acked.push((ShardId(1), lsn, p));
    });
    let cut = wal.close().unwrap();
    assert_eq!(c.durable_cut(), cut);
    assert_log_is_exactly(d.path(), shards, &acked, &cut);
}

/// How one randomly cancelled request ended.
enum Outcome {
    /// The future resolved: the LSN it returned.
    Acked(Lsn),
    /// The future was dropped after being polled: the record may or may not be in the log.
    Dropped,
}

#[test]
fn cancelled_requests_leave_no_ghosts_and_lose_no_acks() {
    let d = tempfile::tempdir().unwrap();
    let shards = 2;
    let wal = Wal::start(small(d.path(), shards).build().unwrap()).unwrap();
    let c = wal.client();
    let rt = tokio_rt();
    let mut rng = StdRng::seed_from_u64(0x5eed_ca9c);
    // Every payload submitted, with the shard it was sent to.
    let mut submitted: HashMap<Vec<u8>, ShardId> = HashMap::new();
    let mut never_polled: Vec<Vec<u8>> = Vec::new();
    let mut outcomes: Vec<(ShardId, Vec<u8>, Outcome)> = Vec::new();

    rt.block_on(async {
        // Phase 1: many concurrent requests, each cancelled at a random point (or not).
        let mut tasks = Vec::new();
        for i in 0..3000 {
            let shard = ShardId(rng.random_range(0..shards));
            let p = rec(9, i);
            submitted.insert(p.clone(), shard);
            let durable = rng.random_bool(0.7);
            let fut = if durable {
                c.append_durable(shard, p.clone())
            } else {
                c.append(shard, p.clone())
            };
            let polls = rng.random_range(1..6);
            let micros = rng.random_range(0..400);
            match rng.random_range(0..4) {
                0 => {
                    // Dropped before its first poll: never sent.
                    drop(fut);
                    never_polled.push(p);
                }
                1 => tasks.push(tokio::spawn(async move {
                    let mut fut = pin!(fut);
                    for _ in 0..polls {
                        if let Poll::Ready(r) = futures::poll!(fut.as_mut()) {
                            return (shard, p, Outcome::Acked(r.unwrap()));
                        }
                        tokio::task::yield_now().await;
                    }
                    (shard, p, Outcome::Dropped)
                })),
                2 => tasks.push(tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_micros(micros), fut).await {
                        Ok(r) => (shard, p, Outcome::Acked(r.unwrap())),
                        Err(_) => (shard, p, Outcome::Dropped),
                    }
                })),
                _ => tasks.push(tokio::spawn(async move {
                    (shard, p, Outcome::Acked(fut.await.unwrap()))
                })),
            }
        }
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }

        // Phase 2: more requests than an inbox holds, polled once and all dropped: the
        // ones past the capacity were waiting for room when dropped.
        let mut burst = Vec::new();
        for i in 0..shardwal::client::INBOX_CAPACITY + 1000 {
            let p = rec(10, i);
            submitted.insert(p.clone(), ShardId(0));
            burst.push(Box::pin(c.append_durable(ShardId(0), p)));
        }
        for f in burst.iter_mut() {
            // Queued, or waiting for room; either way it is dropped unanswered below.
            let _ = futures::poll!(f.as_mut());
        }
        drop(burst);

        // The shards keep working after all that.
        for s in 0..shards {
            for i in 0..20 {
                let p = rec(11 + s as usize, i);
                submitted.insert(p.clone(), ShardId(s));
                let lsn = c.append_durable(ShardId(s), p.clone()).await.unwrap();
                outcomes.push((ShardId(s), p, Outcome::Acked(lsn)));
            }
        }
    });
    let cut = wal.close().unwrap();
    drop(rt);

    let log = read_log(d.path(), shards);
    let mut found: HashMap<&[u8], (ShardId, Lsn)> = HashMap::new();
    for (s, recs) in log.iter().enumerate() {
        let s = ShardId(s as u32);
        assert_eq!(cut.get(s), Some(recs.last().map_or(Lsn::ZERO, |r| r.0)));
        for (lsn, p) in recs {
            assert_eq!(
                submitted.get(p.as_slice()),
                Some(&s),
                "shard {s} LSN {lsn}: a record nobody submitted to this shard"
            );
            let twice = found.insert(p, (s, *lsn));
            assert!(twice.is_none(), "payload stored twice (LSN {lsn})");
        }
    }
    let mut acks = 0;
    for (s, p, outcome) in &outcomes {
        if let Outcome::Acked(lsn) = outcome {
            acks += 1;
            assert_eq!(
                found.get(p.as_slice()),
                Some(&(*s, *lsn)),
                "an acknowledged record is missing or elsewhere"
            );
        }
    }
    for p in &never_polled {
        assert!(
            !found.contains_key(p.as_slice()),
            "a request dropped before its first poll was appended"
        );
    }
    assert!(acks >= 2 * 20 && !never_polled.is_empty());
}

#[test]
fn close_answers_what_it_accepted_and_refuses_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let shards = 2;
    let wal = Wal::start(small(d.path(), shards).build().unwrap()).unwrap();
    let c = wal.client();
    let rt = tokio_rt();
    let mut acked: Vec<Acked> = Vec::new();
    let mut refused: Vec<Vec<u8>> = Vec::new();
    let cut = rt.block_on(async {
        // Acknowledged before close.
        acked.extend(one_writer(c.clone(), 0, 40).await);

        // Queued before close: polled once (which queues them), not awaited yet.
        let mut queued = Vec::new();
        for i in 0..1000 {
            let s = ShardId(i as u32 % shards);
            let p = rec(1, i);
            let mut f = Box::pin(if i % 3 == 0 {
                c.append(s, p.clone())
            } else {
                c.append_durable(s, p.clone())
            });
            let early = match futures::poll!(f.as_mut()) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            };
            queued.push((s, p, f, early));
        }

        // Racing with close: tokio tasks that may or may not get in before it.
        let racing: Vec<_> = (0..1000)
            .map(|i| {
                let c = c.clone();
                let s = ShardId(i as u32 % shards);
                let p = rec(2, i);
                tokio::spawn(async move { (s, p.clone(), c.append_durable(s, p).await) })
            })
            .collect();
        tokio::task::yield_now().await;

        let cut = c.close().await.unwrap();

        // Everything queued before close is answered, and answered Ok.
        for (s, p, f, early) in queued {
            let r = match early {
                Some(r) => r,
                None => f.await,
            };
            let lsn = r.expect("a request queued before close must succeed");
            assert!(lsn <= cut.get(s).unwrap());
            acked.push((s, lsn, p));
        }
        for t in racing {
            let (s, p, r) = t.await.unwrap();
            match r {
                Ok(lsn) => acked.push((s, lsn, p)),
                Err(Error::Closed { shard }) => {
                    assert_eq!(shard, s);
                    refused.push(p);
                }
                Err(e) => panic!("racing request: {e}"),
            }
        }

        // Everything after close is refused.
        assert!(matches!(
            c.append(ShardId(0), &b"late"[..]).await,
            Err(Error::Closed { .. })
        ));
        assert!(matches!(
            c.append_durable(ShardId(1), &b"late"[..]).await,
            Err(Error::Closed { .. })
        ));
        assert!(matches!(
            c.wait_for(ShardId(0), Lsn(1)).await,
            Err(Error::Closed { .. })
        ));
        assert!(matches!(
            c.wait_for_cut(&Cut::new(vec![Lsn(1), Lsn(1)])).await,
            Err(Error::Closed { .. })
        ));
        assert!(matches!(c.close().await, Err(Error::Closed { .. })));
        assert_eq!(c.durable_cut(), cut);
        cut
    });
    drop(wal);
    assert_eq!(acked.len() + refused.len(), 40 + 1000 + 1000);
    assert_log_is_exactly(d.path(), shards, &acked, &cut);
    let log = read_log(d.path(), shards);
    let stored: HashSet<&[u8]> = log.iter().flatten().map(|(_, p)| p.as_slice()).collect();
    for p in &refused {
        assert!(
            !stored.contains(p.as_slice()),
            "a refused request was stored"
        );
    }
}

#[test]
fn dropping_a_wal_without_close_keeps_every_acknowledged_record() {
    let d = tempfile::tempdir().unwrap();
    let shards = 2;
    let cfg = small(d.path(), shards).build().unwrap();
    let wal = Wal::start(cfg.clone()).unwrap();
    let c = wal.client();
    let acked = block_on(futures::future::join_all(
        (0..8).map(|w| one_writer(c.clone(), w, 20)),
    ));
    let acked: Vec<Acked> = acked.into_iter().flatten().collect();
    // Some appends that were never made durable: they may or may not survive.
    let maybe: Vec<Vec<u8>> = (0..50).map(|i| rec(100, i)).collect();
    for p in &maybe {
        block_on(c.append(ShardId(0), p.clone())).unwrap();
    }
    drop(wal);
    assert!(matches!(
        block_on(c.append(ShardId(0), &b"after drop"[..])),
        Err(Error::Closed { .. })
    ));

    // Reopen the same directory right away and keep writing.
    let wal = Wal::start(cfg).unwrap();
    let c2 = wal.client();
    let mut more = Vec::new();
    for s in 0..shards {
        let p = format!("after reopen {s}").into_bytes();
        let lsn = block_on(c2.append_durable(ShardId(s), p.clone())).unwrap();
        more.push((ShardId(s), lsn, p));
    }
    let cut = wal.close().unwrap();

    let log = read_log(d.path(), shards);
    for (s, lsn, p) in acked.iter().chain(&more) {
        assert_eq!(
            log[s.index()].get(lsn.0 as usize - 1).map(|r| &r.1),
            Some(p),
            "shard {s}: acknowledged LSN {lsn}"
        );
    }
    // Whatever else is there is one of the unacknowledged appends, in order.
    let acked_lsns: HashSet<(ShardId, Lsn)> = acked
        .iter()
        .chain(&more)
        .map(|(s, l, _)| (*s, *l))
        .collect();
    let extra: Vec<&Vec<u8>> = log[0]
        .iter()
        .filter(|(l, _)| !acked_lsns.contains(&(ShardId(0), *l)))
        .map(|(_, p)| p)
        .collect();
    assert!(extra.len() <= maybe.len());
    assert_eq!(extra, maybe.iter().take(extra.len()).collect::<Vec<_>>());
    assert_eq!(
        log[1].len(),
        acked.iter().filter(|a| a.0 == ShardId(1)).count() + 1
    );

    for (s, recs) in log.iter().enumerate() {
        assert_eq!(cut.get(ShardId(s as u32)), recs.last().map(|r| r.0));
    }
}

#[test]
fn more_requests_than_an_inbox_holds_all_complete() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::start(small(d.path(), 1).build().unwrap()).unwrap();
    let c = wal.client();
    let n = 10_000;
    assert!(n > shardwal::client::INBOX_CAPACITY);
    let acked: Vec<Acked> = tokio_rt().block_on(async {
        // 10,000 tasks at once.
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let p = format!("bp-task-{i}").into_bytes();
                    let lsn = c.append(ShardId(0), p.clone()).await.unwrap();
                    (ShardId(0), lsn, p)
                })
            })
            .collect();
        // And 10,000 futures polled together by one task: its first poll fills the inbox.
        let c2 = c.clone();
        let joined = tokio::spawn(async move {
            let futs = (0..n).map(|i| {
                let p = format!("bp-join-{i}").into_bytes();
                let f = c2.append(ShardId(0), p.clone());
                async move { (ShardId(0), f.await.unwrap(), p) }
            });
            futures::future::join_all(futs).await
        });
        let mut all = Vec::with_capacity(2 * n);
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all.extend(joined.await.unwrap());
        all
    });
    let lsns: HashSet<Lsn> = acked.iter().map(|a| a.1).collect();
    assert_eq!(lsns.len(), 2 * n, "every request got its own LSN");
    assert_eq!(
        lsns.iter().max(),
        Some(&Lsn(2 * n as u64)),
        "and no LSN was skipped"
    );
    let cut = wal.close().unwrap();
    assert_log_is_exactly(d.path(), 1, &acked, &cut);
}
