//! Unit tests of the client's caller side (no shard behind the inboxes).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::*;

fn limits() -> BatchLimits {
    BatchLimits {
        max_record_bytes: 100,
        max_batch_bytes: 1000,
    }
}

fn one_shard() -> (Client, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::new(ShardId(0)));
    (Client::new(Arc::from(vec![inbox.clone()]), limits()), inbox)
}

fn assert_send_sync<T: Send + Sync + Clone>() {}

#[test]
fn client_is_send_sync_clone_and_futures_and_streams_are_send() {
    assert_send_sync::<Client>();
    fn is_send<T: Send>(_: &T) {}
    let (c, _) = one_shard();
    is_send(&c.append(ShardId(0), Bytes::from_static(b"x")));
    is_send(&c.append_batch(ShardId(0), vec![Bytes::from_static(b"x")]));
    is_send(&c.read(ShardId(0), Lsn(1)));
    is_send(&c.wait_for_cut(&Cut::new(vec![Lsn(1)])));
}

#[test]
fn routing_is_stable_and_spreads_keys() {
    // Fixed values: changing them breaks every deployed key-to-shard mapping.
    assert_eq!(shard_for_key(b"", 7), ShardId((xxh3_64(b"") % 7) as u32));
    let a = shard_for_key(b"user:42", 4);
    assert_eq!(a, shard_for_key(b"user:42", 4));
    let mut counts = [0u32; 4];
    for i in 0..4000 {
        counts[shard_for_key(format!("key-{i}").as_bytes(), 4).index()] += 1;
    }
    assert!(
        counts.iter().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn bad_requests_are_refused_before_they_are_queued() {
    let (c, inbox) = one_shard();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut poll = |f: ClientFuture<RangeInclusive<Lsn>>| match pin!(f).poll(&mut cx) {
        Poll::Ready(Err(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let x = || Bytes::from_static(b"x");
    assert!(matches!(
        poll(c.append_batch(ShardId(3), vec![x()])),
        Error::NoSuchShard {
            shard: ShardId(3),
            shard_count: 1
        }
    ));
    assert!(matches!(
        poll(c.append_batch(ShardId(0), vec![])),
        Error::EmptyBatch
    ));
    assert!(matches!(
        poll(c.append_batch(ShardId(0), vec![x(), Bytes::new()])),
        Error::EmptyRecord
    ));
    assert!(matches!(
        poll(c.append_batch(ShardId(0), vec![Bytes::from(vec![1u8; 101])])),
        Error::RecordTooLarge { len_bytes: 101, .. }
    ));
    assert!(matches!(
        poll(c.append_batch(ShardId(0), vec![Bytes::from(vec![1u8; 100]); 8])),
        Error::BatchTooLarge { .. }
    ));
    let mut one = pin!(c.append(ShardId(0), Bytes::new()));
    assert!(matches!(
        one.as_mut().poll(&mut cx),
        Poll::Ready(Err(Error::EmptyRecord))
    ));
    let mut sync = pin!(c.sync(ShardId(1)));
    assert!(matches!(
        sync.as_mut().poll(&mut cx),
        Poll::Ready(Err(Error::NoSuchShard { .. }))
    ));
    let mut read = pin!(c.read(ShardId(9), Lsn(1)));
    assert!(matches!(
        read.as_mut().poll_next(&mut cx),
        Poll::Ready(Some(Err(Error::NoSuchShard { .. })))
    ));
    assert!(matches!(
        read.as_mut().poll_next(&mut cx),
        Poll::Ready(None)
    ));
    assert_eq!(inbox.queued(), 0, "nothing reached the inbox");
    assert_eq!(inbox.lowest_pin(), None, "a refused read pins nothing");
}

#[test]
fn a_batch_is_one_inbox_slot() {
    let (c, inbox) = one_shard();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let records = vec![Bytes::from_static(b"abc"); 30];
    let mut f = pin!(c.append_batch(ShardId(0), records));
    assert!(f.as_mut().poll(&mut cx).is_pending());
    assert_eq!(inbox.queued(), 1);
}

#[test]
fn a_read_stream_pins_until_dropped() {
    let (c, inbox) = one_shard();
    let s = c.read(ShardId(0), Lsn(7));
    assert_eq!(inbox.lowest_pin(), Some(Lsn(7)));
    drop(s);
    assert_eq!(inbox.lowest_pin(), None);
}

#[test]
fn a_full_inbox_makes_callers_wait_and_drain_frees_them() {
    let (c, inbox) = one_shard();
    let mut futs: Vec<_> = (0..INBOX_CAPACITY + 1)
        .map(|_| Box::pin(c.append(ShardId(0), Bytes::from_static(b"x"))))
        .collect();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for f in futs.iter_mut() {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(inbox.queued(), INBOX_CAPACITY);
    assert_eq!(inbox.space_waiters(), 1, "the last one waits for room");
    let mut drained = std::collections::VecDeque::new();
    assert_eq!(inbox.poll_drain(&mut drained, &mut cx), Poll::Ready(true));
    assert_eq!(drained.len(), INBOX_CAPACITY);
    assert!(futs.last_mut().unwrap().as_mut().poll(&mut cx).is_pending());
    assert_eq!(inbox.queued(), 1, "the waiting request got in");
    // Dropping queued futures does not touch the queue.
    drop(futs);
    assert_eq!(inbox.queued(), 1);
    inbox.close();
    let mut late = Box::pin(c.append(ShardId(0), Bytes::from_static(b"y")));
    assert!(matches!(
        late.as_mut().poll(&mut cx),
        Poll::Ready(Err(Error::Closed { .. }))
    ));
}

/// Dropping a pending client future takes its waker out of wherever it waited: the
/// inbox's space waiters (full inbox) or the reply channel (queued request). The mock
/// task's waker count shows no reference is left anywhere but its own.
#[test]
fn dropping_a_pending_client_future_leaves_no_waiter_behind() {
    use tokio_test::task;
    let (c, inbox) = one_shard();
    let x = || Bytes::from_static(b"x");

    // Queued, waiting for its reply.
    let mut mock = task::spawn(());
    let mut queued = Box::pin(c.append_durable(ShardId(0), x()));
    mock.enter(|cx, _| assert!(queued.as_mut().poll(cx).is_pending()));
    assert_eq!(inbox.queued(), 1);
    // The mock task holds one reference itself.
    assert_eq!(mock.waker_ref_count(), 2, "the reply channel holds it");
    drop(queued);
    assert_eq!(mock.waker_ref_count(), 1, "nothing holds it after the drop");

    // Waiting for room in a full inbox.
    let mut fill: Vec<_> = (1..INBOX_CAPACITY)
        .map(|_| Box::pin(c.append(ShardId(0), x())))
        .collect();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for f in fill.iter_mut() {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(inbox.queued(), INBOX_CAPACITY);
    let mut mock = task::spawn(());
    let mut waiting = Box::pin(c.append(ShardId(0), x()));
    for _ in 0..3 {
        // Polling again refreshes its one entry instead of adding more.
        mock.enter(|cx, _| assert!(waiting.as_mut().poll(cx).is_pending()));
    }
    assert_eq!(inbox.space_waiters(), 1);
    assert_eq!(mock.waker_ref_count(), 2, "the inbox holds the waker");
    drop(waiting);
    assert_eq!(inbox.space_waiters(), 0);
    assert_eq!(mock.waker_ref_count(), 1, "nothing holds it after the drop");
    assert_eq!(inbox.queued(), INBOX_CAPACITY, "the queue is untouched");
}
