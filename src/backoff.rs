//! Retry timing shared by every component that talks to something that can go away (the API,
//! the broker): exponential backoff with jitter, bounded by a deadline per outage.

use std::time::{Duration, Instant};

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
}

impl Retry {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            first_failure: None,
            next: policy.initial,
            attempts: 0,
        }
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
}
