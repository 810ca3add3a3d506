//! Retrying, for every component that talks to something that can go away (the API, the
//! broker): exponential backoff with jitter, bounded by a deadline per outage ([`Retry`]), and
//! the one retry loop ([`retry`]) that takes a policy and a classifier. Whether an error is worth
//! another try is decided by the error's own module (e.g. `KafkaError::is_retriable`), never here.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How to retry: the first delay, the largest, and how long one outage may last in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub deadline: Duration,
}

/// The state of one outage: created on the first failure, reset by a success.
#[derive(Debug, Clone)]
pub struct Retry {
    policy: RetryPolicy,
    first_failure: Option<Instant>,
    next: Duration,
    attempts: u32,
    /// Failures within this long of the first are logged at debug level only.
    quiet_for: Duration,
    /// Cancelled: stop waiting for the next try (a shutdown during an outage).
    stop: Option<CancellationToken>,
}

impl Retry {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            first_failure: None,
            next: policy.initial,
            attempts: 0,
            quiet_for: Duration::ZERO,
            stop: None,
        }
    }

    /// Gives up waiting for the next try once `stop` is cancelled ([`RetryError::Stopped`]),
    /// so a shutdown during an outage does not wait out the whole deadline.
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Logs the first `quiet_for` of an outage at debug level: for calls where a short outage
    /// is routine (a new topic's leader election, a restarting broker).
    pub fn quiet_for(mut self, quiet_for: Duration) -> Self {
        self.quiet_for = quiet_for;
        self
    }

    /// Failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long the current outage has lasted.
    pub fn outage(&self) -> Duration {
        self.first_failure.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Records a failure and returns how long to wait before the next try, or `None` once the
    /// outage has lasted the deadline. Delays double up to `max`; each is drawn from the upper
    /// half of its range ("equal jitter"), so clients that failed together do not retry in step.
    pub fn failed(&mut self) -> Option<Duration> {
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        self.attempts += 1;
        let elapsed = first.elapsed();
        if elapsed >= self.policy.deadline {
            return None;
        }
        let base = self.next;
        self.next = (self.next * 2).min(self.policy.max);
        let delay = base.mul_f64(0.5 + 0.5 * fastrand::f64());
        Some(delay.min(self.policy.deadline - elapsed))
    }

    pub fn succeeded(&mut self) {
        self.first_failure = None;
        self.next = self.policy.initial;
        self.attempts = 0;
    }
}

/// Why [`retry`] stopped trying.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The classifier said no try can cure this error; it was not retried.
    #[error(transparent)]
    Fatal(E),
    /// The outage lasted the policy's deadline.
    #[error("gave up after {attempts} attempts over {outage:.1?}: {last}")]
    GaveUp {
        attempts: u32,
        outage: Duration,
        #[source]
        last: E,
    },
    /// Told to stop (a shutdown) while waiting for the next try.
    #[error("stopped while waiting to try again after: {0}")]
    Stopped(#[source] E),
}

impl<E> RetryError<E> {
    /// The last error itself, for callers whose error already says enough.
    pub fn into_last(self) -> E {
        match self {
            Self::Fatal(last) | Self::GaveUp { last, .. } | Self::Stopped(last) => last,
        }
    }
}

/// Runs `call` until it succeeds, retrying the errors `retriable` accepts with the backoff of
/// `retry` and logging each retry with `what`. Callers bound each attempt themselves (their
/// call carries its own timeout) and stop it on shutdown by dropping the future. A loop whose
/// attempt borrows its state mutably calls [`Retry::pause`] itself instead.
pub async fn retry<T, E, F, Fut>(
    mut retry: Retry,
    what: &str,
    retriable: impl Fn(&E) -> bool,
    mut call: F,
) -> Result<T, RetryError<E>>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => retry.pause(what, error, &retriable).await?,
        }
    }
}

impl Retry {
    /// The one retry decision, after a failed attempt: gives the error back when `retriable`
    /// rejects it or the outage has lasted the deadline; else logs it with `what` and sleeps
    /// until the next try.
    pub async fn pause<E: fmt::Display>(
        &mut self,
        what: &str,
        error: E,
        retriable: impl Fn(&E) -> bool,
    ) -> Result<(), RetryError<E>> {
        if !retriable(&error) {
            return Err(RetryError::Fatal(error));
        }
        let Some(wait) = self.failed() else {
            return Err(RetryError::GaveUp {
                attempts: self.attempts(),
                outage: self.outage(),
                last: error,
            });
        };
        self.log(what, &error, wait);
        match &self.stop {
            Some(stop) => tokio::select! {
                _ = stop.cancelled() => return Err(RetryError::Stopped(error)),
                _ = tokio::time::sleep(wait) => {}
            },
            None => tokio::time::sleep(wait).await,
        }
        Ok(())
    }
}

impl Retry {
    /// Logs one failure about to be retried: debug while the outage is routine, then warn.
    fn log(&self, what: &str, error: &dyn fmt::Display, wait: Duration) {
        let attempt = self.attempts;
        if self.outage() < self.quiet_for {
            tracing::debug!(%error, attempt, retry_in = ?wait, "{what} failed; retrying");
        } else {
            tracing::warn!(%error, attempt, retry_in = ?wait, "{what} failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_up_to_the_max() {
        let mut retry = Retry::new(RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            deadline: Duration::from_secs(60),
        });
        let bounds = [(50, 100), (100, 200), (200, 400), (200, 400), (200, 400)];
        for (low, high) in bounds {
            let d = retry.failed().unwrap();
            assert!(
                d >= Duration::from_millis(low) && d <= Duration::from_millis(high),
                "{d:?} not in {low}..={high} ms"
            );
        }
        assert_eq!(retry.attempts(), 5);
        retry.succeeded();
        assert!(retry.failed().unwrap() <= Duration::from_millis(100));
    }

    #[test]
    fn gives_up_after_the_deadline() {
        let mut retry = Retry::new(RetryPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            deadline: Duration::from_millis(30),
        });
        assert!(retry.failed().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(retry.failed().is_none());
    }

    const QUICK: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(2),
        deadline: Duration::from_millis(200),
    };

    #[tokio::test]
    async fn retries_what_the_classifier_accepts_until_it_succeeds() {
        let mut calls = 0;
        let result: Result<u32, RetryError<&str>> = retry(
            Retry::new(QUICK),
            "test",
            |_| true,
            || {
                calls += 1;
                let outcome = if calls < 3 { Err("down") } else { Ok(calls) };
                async move { outcome }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_fatal_error_is_not_retried() {
        let mut calls = 0;
        let result: Result<(), _> = retry(
            Retry::new(QUICK),
            "test",
            |e: &&str| *e != "denied",
            || {
                calls += 1;
                async { Err("denied") }
            },
        )
        .await;
        assert!(matches!(result, Err(RetryError::Fatal("denied"))));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn gives_up_with_the_last_error_after_the_deadline() {
        let result: Result<(), _> = retry(
            Retry::new(QUICK),
            "test",
            |_| true,
            || async { Err("down") },
        )
        .await;
        match result {
            Err(RetryError::GaveUp { attempts, last, .. }) => {
                assert!(attempts > 1, "{attempts}");
                assert_eq!(last, "down");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_for_the_next_try() {
        let stop = CancellationToken::new();
        let mut retry = Retry::new(RetryPolicy {
            initial: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
            deadline: Duration::from_secs(7200),
        })
        .stop_on(stop.clone());
        stop.cancel();
        let ended = retry.pause("test", "down", |_| true).await;
        assert!(matches!(ended, Err(RetryError::Stopped("down"))));
    }
}
