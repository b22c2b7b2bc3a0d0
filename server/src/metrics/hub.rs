//! The live cache and fan-out: the last [`WINDOW`] of samples per instance in memory, and a
//! broadcast of every new sample to the subscribers (the metrics sockets).
//!
//! The broadcast is a bounded ring ([`tokio::sync::broadcast`]): publishing never waits for
//! a subscriber. One that falls more than [`LIVE_CAPACITY`] samples behind gets `Lagged`
//! and skips ahead to the oldest sample still held; the streamer and the other subscribers
//! are not slowed.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use app::model::{DeploymentId, InstanceId, MetricsSample};
use tokio::sync::broadcast;

/// How much history each instance keeps in memory.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Samples a subscriber may fall behind before it skips ahead.
pub const LIVE_CAPACITY: usize = 4096;

/// The live cache; one per process running the `metrics` role.
#[derive(Debug)]
pub struct MetricsHub {
    windows: Mutex<HashMap<InstanceId, VecDeque<Arc<MetricsSample>>>>,
    live: broadcast::Sender<Arc<MetricsSample>>,
}

impl Default for MetricsHub {
    fn default() -> Self {
        Self {
            windows: Mutex::default(),
            live: broadcast::channel(LIVE_CAPACITY).0,
        }
    }
}

impl MetricsHub {
    /// Keeps `sample` in its instance's window (dropping what is older than [`WINDOW`]) and
    /// sends it to every subscriber.
    pub fn publish(&self, sample: MetricsSample) {
        let sample = Arc::new(sample);
        let oldest = sample.at_ms - WINDOW.as_millis() as i64;
        {
            let mut windows = self.windows.lock().expect("metrics windows");
            let window = windows.entry(sample.instance_id.clone()).or_default();
            window.push_back(sample.clone());
            while window.front().is_some_and(|s| s.at_ms < oldest) {
                window.pop_front();
            }
        }
        // An error only means nobody listens right now.
        let _ = self.live.send(sample);
    }

    /// A receiver of every sample published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<MetricsSample>> {
        self.live.subscribe()
    }

    /// The cached samples of `deployment`'s instances, oldest first.
    pub fn window(&self, deployment: &DeploymentId) -> Vec<MetricsSample> {
        let windows = self.windows.lock().expect("metrics windows");
        let mut samples: Vec<MetricsSample> = windows
            .values()
            .flatten()
            .filter(|s| &s.deployment_id == deployment)
            .map(|s| MetricsSample::clone(s))
            .collect();
        samples.sort_by_key(|s| s.at_ms);
        samples
    }

    /// The newest sample of every instance.
    pub fn newest(&self) -> Vec<MetricsSample> {
        let windows = self.windows.lock().expect("metrics windows");
        let mut samples: Vec<MetricsSample> = windows
            .values()
            .filter_map(|w| w.back())
            .map(|s| MetricsSample::clone(s))
            .collect();
        samples.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        samples
    }

    /// Drops the windows of instances whose newest sample is older than [`WINDOW`] at
    /// `now_ms` (instances that are gone).
    pub fn forget_stale(&self, now_ms: i64) {
        let oldest = now_ms - WINDOW.as_millis() as i64;
        self.windows
            .lock()
            .expect("metrics windows")
            .retain(|_, w| w.back().is_some_and(|s| s.at_ms >= oldest));
    }

    /// `(instances, samples)` held in the cache.
    pub fn size(&self) -> (usize, usize) {
        let windows = self.windows.lock().expect("metrics windows");
        (windows.len(), windows.values().map(VecDeque::len).sum())
    }

    /// Live subscribers right now.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;

    fn sample(instance: &str, deployment: &str, at_ms: i64) -> MetricsSample {
        MetricsSample::idle(
            InstanceId(instance.into()),
            DeploymentId(deployment.into()),
            at_ms,
        )
    }

    #[test]
    fn windows_keep_fifteen_minutes_per_deployment() {
        let hub = MetricsHub::default();
        let minute = 60_000;
        for i in 0..20 {
            hub.publish(sample("a1", "a", i * minute));
            hub.publish(sample("b1", "b", i * minute + 1));
        }
        hub.publish(sample("a2", "a", 19 * minute + 500));
        let a = hub.window(&DeploymentId("a".into()));
        // Minutes 4 ..= 19 of a1 (15 minutes back from the newest, inclusive) and a2's one.
        assert_eq!(a.len(), 17);
        assert_eq!(a.first().unwrap().at_ms, 4 * minute);
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.iter().all(|s| s.deployment_id.0 == "a"));
        let newest = hub.newest();
        assert_eq!(
            newest.iter().filter(|s| s.deployment_id.0 == "a").count(),
            2
        );
        assert_eq!(hub.size(), (3, 33));
        // 16 minutes after a2's sample every window is stale.
        hub.forget_stale(35 * minute + 501);
        assert_eq!(hub.size(), (0, 0));
    }

    #[test]
    fn a_subscriber_that_never_reads_does_not_hold_up_publishing() {
        let hub = MetricsHub::default();
        let mut stuck = hub.subscribe();
        let mut reading = hub.subscribe();
        let total = LIVE_CAPACITY as i64 * 3;
        for i in 0..total {
            hub.publish(sample("a1", "a", i));
            // The reader keeps up and sees every sample in order.
            assert_eq!(reading.try_recv().unwrap().at_ms, i);
        }
        assert_eq!(hub.subscribers(), 2);
        // The stuck one is told how many it missed, then goes on from the oldest kept.
        match stuck.try_recv() {
            Err(TryRecvError::Lagged(missed)) => {
                assert_eq!(missed, (total as u64) - LIVE_CAPACITY as u64)
            }
            other => panic!("expected Lagged, got {other:?}"),
        }
        assert_eq!(
            stuck.try_recv().unwrap().at_ms,
            total - LIVE_CAPACITY as i64
        );
    }
}
