//! [`ReadStream`]: the durable records of a live shard, as a `Stream` of batches.
//!
//! Opening asks the shard's server for a [`LogReader`] (one request: the server copies its
//! segment list and durable LSN, nothing more), then the stream reads the segment files
//! itself, on the thread that polls it, in chunks of [`crate::format::CHUNK_BYTES`]: the
//! shard's executor does no read I/O for it. A read pin in the shard's inbox keeps
//! truncation through the client from removing a segment the stream still needs; it moves
//! up as batches are handed out and is released when the stream is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project::pin_project;

use super::future::ClientFuture;
use super::inbox::Inbox;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::reader::{LogReader, Record};

/// Payload bytes a [`ReadStream`] batch holds at most, unless one record alone is larger.
pub const READ_BATCH_BYTES: usize = 1 << 20;

/// A read pin in a shard's inbox, released on drop.
struct ReadPin {
    inbox: Arc<Inbox>,
    id: u64,
}

impl Drop for ReadPin {
    fn drop(&mut self) {
        self.inbox.unpin(self.id);
    }
}

#[pin_project(project = StateProj)]
enum State {
    /// Waiting for the server's reader.
    Opening(#[pin] ClientFuture<LogReader>),
    /// Reading segment files.
    Reading(Box<LogReader>),
    /// Ended (the bound was reached, or an error was handed out).
    Done,
}

/// The durable records of one shard from an LSN, in batches of up to [`READ_BATCH_BYTES`]
/// of payload (see [`super::Client::read`]). Ends at the shard's durable LSN at the time
/// the stream's first poll reached the shard. Memory: one batch plus one read chunk, not a
/// segment. `Send`; its read pin is released when it ends (or fails) or is dropped.
///
/// Each poll that reads does blocking, buffered file reads of about one batch on the
/// polling thread (page-cache reads take microseconds; a cold disk may take milliseconds):
/// from a latency-sensitive async runtime, poll it from a blocking task.
///
/// Items: `Ok(records)` (never empty), or once `Err` and then the end. Errors:
/// [`Error::NoSuchShard`], [`Error::Truncated`], [`Error::Closed`],
/// [`Error::ShardFailed`], and what [`LogReader`] yields ([`Error::Corruption`] for a
/// damaged durable record).
#[must_use = "streams do nothing unless polled"]
#[pin_project]
pub struct ReadStream {
    pin: Option<ReadPin>,
    /// An error to hand out after the records read before it.
    failed: Option<Error>,
    #[pin]
    state: State,
}

impl ReadStream {
    /// A stream over `inbox`'s shard from `from`: pins `from` first, so that no truncation
    /// queued after this call can remove it.
    pub(crate) fn open(inbox: Arc<Inbox>, from: Lsn, open: ClientFuture<LogReader>) -> Self {
        let id = inbox.pin(from);
        ReadStream {
            pin: Some(ReadPin { inbox, id }),
            failed: None,
            state: State::Opening(open),
        }
    }

    /// A stream that yields `error` and ends.
    pub(crate) fn refuse(error: Error) -> Self {
        ReadStream {
            pin: None,
            failed: None,
            state: State::Opening(ClientFuture::refuse(error)),
        }
    }
}

/// Reads up to [`READ_BATCH_BYTES`] of payload from `reader`: the records, and the error
/// that stopped it, if any.
fn read_batch(reader: &mut LogReader) -> (Vec<Record>, Option<Error>) {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while bytes < READ_BATCH_BYTES {
        match reader.next() {
            Some(Ok(r)) => {
                bytes += r.payload.len();
                batch.push(r);
            }
            Some(Err(e)) => return (batch, Some(e)),
            None => break,
        }
    }
    (batch, None)
}

impl Stream for ReadStream {
    type Item = Result<Vec<Record>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if let Some(e) = this.failed.take() {
            this.state.set(State::Done);
            *this.pin = None; // ended: nothing more to keep
            return Poll::Ready(Some(Err(e)));
        }
        if let StateProj::Opening(open) = this.state.as_mut().project() {
            match open.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(reader)) => this.state.set(State::Reading(Box::new(reader))),
                Poll::Ready(Err(e)) => {
                    this.state.set(State::Done);
                    *this.pin = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        let StateProj::Reading(reader) = this.state.as_mut().project() else {
            return Poll::Ready(None);
        };
        let (batch, error) = read_batch(reader);
        if let (Some(pin), Some(last)) = (this.pin.as_ref(), batch.last()) {
            pin.inbox.move_pin(pin.id, last.lsn.next());
        }
        *this.failed = error;
        if batch.is_empty() {
            // The end, or an error with nothing read before it.
            this.state.set(State::Done);
            *this.pin = None;
            return Poll::Ready(this.failed.take().map(Err));
        }
        Poll::Ready(Some(Ok(batch)))
    }
}
