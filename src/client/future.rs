//! The future of one client request: queue it, then wait for the shard's reply.
//!
//! A [`ClientFuture`] goes through three states: *queueing* (its request waits for room in
//! the shard's inbox), *waiting* (the request is queued; the reply has not come) and
//! *done*. Dropping it in any state leaves no waiter anywhere: before the request was
//! queued the request is dropped and its waker taken out of the inbox's space waiters
//! (`PinnedDrop`); after, the shard serves it and its reply is discarded (the reply's
//! channel is the only link, and the shard never waits on it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::oneshot;
use pin_project::{pin_project, pinned_drop};

use super::inbox::{Inbox, Request};
use crate::error::{Error, Result};

/// The future of a client request: resolves once the shard has done what was asked. It is
/// `Send` and runtime-agnostic; dropping it is always safe (see the [`crate::client`] docs).
///
/// # Panics
/// When polled again after it resolved.
#[must_use = "a request is not sent until its future is polled"]
#[pin_project(PinnedDrop)]
pub struct ClientFuture<T> {
    /// Where the request goes; `None` when it was refused before queueing.
    inbox: Option<Arc<Inbox>>,
    /// The request until it is queued.
    request: Option<Request>,
    /// The answer for a request refused before queueing (an unknown shard, a bad batch).
    refused: Option<Error>,
    /// Its id among the inbox's space waiters, once it had to wait for room.
    space_waiter: Option<u64>,
    #[pin]
    reply: oneshot::Receiver<Result<T>>,
    done: bool,
}

impl<T> ClientFuture<T> {
    /// A request for `inbox`, with the receiving end of its reply.
    pub(crate) fn queue(
        inbox: Arc<Inbox>,
        request: Request,
        reply: oneshot::Receiver<Result<T>>,
    ) -> ClientFuture<T> {
        ClientFuture {
            inbox: Some(inbox),
            request: Some(request),
            refused: None,
            space_waiter: None,
            reply,
            done: false,
        }
    }

    /// A request refused before it was queued: resolves to `error` at its first poll.
    pub(crate) fn refuse(error: Error) -> ClientFuture<T> {
        let (_, reply) = oneshot::channel();
        ClientFuture {
            inbox: None,
            request: None,
            refused: Some(error),
            space_waiter: None,
            reply,
            done: false,
        }
    }
}

impl<T> Future for ClientFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.project();
        assert!(!*this.done, "client future polled after it completed");
        if let Some(e) = this.refused.take() {
            *this.done = true;
            return Poll::Ready(Err(e));
        }
        let inbox = this.inbox.as_ref().expect("a queued request has an inbox");
        if this.request.is_some() {
            match inbox.poll_push(this.request, this.space_waiter, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    *this.done = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => debug_assert!(this.request.is_none()),
            }
        }
        let out = match this.reply.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(r)) => r,
            // The server dropped the reply: the shard stopped (closed, or its executor
            // ended) before answering.
            Poll::Ready(Err(oneshot::Canceled)) => Err(Error::Closed {
                shard: inbox.shard(),
            }),
        };
        *this.done = true;
        Poll::Ready(out)
    }
}

#[pinned_drop]
impl<T> PinnedDrop for ClientFuture<T> {
    /// A future dropped while it waits for room takes its waker out of the inbox: a
    /// dropped request leaves no waiter behind.
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let (Some(inbox), Some(id), Some(_)) = (this.inbox, this.space_waiter, this.request) {
            inbox.cancel_space_waiter(*id);
        }
    }
}
