//! [`GlommioRuntime`]: openraft's [`AsyncRuntime`] on a glommio executor, so that a Raft
//! group runs on the same core, and the same executor, as the shard that stores its log.
//!
//! What glommio provides directly: tasks (`spawn_local`, detached so that dropping a join
//! handle does not cancel the task, as openraft expects), timers, and the executor itself.
//! What it does not, and how this runtime fills the gap:
//! - **Channels and the mutex** are `tokio::sync`'s, through `openraft-rt-tokio`'s types.
//!   They need no tokio runtime: their wakers are plain `Waker`s, which glommio tasks
//!   provide.
//! - **Timeouts**: glommio's own `timeout` wants futures that return `glommio::Result`, so
//!   [`GlommioTimeout`] races the future against a [`Timer`] itself.
//! - **Join errors**: a glommio join handle yields `None` when its task was cancelled or
//!   panicked (it cannot tell which); that becomes [`JoinError`].
//!
//! The runtime is single-threaded (openraft's `single-threaded` feature): tasks are `!Send`
//! and stay on the executor that spawned them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use openraft_rt::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::{TokioMpsc, TokioMutex, TokioOneshot, TokioWatch};

/// openraft's runtime on glommio. Inside an executor that is already running (a shard's),
/// only the associated functions are used; [`AsyncRuntime::new`] and
/// [`AsyncRuntime::block_on`] make and run an executor of their own on the calling thread
/// (tests, tools).
pub struct GlommioRuntime {
    executor: glommio::LocalExecutor,
}

impl std::fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlommioRuntime").finish_non_exhaustive()
    }
}

/// A spawned task ended without a result: it was cancelled, or it panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinError;

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the glommio task ended without a result (cancelled or panicked)")
    }
}

impl std::error::Error for JoinError {}

/// The future of a spawned task's result.
pub struct GlommioJoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for GlommioJoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.ok_or(JoinError))
    }
}

/// A deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// `future`, or [`Elapsed`] once `timer` fires first. The future is polled first, so a
/// future that is ready at its deadline wins.
#[pin_project::pin_project]
pub struct GlommioTimeout<F> {
    #[pin]
    future: F,
    #[pin]
    timer: Timer,
}

/// A sleep: a glommio [`Timer`] whose output (the instant it fired) is dropped.
#[pin_project::pin_project]
pub struct GlommioSleep {
    #[pin]
    timer: Timer,
}

impl Future for GlommioSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().timer.poll(cx).map(|_| ())
    }
}

impl<F: Future> Future for GlommioTimeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        this.timer.poll(cx).map(|_| Err(Elapsed))
    }
}

/// A timer for the time left until `deadline` (zero when it has passed).
fn timer_until(deadline: Instant) -> Timer {
    Timer::new(deadline.saturating_duration_since(Instant::now()))
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = GlommioJoinHandle<T>;
    type Sleep = GlommioSleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = GlommioTimeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        // Detached: openraft drops some join handles and expects the task to go on.
        GlommioJoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        GlommioSleep {
            timer: Timer::new(duration),
        }
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        GlommioSleep {
            timer: timer_until(deadline),
        }
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        GlommioTimeout {
            future,
            timer: Timer::new(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        GlommioTimeout {
            future,
            timer: timer_until(deadline),
        }
    }

    fn is_panic(_join_error: &Self::JoinError) -> bool {
        // glommio does not say whether a task panicked or was cancelled; a panic in a task
        // of the default queue unwinds through the executor instead of reaching the handle.
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::rng()
    }

    type Mpsc = TokioMpsc;
    type Watch = TokioWatch;
    type Oneshot = TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        // One executor, on this thread: a glommio executor is one thread by design.
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("starting a glommio executor (io_uring available, memlock >= 512 KiB?)");
        GlommioRuntime { executor }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_runtime_suite_passes() {
        openraft_rt::testing::Suite::<GlommioRuntime>::test_all();
    }

    #[test]
    fn a_timeout_lets_a_ready_future_win_and_cuts_a_slow_one() {
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let quick = GlommioRuntime::timeout(Duration::from_millis(50), async { 7 }).await;
            assert_eq!(quick, Ok(7));
            let slow = GlommioRuntime::timeout(
                Duration::from_millis(5),
                GlommioRuntime::sleep(Duration::from_secs(5)),
            )
            .await;
            assert_eq!(slow, Err(Elapsed));
        });
    }

    #[test]
    fn a_dropped_join_handle_does_not_cancel_its_task() {
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let (tx, rx) = futures::channel::oneshot::channel();
            drop(GlommioRuntime::spawn(async move {
                GlommioRuntime::sleep(Duration::from_millis(2)).await;
                tx.send(42).unwrap();
            }));
            assert_eq!(rx.await, Ok(42));
        });
    }
}
