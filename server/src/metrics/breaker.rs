//! A circuit breaker around one engine's API, as the streamer uses it: after
//! [`Breaker::THRESHOLD`] failures in a row (errors or timeouts) it opens and calls are not
//! made for [`Breaker::COOL_DOWN`]; then one trial call is let through (half-open), and its
//! outcome closes or reopens the breaker. An engine that stops answering so costs one
//! failed call per cool-down instead of one per container and second, and the streamer
//! keeps serving the instances it can still read (cgroup sources need no engine call).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One trial call is out; others are refused until it ends.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// One engine's breaker.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    cool_down: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(Self::COOL_DOWN)
    }
}

impl Breaker {
    /// Failures in a row that open the breaker.
    pub const THRESHOLD: u32 = 5;
    /// How long an open breaker refuses calls.
    pub const COOL_DOWN: Duration = Duration::from_secs(15);

    pub fn new(cool_down: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            cool_down,
        }
    }

    /// Whether a call may be made at `now`; an open breaker whose cool-down ended lets
    /// this one call through as the trial.
    pub fn allow(&self, now: Instant) -> bool {
        let mut inner = self.inner.lock().expect("breaker");
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now >= until => {
                *inner = Inner::HalfOpen;
                true
            }
            Inner::Open { .. } | Inner::HalfOpen => false,
        }
    }

    /// A call succeeded: the breaker closes.
    pub fn success(&self) {
        *self.inner.lock().expect("breaker") = Inner::Closed { failures: 0 };
    }

    /// A call failed at `now`: the [`Self::THRESHOLD`]th failure in a row, or a failed
    /// trial, opens the breaker.
    pub fn failure(&self, now: Instant) {
        let mut inner = self.inner.lock().expect("breaker");
        let open = match *inner {
            Inner::Closed { failures } if failures + 1 < Self::THRESHOLD => {
                *inner = Inner::Closed {
                    failures: failures + 1,
                };
                false
            }
            Inner::Closed { .. } | Inner::HalfOpen => true,
            // Calls allowed before it opened may still fail; the cool-down stands.
            Inner::Open { .. } => false,
        };
        if open {
            *inner = Inner::Open {
                until: now + self.cool_down,
            };
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match *self.inner.lock().expect("breaker") {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_closes_after_a_good_trial() {
        let b = Breaker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..Breaker::THRESHOLD - 1 {
            assert!(b.allow(t0));
            b.failure(t0);
        }
        // A success in between resets the count.
        b.success();
        for _ in 0..Breaker::THRESHOLD - 1 {
            b.failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        // After the cool-down one trial goes through, the next caller waits for it.
        let later = t0 + Duration::from_secs(10);
        assert!(b.allow(later));
        assert!(!b.allow(later));
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        b.success();
        assert_eq!(b.state(later), BreakerState::Closed);
        assert!(b.allow(later));
    }

    #[test]
    fn a_failed_trial_reopens_for_a_full_cool_down() {
        let b = Breaker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..Breaker::THRESHOLD {
            b.failure(t0);
        }
        let trial = t0 + Duration::from_secs(11);
        assert!(b.allow(trial));
        b.failure(trial);
        assert!(!b.allow(trial + Duration::from_secs(9)));
        assert!(b.allow(trial + Duration::from_secs(10)));
    }
}
