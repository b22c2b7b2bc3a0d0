//! History: the streamer's samples added up per instance and minute in memory
//! ([`RollupBuffer`]) and written every 60 s ([`RollupWriter`]) as minute rollups and
//! hourly usage (`store::Rollups`).
//!
//! Nothing is lost or counted twice across restarts:
//! - A minute leaves the buffer only when the transaction that adds it (and its share of
//!   the hour) committed; a failed write puts it back for the next round.
//! - On shutdown the writer flushes every minute it holds, the one in progress included;
//!   the next process adds its own samples of that minute to the same row (rows are sums).
//! - A sample belongs to the minute its reading was taken in; a restarted container (Berth
//!   or dockerd restarting it) starts a new pair of readings, so no interval spans the gap.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use app::model::MetricsSample;

use super::collector::CollectorStats;
use crate::store::{now_ms, MinuteRollup, Store};

/// Milliseconds in a minute, the rollup width.
pub const MINUTE_MS: i64 = 60_000;

/// How long rows are kept (config `metrics_minutes_retention_days`,
/// `metrics_hours_retention_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub minutes_days: u32,
    pub hours_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            minutes_days: 7,
            hours_days: 400,
        }
    }
}

/// The minutes not yet written, keyed by `(instance id, minute start)`, and the project of
/// each deployment seen (the hourly usage is kept per project).
#[derive(Debug, Default)]
pub struct RollupBuffer {
    minutes: Mutex<HashMap<(String, i64), MinuteRollup>>,
    projects: Mutex<HashMap<String, String>>,
}

impl RollupBuffer {
    /// Adds `sample` to its instance's minute. The sample covers `interval_ms` before
    /// `at_ms`; CPU-seconds are `cpu_percent / 100 × seconds`, bytes are rate × seconds.
    pub fn add(&self, sample: &MetricsSample) {
        let minute_ms = sample.at_ms - sample.at_ms.rem_euclid(MINUTE_MS);
        let seconds = sample.interval_ms.max(0) as f64 / 1000.0;
        let bytes = |per_s: f64| (per_s * seconds).round() as i64;
        let part = MinuteRollup {
            instance_id: sample.instance_id.0.clone(),
            deployment_id: sample.deployment_id.0.clone(),
            project_id: String::new(),
            minute_ms,
            samples: 1,
            seconds,
            cpu_seconds: sample.cpu_percent / 100.0 * seconds,
            cpu_percent_max: sample.cpu_percent,
            memory_byte_seconds: sample.memory_bytes as f64 * seconds,
            memory_bytes_max: i64::try_from(sample.memory_bytes).unwrap_or(i64::MAX),
            memory_limit_bytes: i64::try_from(sample.memory_limit_bytes).unwrap_or(i64::MAX),
            net_rx_bytes: bytes(sample.net_rx_bytes_per_s),
            net_tx_bytes: bytes(sample.net_tx_bytes_per_s),
            block_read_bytes: bytes(sample.block_read_bytes_per_s),
            block_write_bytes: bytes(sample.block_write_bytes_per_s),
            pids_max: i64::try_from(sample.pids).unwrap_or(i64::MAX),
        };
        self.put(part);
    }

    fn put(&self, part: MinuteRollup) {
        let mut minutes = self.minutes.lock().expect("rollup buffer");
        match minutes.entry((part.instance_id.clone(), part.minute_ms)) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&part),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(part);
            }
        }
    }

    /// Whether the project of `deployment_id` is known.
    pub fn knows(&self, deployment_id: &str) -> bool {
        self.projects
            .lock()
            .expect("rollup projects")
            .contains_key(deployment_id)
    }

    /// Records that `deployment_id` belongs to `project_id`.
    pub fn set_project(&self, deployment_id: &str, project_id: &str) {
        self.projects
            .lock()
            .expect("rollup projects")
            .insert(deployment_id.to_owned(), project_id.to_owned());
    }

    /// Takes the minutes that started before `minute_ms` (every minute with `i64::MAX`),
    /// each with its project filled in.
    pub fn take_before(&self, minute_ms: i64) -> Vec<MinuteRollup> {
        let mut taken = Vec::new();
        self.minutes
            .lock()
            .expect("rollup buffer")
            .retain(|(_, minute), m| {
                if *minute < minute_ms {
                    taken.push(std::mem::take(m));
                    false
                } else {
                    true
                }
            });
        let projects = self.projects.lock().expect("rollup projects");
        for m in &mut taken {
            if let Some(p) = projects.get(&m.deployment_id) {
                m.project_id.clone_from(p);
            }
        }
        taken.sort_by(|a, b| (a.minute_ms, &a.instance_id).cmp(&(b.minute_ms, &b.instance_id)));
        taken
    }

    /// Puts back minutes whose write failed (merging with samples added since).
    pub fn put_back(&self, minutes: Vec<MinuteRollup>) {
        for m in minutes {
            self.put(m);
        }
    }

    /// Minutes held.
    pub fn pending(&self) -> usize {
        self.minutes.lock().expect("rollup buffer").len()
    }
}

/// Writes the buffer's closed minutes every 60 s, prunes by the retention once an hour,
/// and flushes everything on shutdown.
pub struct RollupWriter {
    store: Store,
    buffer: Arc<RollupBuffer>,
    stats: Arc<CollectorStats>,
    retention: Retention,
}

impl RollupWriter {
    pub fn new(
        store: Store,
        buffer: Arc<RollupBuffer>,
        stats: Arc<CollectorStats>,
        retention: Retention,
    ) -> Self {
        Self {
            store,
            buffer,
            stats,
            retention,
        }
    }

    /// Writes closed minutes 2 s after each minute ends (late samples of a written minute
    /// go out with the next round, added to the same row), until aborted.
    pub async fn run(self: Arc<Self>) {
        let mut last_prune = 0;
        loop {
            let now = now_ms();
            let next = now - now.rem_euclid(MINUTE_MS) + MINUTE_MS + 2_000;
            tokio::time::sleep(Duration::from_millis((next - now) as u64)).await;
            let now = now_ms();
            self.write(self.buffer.take_before(now - now.rem_euclid(MINUTE_MS)))
                .await;
            if now - last_prune >= 3_600_000 {
                self.prune(now).await;
                last_prune = now;
            }
        }
    }

    /// Writes every minute held, the current one included (at shutdown).
    pub async fn flush(&self) {
        self.write(self.buffer.take_before(i64::MAX)).await;
    }

    async fn write(&self, minutes: Vec<MinuteRollup>) {
        if minutes.is_empty() {
            return;
        }
        match self.store.rollups().write(&minutes).await {
            Ok(()) => {
                self.stats.last_write_failed.store(false, Ordering::Relaxed);
                self.stats.rollup_writes.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .rollup_minutes
                    .fetch_add(minutes.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, minutes = minutes.len(), "metrics: cannot write rollups; kept for the next round");
                self.stats.last_write_failed.store(true, Ordering::Relaxed);
                self.stats
                    .rollup_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.buffer.put_back(minutes);
            }
        }
    }

    async fn prune(&self, now: i64) {
        let day = 24 * 3_600_000;
        let minutes_before = now - i64::from(self.retention.minutes_days) * day;
        let hours_before = now - i64::from(self.retention.hours_days) * day;
        match self
            .store
            .rollups()
            .prune(minutes_before, hours_before)
            .await
        {
            Ok((0, 0)) => {}
            Ok((minutes, hours)) => {
                tracing::info!(
                    minutes,
                    hours,
                    "metrics: history past its retention deleted"
                )
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot prune the history"),
        }
    }
}

#[cfg(test)]
mod tests {
    use app::model::{DeploymentId, InstanceId};

    use super::*;

    fn sample(instance: &str, at_ms: i64, cpu: f64, memory: u64, rx_per_s: f64) -> MetricsSample {
        MetricsSample {
            cpu_percent: cpu,
            memory_bytes: memory,
            memory_limit_bytes: 1 << 30,
            net_rx_bytes_per_s: rx_per_s,
            pids: 2,
            ..MetricsSample::idle(InstanceId(instance.into()), DeploymentId("d".into()), at_ms)
        }
    }

    #[test]
    fn samples_add_up_per_instance_and_minute() {
        let buffer = RollupBuffer::default();
        buffer.set_project("d", "p");
        // Two samples in minute 0 of instance a, one in minute 1, one of b in minute 0.
        buffer.add(&sample("a", 1_000, 50.0, 100, 10.0));
        buffer.add(&sample("a", 59_999, 150.0, 300, 30.0));
        buffer.add(&sample("a", 60_000, 10.0, 100, 0.0));
        buffer.add(&sample("b", 2_000, 20.0, 50, 0.0));
        assert_eq!(buffer.pending(), 3);
        let closed = buffer.take_before(MINUTE_MS);
        assert_eq!(buffer.pending(), 1, "minute 1 stays");
        assert_eq!(closed.len(), 2);
        let a = &closed[0];
        assert_eq!((a.instance_id.as_str(), a.minute_ms), ("a", 0));
        assert_eq!(a.project_id, "p");
        assert_eq!(a.samples, 2);
        assert!((a.seconds - 2.0).abs() < 1e-9);
        // 0.5 + 1.5 core-seconds; mean 100 % over the two seconds.
        assert!((a.cpu_seconds - 2.0).abs() < 1e-9);
        assert_eq!(a.cpu_percent_max, 150.0);
        assert!((a.memory_byte_seconds - 400.0).abs() < 1e-9);
        assert_eq!(
            (a.memory_bytes_max, a.net_rx_bytes, a.pids_max),
            (300, 40, 2)
        );
        assert_eq!(closed[1].instance_id, "b");
    }

    #[test]
    fn a_failed_write_puts_minutes_back_merged_with_newer_samples() {
        let buffer = RollupBuffer::default();
        buffer.add(&sample("a", 1_000, 50.0, 100, 0.0));
        let taken = buffer.take_before(i64::MAX);
        assert_eq!(buffer.pending(), 0);
        // A late sample of the same minute arrives while the write fails.
        buffer.add(&sample("a", 2_000, 30.0, 500, 0.0));
        buffer.put_back(taken);
        let again = buffer.take_before(i64::MAX);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].samples, 2);
        assert!((again[0].cpu_seconds - 0.8).abs() < 1e-9);
        assert_eq!(again[0].memory_bytes_max, 500);
    }
}
