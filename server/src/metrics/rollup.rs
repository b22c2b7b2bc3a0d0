//! History: the streamer's samples added up per instance and minute in memory
//! ([`RollupBuffer`]) and written every 60 s ([`RollupWriter`]) as minute rollups and
//! hourly usage (`store::Rollups`).
//!
//! Nothing is lost or counted twice across restarts:
//! - A minute leaves the buffer only when the transaction that adds it (and its share of
//!   the hour) committed; a failed write puts it back for the next round.
//! - On shutdown the writer flushes every sample it holds, the minute in progress included,
//!   and leaves the stop time as the lease's mark; the next process adds its own samples of
//!   that minute taken after the mark to the same row (rows are sums).
//! - A sample belongs to the minute its reading was taken in; a restarted container (Berth
//!   or dockerd restarting it) starts a new pair of readings, so no interval spans the gap.
//!
//! Nor across processes: where several processes run the metrics role (HA, scaled), each
//! samples every instance, but only the holder of the `metrics-history` lease
//! ([`crate::store::Leases`]) writes. Its writes advance the lease's mark (samples taken
//! before it are written) in the same transaction. The others keep the last [`HOLD_MS`] of
//! samples, one share per sample; one that takes the lease over (the holder stopped, crashed
//! or lost its lease) writes its own samples from the mark on, so every second is written
//! once. A sole controller (SQLite) takes the lease whatever its state, so a restart after a
//! crash does not wait for it to run out.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use app::model::MetricsSample;

use super::collector::CollectorStats;
use crate::store::{now_ms, MinuteRollup, Store, WriterLease};

/// Milliseconds in a minute, the rollup width.
pub const MINUTE_MS: i64 = 60_000;

/// The lease that elects the one process writing the history.
pub const LEASE: &str = "metrics-history";

/// How long a claim of the lease lasts, milliseconds: two and a half rounds, so one late
/// round does not lose it.
pub const LEASE_TTL_MS: i64 = 150_000;

/// How long a process without the lease keeps samples for a takeover, milliseconds: longer
/// than a crashed holder's lease can outlive its last write.
pub const HOLD_MS: i64 = LEASE_TTL_MS + 2 * MINUTE_MS;

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

/// The samples not yet written, each as its share of its minute (a [`MinuteRollup`] of one
/// sample), keyed by `(instance id, sample time)`, and the project of each deployment seen
/// (the hourly usage is kept per project). Shares are folded into minutes when taken, so a
/// new history writer can start at any millisecond (the mark its predecessor left).
#[derive(Debug, Default)]
pub struct RollupBuffer {
    shares: Mutex<HashMap<(String, i64), MinuteRollup>>,
    projects: Mutex<HashMap<String, String>>,
}

impl RollupBuffer {
    /// Keeps `sample`'s share of its instance's minute. The sample covers `interval_ms`
    /// before `at_ms`; CPU-seconds are `cpu_percent / 100 × seconds`, bytes are rate ×
    /// seconds.
    pub fn add(&self, sample: &MetricsSample) {
        let minute_ms = sample.at_ms - sample.at_ms.rem_euclid(MINUTE_MS);
        let seconds = sample.interval_ms.max(0) as f64 / 1000.0;
        let bytes = |per_s: f64| (per_s * seconds).round() as i64;
        let share = MinuteRollup {
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
        self.put(sample.at_ms, share);
    }

    fn put(&self, at_ms: i64, share: MinuteRollup) {
        let mut shares = self.shares.lock().expect("rollup buffer");
        match shares.entry((share.instance_id.clone(), at_ms)) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&share),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(share);
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

    /// Takes the samples taken before `until_ms` (all with `i64::MAX`) folded into minutes,
    /// each with its project filled in, oldest minute first.
    pub fn take_before(&self, until_ms: i64) -> Vec<MinuteRollup> {
        self.take_range(i64::MIN, until_ms)
    }

    /// [`Self::take_before`] that drops the samples taken before `from_ms` (another
    /// process wrote them).
    pub fn take_range(&self, from_ms: i64, until_ms: i64) -> Vec<MinuteRollup> {
        let mut minutes: HashMap<(String, i64), MinuteRollup> = HashMap::new();
        self.shares
            .lock()
            .expect("rollup buffer")
            .retain(|(_, at_ms), share| {
                if *at_ms >= until_ms {
                    return true;
                }
                if *at_ms >= from_ms {
                    let share = std::mem::take(share);
                    match minutes.entry((share.instance_id.clone(), share.minute_ms)) {
                        std::collections::hash_map::Entry::Occupied(mut e) => {
                            e.get_mut().merge(&share)
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(share);
                        }
                    }
                }
                false
            });
        let projects = self.projects.lock().expect("rollup projects");
        let mut taken: Vec<MinuteRollup> = minutes.into_values().collect();
        for m in &mut taken {
            if let Some(p) = projects.get(&m.deployment_id) {
                m.project_id.clone_from(p);
            }
        }
        taken.sort_by(|a, b| (a.minute_ms, &a.instance_id).cmp(&(b.minute_ms, &b.instance_id)));
        taken
    }

    /// Drops the samples taken before `at_ms` (what a process without the history lease
    /// no longer needs to keep).
    pub fn discard_before(&self, at_ms: i64) {
        self.shares
            .lock()
            .expect("rollup buffer")
            .retain(|(_, t), _| *t >= at_ms);
    }

    /// Puts back minutes whose write failed (merging with samples added since), each as a
    /// share at the minute's last millisecond, so that the next take of the minute takes it.
    pub fn put_back(&self, minutes: Vec<MinuteRollup>) {
        for m in minutes {
            self.put(m.minute_ms + MINUTE_MS - 1, m);
        }
    }

    /// Instance-minutes held.
    pub fn pending(&self) -> usize {
        let shares = self.shares.lock().expect("rollup buffer");
        shares
            .values()
            .map(|s| (s.instance_id.as_str(), s.minute_ms))
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

/// Writes the buffer's closed minutes every 60 s while this process holds the history
/// lease, prunes by the retention once an hour, and writes what it holds on shutdown.
pub struct RollupWriter {
    store: Store,
    buffer: Arc<RollupBuffer>,
    stats: Arc<CollectorStats>,
    retention: Retention,
    /// Names this process in the lease.
    owner: String,
    /// No other process can share the database (SQLite): the lease is taken whatever its
    /// state.
    sole: bool,
    /// While the lease is held: the mark it had when this process took it. Samples taken
    /// before it were written by the previous holder and are dropped.
    tenure: Mutex<Option<i64>>,
}

impl RollupWriter {
    pub fn new(
        store: Store,
        buffer: Arc<RollupBuffer>,
        stats: Arc<CollectorStats>,
        retention: Retention,
        sole: bool,
    ) -> Self {
        Self {
            store,
            buffer,
            stats,
            retention,
            owner: crate::store::new_id(),
            sole,
            tenure: Mutex::new(None),
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
            if self.round(now, now - now.rem_euclid(MINUTE_MS)).await
                && now - last_prune >= 3_600_000
            {
                self.prune(now).await;
                last_prune = now;
            }
        }
    }

    /// At shutdown: writes every sample held (the minute in progress included; the next
    /// holder starts after them) and gives the lease up.
    pub async fn flush(&self) {
        self.hand_over(now_ms()).await;
    }

    /// [`Self::flush`] at `now` (Unix epoch milliseconds; every sample held was taken
    /// before it: the streamer has stopped).
    pub async fn hand_over(&self, now: i64) {
        self.write_round(now, i64::MAX, now).await;
        if let Err(e) = self.store.leases().release(LEASE, &self.owner).await {
            tracing::warn!(error = %e, "metrics: cannot give the history lease up");
        }
    }

    /// One round at `now`: claims or renews the lease and, holding it, writes the samples
    /// taken before `until` (a minute's start). Without it, keeps the last [`HOLD_MS`] of
    /// samples. Returns whether this process holds the lease.
    pub async fn round(&self, now: i64, until: i64) -> bool {
        self.write_round(now, until, until).await
    }

    /// [`Self::round`] whose write sets the mark to `mark` (samples taken before it are in
    /// the database).
    async fn write_round(&self, now: i64, until: i64, mark: i64) -> bool {
        let lease = match self
            .store
            .leases()
            .claim(LEASE, &self.owner, now, LEASE_TTL_MS, self.sole)
            .await
        {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot claim the history lease");
                self.failed(Vec::new());
                return false;
            }
        };
        let Some(lease) = lease else {
            // Another process writes: keep recent samples in case it stops.
            *self.tenure.lock().expect("tenure") = None;
            self.stats.history_lease.store(false, Ordering::Relaxed);
            self.buffer.discard_before(now - HOLD_MS);
            return false;
        };
        self.stats.history_lease.store(true, Ordering::Relaxed);
        let floor = *self
            .tenure
            .lock()
            .expect("tenure")
            .get_or_insert(lease.mark_ms);
        let minutes = self.buffer.take_range(floor, until);
        let check = WriterLease {
            name: LEASE,
            owner: &self.owner,
            now_ms: now,
            mark_ms: mark,
        };
        match self.store.rollups().write(&minutes, Some(&check)).await {
            Ok(true) => {
                self.stats.last_write_failed.store(false, Ordering::Relaxed);
                if !minutes.is_empty() {
                    self.stats.rollup_writes.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .rollup_minutes
                        .fetch_add(minutes.len() as u64, Ordering::Relaxed);
                }
                true
            }
            Ok(false) => {
                // The lease ran out between the claim and the write (a long pause): the new
                // holder writes these samples from its own.
                tracing::warn!(
                    minutes = minutes.len(),
                    "metrics: the history lease was lost before the write; another process writes"
                );
                *self.tenure.lock().expect("tenure") = None;
                self.stats.history_lease.store(false, Ordering::Relaxed);
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, minutes = minutes.len(), "metrics: cannot write rollups; kept for the next round");
                self.failed(minutes);
                true
            }
        }
    }

    /// Counts a failed write and keeps its minutes for the next round.
    fn failed(&self, minutes: Vec<MinuteRollup>) {
        self.stats.last_write_failed.store(true, Ordering::Relaxed);
        self.stats
            .rollup_write_failures
            .fetch_add(1, Ordering::Relaxed);
        self.buffer.put_back(minutes);
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
