//! Checks of backup repositories: restic's `check` with a sample of the data read, and an
//! optional restore drill. Queued with their job in one transaction, by a person or by the
//! repository's schedule (`backup_repositories.next_check_at_ms`, claimed by compare-and-set
//! so each due time queues one check however many controllers poll).

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{
    backups::{backup_from_row, BackupRecord, BACKUP_COLUMNS},
    flag,
    jobs::{insert_job, NewJob},
    new_id, now_ms, touched, StoreResult,
};

/// A check row. `status`: `queued`, `running`, `succeeded`, `failed`; `trigger_kind`:
/// `manual` or `schedule`; `read_data_percent`: the share of pack files read (0–100);
/// `findings`: what was wrong, for people (empty when nothing was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCheckRecord {
    pub id: String,
    pub project_id: String,
    pub trigger_kind: String,
    pub restore_drill: bool,
    pub read_data_percent: i64,
    pub status: String,
    /// Snapshots whose trees were checked.
    pub snapshots: i64,
    /// Files and bytes the drill restored and compared.
    pub drill_files: i64,
    pub drill_bytes: i64,
    pub findings: String,
    pub job_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub ok: bool,
    pub snapshots: i64,
    pub drill_files: i64,
    pub drill_bytes: i64,
    pub findings: String,
}

/// A repository whose scheduled check is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    pub project_id: String,
    pub next_check_at_ms: i64,
    pub restore_drill: bool,
}

const COLUMNS: &str = "id, project_id, trigger_kind, restore_drill, read_data_percent, status, \
     snapshots, drill_files, drill_bytes, findings, job_id, created_by, created_at_ms, \
     started_at_ms, finished_at_ms";

fn from_row(row: &AnyRow) -> Result<BackupCheckRecord, sqlx::Error> {
    Ok(BackupCheckRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        trigger_kind: row.try_get("trigger_kind")?,
        restore_drill: flag(row.try_get("restore_drill")?),
        read_data_percent: row.try_get("read_data_percent")?,
        status: row.try_get("status")?,
        snapshots: row.try_get("snapshots")?,
        drill_files: row.try_get("drill_files")?,
        drill_bytes: row.try_get("drill_bytes")?,
        findings: row.try_get("findings")?,
        job_id: row.try_get("job_id")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

async fn insert_check(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project_id: &str,
    trigger: &str,
    restore_drill: bool,
    read_data_percent: i64,
    created_by: Option<String>,
) -> StoreResult<String> {
    let id = new_id();
    let job_id = insert_job(
        tx,
        NewJob {
            kind: "backup_check".into(),
            project_id: Some(project_id.to_owned()),
            deployment_id: None,
            payload: serde_json::json!({ "check_id": id }).to_string(),
            created_by: created_by.clone(),
        },
    )
    .await?;
    sqlx::query(
        "INSERT INTO backup_checks (id, project_id, trigger_kind, restore_drill, \
         read_data_percent, status, job_id, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8)",
    )
    .bind(&id)
    .bind(project_id)
    .bind(trigger)
    .bind(i64::from(restore_drill))
    .bind(read_data_percent)
    .bind(&job_id)
    .bind(created_by)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

pub struct BackupChecks<'a> {
    pool: &'a AnyPool,
}

impl<'a> BackupChecks<'a> {
    pub fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Queues a check of the project's repository (and its job) now.
    pub async fn queue(
        &self,
        project_id: &str,
        restore_drill: bool,
        read_data_percent: i64,
        created_by: Option<String>,
    ) -> StoreResult<BackupCheckRecord> {
        let mut tx = self.pool.begin().await?;
        let id = insert_check(
            &mut tx,
            project_id,
            "manual",
            restore_drill,
            read_data_percent,
            created_by,
        )
        .await?;
        tx.commit().await?;
        self.get(&id).await?.ok_or(super::StoreError::NotFound)
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<BackupCheckRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backup_checks WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The project's newest checks first, at most `limit`.
    pub async fn list(&self, project_id: &str, limit: i64) -> StoreResult<Vec<BackupCheckRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backup_checks WHERE project_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(project_id)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn start(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE backup_checks SET status = 'running', started_at_ms = $2, findings = '' \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }

    pub async fn finish(&self, id: &str, outcome: &CheckOutcome) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE backup_checks SET status = $2, snapshots = $3, drill_files = $4, \
                 drill_bytes = $5, findings = $6, finished_at_ms = $7 WHERE id = $1",
            )
            .bind(id)
            .bind(if outcome.ok { "succeeded" } else { "failed" })
            .bind(outcome.snapshots)
            .bind(outcome.drill_files)
            .bind(outcome.drill_bytes)
            .bind(&outcome.findings)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }

    /// Repositories whose scheduled check is due at `now_ms`.
    pub async fn due(&self, now_ms: i64) -> StoreResult<Vec<DueCheck>> {
        let rows = sqlx::query(
            "SELECT project_id, next_check_at_ms, restore_drill FROM backup_repositories \
             WHERE next_check_at_ms <= $1 ORDER BY next_check_at_ms",
        )
        .bind(now_ms)
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueCheck {
                    project_id: r.try_get("project_id")?,
                    next_check_at_ms: r.try_get("next_check_at_ms")?,
                    restore_drill: flag(r.try_get("restore_drill")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Claims the due check (moves the repository's next check to `next_ms`, if no one else
    /// did) and queues it, unless one is still queued or running (then only the time moves).
    /// Returns whether a check was queued.
    pub async fn fire(
        &self,
        due: &DueCheck,
        next_ms: i64,
        read_data_percent: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE backup_repositories SET next_check_at_ms = $3 \
             WHERE project_id = $1 AND next_check_at_ms = $2",
        )
        .bind(&due.project_id)
        .bind(due.next_check_at_ms)
        .bind(next_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(false);
        }
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backup_checks WHERE project_id = $1 \
             AND status IN ('queued', 'running')",
        )
        .bind(&due.project_id)
        .fetch_one(&mut *tx)
        .await?;
        if busy == 0 {
            insert_check(
                &mut tx,
                &due.project_id,
                "schedule",
                due.restore_drill,
                read_data_percent,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(busy == 0)
    }

    /// Whether a check of the project's repository is queued or running.
    pub async fn has_unfinished(&self, project_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backup_checks WHERE project_id = $1 \
             AND status IN ('queued', 'running')",
        )
        .bind(project_id)
        .fetch_one(self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Turns the restore drill of the project's scheduled checks on or off.
    pub async fn set_restore_drill(&self, project_id: &str, on: bool) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE backup_repositories SET restore_drill = $2 WHERE project_id = $1")
                .bind(project_id)
                .bind(i64::from(on))
                .execute(self.pool)
                .await?,
        )
    }

    /// Per deployment and kind, the newest backup whose snapshot can still be restored
    /// (what a restore drill restores).
    pub async fn latest_restorable(&self, project_id: &str) -> StoreResult<Vec<BackupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups b WHERE project_id = $1 \
             AND status = 'succeeded' AND snapshot_id IS NOT NULL AND removed_at_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM backups n WHERE n.deployment_id = b.deployment_id \
               AND n.kind = b.kind AND n.status = 'succeeded' AND n.removed_at_ms IS NULL \
               AND (n.created_at_ms > b.created_at_ms \
                    OR (n.created_at_ms = b.created_at_ms AND n.id > b.id))) \
             ORDER BY deployment_name, kind"
        ))
        .bind(project_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(backup_from_row).collect::<Result<_, _>>()?)
    }

    /// `(status, count)` of every check recorded (for `/metrics`).
    pub async fn counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM backup_checks GROUP BY status ORDER BY status",
        )
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
