//! Sign-in throttling: failed attempts are counted per account and per client address in a
//! sliding window; once a key reaches its limit, further attempts are refused until its
//! oldest failure leaves the window. Successful sign-ins clear the account's count.
//! Kept in memory: in HA mode each controller counts separately, which still bounds guessing.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Counts failures per key (e.g. `account:ann@example.com`, `client:192.0.2.1`).
#[derive(Debug)]
pub struct FailureLimiter {
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// A limiter whose failures expire after `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `key` has `limit` or more failures in the window: the time until the
    /// oldest one expires. `None` when another attempt is allowed.
    pub fn blocked_for(&self, key: &str, limit: u32, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(key)?;
        while entry
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            entry.pop_front();
        }
        if entry.is_empty() {
            map.remove(key);
            return None;
        }
        (entry.len() >= limit as usize)
            .then(|| self.window.saturating_sub(now.duration_since(entry[0])))
    }

    /// Records one failure for `key` at `now`.
    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(key.to_owned()).or_default();
        entry.push_back(now);
        // Bound memory per key: only the newest failures matter for any sane limit.
        while entry.len() > 1000 {
            entry.pop_front();
        }
    }

    /// Forgets `key`'s failures (after a successful sign-in).
    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Drops keys whose failures have all expired; run periodically.
    pub fn prune(&self, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, q| {
            q.back()
                .is_some_and(|t| now.duration_since(*t) < self.window)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_until_window_passes() {
        let l = FailureLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.blocked_for("a", 3, t0), None, "attempt {i}");
            l.record_failure("a", t0);
        }
        let wait = l.blocked_for("a", 3, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(l.blocked_for("b", 3, t0), None, "other keys are unaffected");
        assert_eq!(l.blocked_for("a", 3, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn clear_resets_a_key() {
        let l = FailureLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        l.record_failure("a", t0);
        l.clear("a");
        assert_eq!(l.blocked_for("a", 1, t0), None);
        l.record_failure("b", t0);
        l.prune(t0 + Duration::from_secs(61));
        assert_eq!(l.blocked_for("b", 1, t0 + Duration::from_secs(61)), None);
    }
}
