//! Metrics history: minute rollups per instance (`metrics_minutes`) and hourly usage per
//! deployment (`metrics_usage_hours`), written by the metrics role's rollup writer
//! (`metrics::rollup`) and read by the history charts and the usage report.
//!
//! Every figure is a sum, so a minute written in two parts (one process stopped in the
//! middle of it, the next one went on) merges by adding, and the hour it falls in receives
//! each part once: the minute and its share of the hour are written in one transaction.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::StoreResult;

/// One instance's samples of one minute, added up. Means are sums over `seconds`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MinuteRollup {
    pub instance_id: String,
    pub deployment_id: String,
    /// The deployment's project, for the hourly usage; not stored with the minute (empty
    /// when read back).
    pub project_id: String,
    /// Start of the minute, Unix epoch milliseconds.
    pub minute_ms: i64,
    pub samples: i64,
    /// Seconds the samples cover (the sum of their intervals).
    pub seconds: f64,
    /// CPU time used, core-seconds.
    pub cpu_seconds: f64,
    /// The highest CPU % (of one core) of a sample.
    pub cpu_percent_max: f64,
    /// Memory in use integrated over `seconds`, byte-seconds.
    pub memory_byte_seconds: f64,
    pub memory_bytes_max: i64,
    /// The newest memory limit seen, bytes.
    pub memory_limit_bytes: i64,
    pub net_rx_bytes: i64,
    pub net_tx_bytes: i64,
    pub block_read_bytes: i64,
    pub block_write_bytes: i64,
    pub pids_max: i64,
}

impl MinuteRollup {
    /// Adds `other` (the same instance and minute) into `self`: sums add, maxima take the
    /// larger, the limit takes `other`'s when it has one.
    pub fn merge(&mut self, other: &MinuteRollup) {
        self.samples += other.samples;
        self.seconds += other.seconds;
        self.cpu_seconds += other.cpu_seconds;
        self.cpu_percent_max = self.cpu_percent_max.max(other.cpu_percent_max);
        self.memory_byte_seconds += other.memory_byte_seconds;
        self.memory_bytes_max = self.memory_bytes_max.max(other.memory_bytes_max);
        if other.memory_limit_bytes > 0 {
            self.memory_limit_bytes = other.memory_limit_bytes;
        }
        self.net_rx_bytes += other.net_rx_bytes;
        self.net_tx_bytes += other.net_tx_bytes;
        self.block_read_bytes += other.block_read_bytes;
        self.block_write_bytes += other.block_write_bytes;
        self.pids_max = self.pids_max.max(other.pids_max);
    }
}

/// One deployment's usage over one hour (or, from [`Rollups::usage_totals`], over a span).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageRecord {
    pub deployment_id: String,
    /// Start of the hour, Unix epoch milliseconds; 0 in totals.
    pub hour_ms: i64,
    /// Hours summed (1 for an hourly row).
    pub hours: i64,
    pub cpu_seconds: f64,
    pub memory_byte_hours: f64,
    pub net_rx_bytes: i64,
    pub net_tx_bytes: i64,
    pub block_read_bytes: i64,
    pub block_write_bytes: i64,
}

/// The lease a history write happens under: `owner` must still hold lease `name` at
/// `now_ms`, and its mark advances to `mark_ms` (minutes before it are written).
#[derive(Debug, Clone, Copy)]
pub struct WriterLease<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub now_ms: i64,
    pub mark_ms: i64,
}

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;

/// The larger of the stored and the new value, in SQL both backends accept.
fn larger(column: &str) -> String {
    format!(
        "{column} = CASE WHEN excluded.{column} > metrics_minutes.{column} \
         THEN excluded.{column} ELSE metrics_minutes.{column} END"
    )
}

/// Metrics history repository.
pub struct Rollups<'a> {
    pool: &'a AnyPool,
}

impl<'a> Rollups<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Adds `minutes` to their rows (creating them) and each to its deployment's hour, all
    /// in one transaction: either every minute is counted once or none is. With `lease`, the
    /// writer's lease is checked and its mark advanced in the same transaction; `Ok(false)`
    /// when the lease is no longer `lease.owner`'s (nothing is written then).
    ///
    /// # Errors
    /// `Database`; nothing is written then.
    pub async fn write(
        &self,
        minutes: &[MinuteRollup],
        lease: Option<&WriterLease<'_>>,
    ) -> StoreResult<bool> {
        let minute_upsert = format!(
            "INSERT INTO metrics_minutes (instance_id, deployment_id, minute_ms, samples, \
             seconds, cpu_seconds, cpu_percent_max, memory_byte_seconds, memory_bytes_max, \
             memory_limit_bytes, net_rx_bytes, net_tx_bytes, block_read_bytes, \
             block_write_bytes, pids_max) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (instance_id, minute_ms) DO UPDATE SET \
             samples = metrics_minutes.samples + excluded.samples, \
             seconds = metrics_minutes.seconds + excluded.seconds, \
             cpu_seconds = metrics_minutes.cpu_seconds + excluded.cpu_seconds, \
             {}, \
             memory_byte_seconds = metrics_minutes.memory_byte_seconds + excluded.memory_byte_seconds, \
             {}, \
             memory_limit_bytes = excluded.memory_limit_bytes, \
             net_rx_bytes = metrics_minutes.net_rx_bytes + excluded.net_rx_bytes, \
             net_tx_bytes = metrics_minutes.net_tx_bytes + excluded.net_tx_bytes, \
             block_read_bytes = metrics_minutes.block_read_bytes + excluded.block_read_bytes, \
             block_write_bytes = metrics_minutes.block_write_bytes + excluded.block_write_bytes, \
             {}",
            larger("cpu_percent_max"),
            larger("memory_bytes_max"),
            larger("pids_max"),
        );
        let hour_upsert = "INSERT INTO metrics_usage_hours (deployment_id, project_id, hour_ms, \
             cpu_seconds, memory_byte_hours, net_rx_bytes, net_tx_bytes, block_read_bytes, \
             block_write_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (deployment_id, hour_ms) DO UPDATE SET \
             cpu_seconds = metrics_usage_hours.cpu_seconds + excluded.cpu_seconds, \
             memory_byte_hours = metrics_usage_hours.memory_byte_hours + excluded.memory_byte_hours, \
             net_rx_bytes = metrics_usage_hours.net_rx_bytes + excluded.net_rx_bytes, \
             net_tx_bytes = metrics_usage_hours.net_tx_bytes + excluded.net_tx_bytes, \
             block_read_bytes = metrics_usage_hours.block_read_bytes + excluded.block_read_bytes, \
             block_write_bytes = metrics_usage_hours.block_write_bytes + excluded.block_write_bytes";
        let mut tx = super::begin_write(self.pool).await?;
        if let Some(l) = lease {
            if !super::leases::advance_in(&mut tx, l.name, l.owner, l.now_ms, l.mark_ms).await? {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for m in minutes {
            sqlx::query(&minute_upsert)
                .bind(&m.instance_id)
                .bind(&m.deployment_id)
                .bind(m.minute_ms)
                .bind(m.samples)
                .bind(m.seconds)
                .bind(m.cpu_seconds)
                .bind(m.cpu_percent_max)
                .bind(m.memory_byte_seconds)
                .bind(m.memory_bytes_max)
                .bind(m.memory_limit_bytes)
                .bind(m.net_rx_bytes)
                .bind(m.net_tx_bytes)
                .bind(m.block_read_bytes)
                .bind(m.block_write_bytes)
                .bind(m.pids_max)
                .execute(&mut *tx)
                .await?;
            sqlx::query(hour_upsert)
                .bind(&m.deployment_id)
                .bind(&m.project_id)
                .bind(m.minute_ms - m.minute_ms.rem_euclid(HOUR_MS))
                .bind(m.cpu_seconds)
                .bind(m.memory_byte_seconds / 3600.0)
                .bind(m.net_rx_bytes)
                .bind(m.net_tx_bytes)
                .bind(m.block_read_bytes)
                .bind(m.block_write_bytes)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes minutes that started before `minutes_before_ms` and hours that started
    /// before `hours_before_ms`; returns how many rows of each went.
    pub async fn prune(
        &self,
        minutes_before_ms: i64,
        hours_before_ms: i64,
    ) -> StoreResult<(u64, u64)> {
        let minutes = sqlx::query("DELETE FROM metrics_minutes WHERE minute_ms < $1")
            .bind(minutes_before_ms)
            .execute(self.pool)
            .await?
            .rows_affected();
        let hours = sqlx::query("DELETE FROM metrics_usage_hours WHERE hour_ms < $1")
            .bind(hours_before_ms)
            .execute(self.pool)
            .await?
            .rows_affected();
        Ok((minutes, hours))
    }

    /// The minutes of `deployment_id`'s instances that started in `[from_ms, to_ms)`, oldest
    /// first.
    pub async fn minutes(
        &self,
        deployment_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<MinuteRollup>> {
        let rows = sqlx::query(
            "SELECT instance_id, deployment_id, minute_ms, samples, seconds, cpu_seconds, \
             cpu_percent_max, memory_byte_seconds, memory_bytes_max, memory_limit_bytes, \
             net_rx_bytes, net_tx_bytes, block_read_bytes, block_write_bytes, pids_max \
             FROM metrics_minutes WHERE deployment_id = $1 AND minute_ms >= $2 AND minute_ms < $3 \
             ORDER BY minute_ms, instance_id",
        )
        .bind(deployment_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(minute_from_row).collect::<Result<_, _>>()?)
    }

    /// The hourly rows of `project_id` for hours that started in `[from_ms, to_ms)`, oldest
    /// first.
    pub async fn usage_hours(
        &self,
        project_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<UsageRecord>> {
        let rows = sqlx::query(
            "SELECT deployment_id, hour_ms, CAST(1 AS BIGINT) AS hours, cpu_seconds, memory_byte_hours, \
             net_rx_bytes, net_tx_bytes, block_read_bytes, block_write_bytes \
             FROM metrics_usage_hours WHERE project_id = $1 AND hour_ms >= $2 AND hour_ms < $3 \
             ORDER BY hour_ms, deployment_id",
        )
        .bind(project_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(usage_from_row).collect::<Result<_, _>>()?)
    }

    /// Each deployment's usage of `project_id` over the hours that started in
    /// `[from_ms, to_ms)`, added up (`hour_ms` 0).
    pub async fn usage_totals(
        &self,
        project_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<UsageRecord>> {
        let rows = sqlx::query(
            "SELECT deployment_id, CAST(0 AS BIGINT) AS hour_ms, COUNT(*) AS hours, \
             SUM(cpu_seconds) AS cpu_seconds, SUM(memory_byte_hours) AS memory_byte_hours, \
             CAST(SUM(net_rx_bytes) AS BIGINT) AS net_rx_bytes, \
             CAST(SUM(net_tx_bytes) AS BIGINT) AS net_tx_bytes, \
             CAST(SUM(block_read_bytes) AS BIGINT) AS block_read_bytes, \
             CAST(SUM(block_write_bytes) AS BIGINT) AS block_write_bytes \
             FROM metrics_usage_hours WHERE project_id = $1 AND hour_ms >= $2 AND hour_ms < $3 \
             GROUP BY deployment_id ORDER BY deployment_id",
        )
        .bind(project_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(usage_from_row).collect::<Result<_, _>>()?)
    }
}

fn minute_from_row(row: &AnyRow) -> Result<MinuteRollup, sqlx::Error> {
    Ok(MinuteRollup {
        instance_id: row.try_get("instance_id")?,
        deployment_id: row.try_get("deployment_id")?,
        project_id: String::new(),
        minute_ms: row.try_get("minute_ms")?,
        samples: row.try_get("samples")?,
        seconds: row.try_get("seconds")?,
        cpu_seconds: row.try_get("cpu_seconds")?,
        cpu_percent_max: row.try_get("cpu_percent_max")?,
        memory_byte_seconds: row.try_get("memory_byte_seconds")?,
        memory_bytes_max: row.try_get("memory_bytes_max")?,
        memory_limit_bytes: row.try_get("memory_limit_bytes")?,
        net_rx_bytes: row.try_get("net_rx_bytes")?,
        net_tx_bytes: row.try_get("net_tx_bytes")?,
        block_read_bytes: row.try_get("block_read_bytes")?,
        block_write_bytes: row.try_get("block_write_bytes")?,
        pids_max: row.try_get("pids_max")?,
    })
}

fn usage_from_row(row: &AnyRow) -> Result<UsageRecord, sqlx::Error> {
    Ok(UsageRecord {
        deployment_id: row.try_get("deployment_id")?,
        hour_ms: row.try_get("hour_ms")?,
        hours: row.try_get("hours")?,
        cpu_seconds: row.try_get("cpu_seconds")?,
        memory_byte_hours: row.try_get("memory_byte_hours")?,
        net_rx_bytes: row.try_get("net_rx_bytes")?,
        net_tx_bytes: row.try_get("net_tx_bytes")?,
        block_read_bytes: row.try_get("block_read_bytes")?,
        block_write_bytes: row.try_get("block_write_bytes")?,
    })
}
