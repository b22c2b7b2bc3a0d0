//! Backup schedules, one per deployment: when its backups run (cron, UTC) and how many
//! snapshots retention keeps.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{
    backups::{insert_backup, BackupRecord},
    jobs::NewJob,
    now_ms, touched, StoreResult,
};

/// A stored schedule. `keep_*` are restic's forget rules (0: that rule keeps none; all 0:
/// retention keeps every snapshot). `missed` counts runs that did not happen (Berth was down
/// at the time, or the previous backup was still going).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupScheduleRecord {
    pub deployment_id: String,
    pub project_id: String,
    pub cron: String,
    pub keep_last: i64,
    pub keep_hourly: i64,
    pub keep_daily: i64,
    pub keep_weekly: i64,
    pub keep_monthly: i64,
    pub next_run_at_ms: i64,
    pub last_run_at_ms: Option<i64>,
    pub missed: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl BackupScheduleRecord {
    /// Whether any retention rule is set.
    pub fn has_retention(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
        .iter()
        .any(|k| *k > 0)
    }
}

const COLUMNS: &str = "deployment_id, project_id, cron, keep_last, keep_hourly, keep_daily, \
     keep_weekly, keep_monthly, next_run_at_ms, last_run_at_ms, missed, created_at_ms, \
     updated_at_ms";

fn from_row(row: &AnyRow) -> Result<BackupScheduleRecord, sqlx::Error> {
    Ok(BackupScheduleRecord {
        deployment_id: row.try_get("deployment_id")?,
        project_id: row.try_get("project_id")?,
        cron: row.try_get("cron")?,
        keep_last: row.try_get("keep_last")?,
        keep_hourly: row.try_get("keep_hourly")?,
        keep_daily: row.try_get("keep_daily")?,
        keep_weekly: row.try_get("keep_weekly")?,
        keep_monthly: row.try_get("keep_monthly")?,
        next_run_at_ms: row.try_get("next_run_at_ms")?,
        last_run_at_ms: row.try_get("last_run_at_ms")?,
        missed: row.try_get("missed")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// The backup schedules repository.
pub struct BackupSchedules<'a> {
    pool: &'a AnyPool,
}

impl<'a> BackupSchedules<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    pub async fn get(&self, deployment_id: &str) -> StoreResult<Option<BackupScheduleRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backup_schedules WHERE deployment_id = $1"
        ))
        .bind(deployment_id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Inserts the schedule or replaces the deployment's (its missed count and last run are
    /// kept).
    pub async fn put(&self, s: &BackupScheduleRecord) -> StoreResult<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO backup_schedules (deployment_id, project_id, cron, keep_last, \
             keep_hourly, keep_daily, keep_weekly, keep_monthly, next_run_at_ms, missed, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10) \
             ON CONFLICT (deployment_id) DO UPDATE SET cron = $3, keep_last = $4, \
             keep_hourly = $5, keep_daily = $6, keep_weekly = $7, keep_monthly = $8, \
             next_run_at_ms = $9, updated_at_ms = $10",
        )
        .bind(&s.deployment_id)
        .bind(&s.project_id)
        .bind(&s.cron)
        .bind(s.keep_last)
        .bind(s.keep_hourly)
        .bind(s.keep_daily)
        .bind(s.keep_weekly)
        .bind(s.keep_monthly)
        .bind(s.next_run_at_ms)
        .bind(now)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Removes the deployment's schedule (its backups stay).
    ///
    /// # Errors
    /// `NotFound` when it had none.
    pub async fn delete(&self, deployment_id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM backup_schedules WHERE deployment_id = $1")
                .bind(deployment_id)
                .execute(self.pool)
                .await?,
        )
    }

    /// Schedules whose next run is at or before `now_ms`.
    pub async fn due(&self, now_ms: i64) -> StoreResult<Vec<BackupScheduleRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backup_schedules WHERE next_run_at_ms <= $1 \
             ORDER BY next_run_at_ms"
        ))
        .bind(now_ms)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Claims the due run of `s` by moving its next run from `s.next_run_at_ms` to
    /// `next_run_at_ms` (compare-and-set), adds `missed`, and, when `queue`, queues a
    /// scheduled backup of the deployment with its job, all in one transaction. Returns
    /// whether a backup was queued; `false` also when another controller claimed the run.
    pub async fn fire(
        &self,
        s: &BackupScheduleRecord,
        next_run_at_ms: i64,
        missed: i64,
        queue: bool,
    ) -> StoreResult<bool> {
        let mut tx = super::begin_write(self.pool).await?;
        let now = now_ms();
        let claimed = sqlx::query(
            "UPDATE backup_schedules SET next_run_at_ms = $3, missed = missed + $4, \
             last_run_at_ms = $5 WHERE deployment_id = $1 AND next_run_at_ms = $2",
        )
        .bind(&s.deployment_id)
        .bind(s.next_run_at_ms)
        .bind(next_run_at_ms)
        .bind(missed)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed || !queue {
            tx.commit().await?;
            return Ok(false);
        }
        let row = sqlx::query("SELECT name, current_release_id FROM deployments WHERE id = $1")
            .bind(&s.deployment_id)
            .fetch_one(&mut *tx)
            .await?;
        let volumes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM volumes WHERE deployment_id = $1 ORDER BY name")
                .bind(&s.deployment_id)
                .fetch_all(&mut *tx)
                .await?;
        let backup = BackupRecord {
            id: String::new(),
            project_id: s.project_id.clone(),
            deployment_id: s.deployment_id.clone(),
            deployment_name: row.try_get("name")?,
            release_id: row.try_get("current_release_id")?,
            kind: "volumes".into(),
            trigger_kind: "schedule".into(),
            status: "queued".into(),
            volumes: serde_json::to_string(&volumes)
                .map_err(|e| super::StoreError::Corrupt(e.to_string()))?,
            node_id: None,
            snapshot_id: None,
            files: 0,
            bytes_total: 0,
            bytes_added: 0,
            failure: String::new(),
            job_id: None,
            created_by: None,
            created_at_ms: now,
            started_at_ms: None,
            finished_at_ms: None,
            removed_at_ms: None,
        };
        insert_backup(
            &mut tx,
            &backup,
            NewJob {
                kind: "backup".into(),
                project_id: Some(s.project_id.clone()),
                deployment_id: Some(s.deployment_id.clone()),
                payload: serde_json::json!({"backup_id": "{backup_id}"}).to_string(),
                created_by: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Missed runs summed over the whole installation (for `/metrics`).
    pub async fn missed_total(&self) -> StoreResult<i64> {
        // PostgreSQL sums BIGINT as NUMERIC: cast back.
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(missed), 0) AS BIGINT) FROM backup_schedules",
        )
        .fetch_one(self.pool)
        .await?)
    }
}
