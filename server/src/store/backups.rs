//! Backup repositories (one per project), the backups taken into them and the restores made
//! from them. A backup or restore is queued together with its job in one transaction, so a
//! crash never leaves a queued row without the job that runs it.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{
    jobs::{insert_job, NewJob},
    new_id, now_ms, touched, StoreResult,
};

/// A project's backup repository. `password` is sealed (`server::secrets`); `location` is
/// the repository's directory for `kind = "local"` and restic's `s3:<endpoint>/<bucket>/<key
/// prefix>` for `kind = "s3"`, whose settings (with the secret key) are the sealed JSON `s3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRepositoryRecord {
    pub project_id: String,
    pub kind: String,
    pub location: String,
    pub password: String,
    pub s3: Option<String>,
    /// Whether scheduled checks include a restore drill.
    pub restore_drill: bool,
    /// When the next scheduled check is due (epoch ms).
    pub next_check_at_ms: i64,
    pub created_at_ms: i64,
}

/// A backup row. `status`: `queued`, `running`, `succeeded`, `failed`; `kind`: `volumes`;
/// `volumes` is a JSON array of the volume names it holds; `snapshot_id` is the restic
/// snapshot id (64 hex digits) once it succeeded. Byte counts are bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: String,
    pub project_id: String,
    pub deployment_id: String,
    pub deployment_name: String,
    pub release_id: Option<String>,
    pub kind: String,
    pub trigger_kind: String,
    pub status: String,
    pub volumes: String,
    pub node_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub files: i64,
    pub bytes_total: i64,
    pub bytes_added: i64,
    pub failure: String,
    pub job_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// When retention removed its snapshot from the repository.
    pub removed_at_ms: Option<i64>,
}

/// A restore row, with the same statuses as a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRecord {
    pub id: String,
    pub project_id: String,
    pub deployment_id: String,
    pub backup_id: String,
    pub status: String,
    pub files: i64,
    pub bytes_total: i64,
    pub failure: String,
    pub job_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// JSON array of `[backup volume, target volume]` pairs; `[]`: each volume into the
    /// one of the same name.
    pub volume_map: String,
}

/// How a backup ended: the snapshot and its figures, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    Succeeded {
        snapshot_id: String,
        files: i64,
        bytes_total: i64,
        bytes_added: i64,
    },
    Failed(String),
}

pub(super) const BACKUP_COLUMNS: &str =
    "id, project_id, deployment_id, deployment_name, release_id, kind, \
     trigger_kind, status, volumes, node_id, snapshot_id, files, bytes_total, bytes_added, \
     failure, job_id, created_by, created_at_ms, started_at_ms, finished_at_ms, removed_at_ms";

const RESTORE_COLUMNS: &str = "id, project_id, deployment_id, backup_id, status, files, \
     bytes_total, failure, job_id, created_by, created_at_ms, started_at_ms, finished_at_ms, \
     volume_map";

pub(super) fn backup_from_row(row: &AnyRow) -> Result<BackupRecord, sqlx::Error> {
    Ok(BackupRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        deployment_id: row.try_get("deployment_id")?,
        deployment_name: row.try_get("deployment_name")?,
        release_id: row.try_get("release_id")?,
        kind: row.try_get("kind")?,
        trigger_kind: row.try_get("trigger_kind")?,
        status: row.try_get("status")?,
        volumes: row.try_get("volumes")?,
        node_id: row.try_get("node_id")?,
        snapshot_id: row.try_get("snapshot_id")?,
        files: row.try_get("files")?,
        bytes_total: row.try_get("bytes_total")?,
        bytes_added: row.try_get("bytes_added")?,
        failure: row.try_get("failure")?,
        job_id: row.try_get("job_id")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        removed_at_ms: row.try_get("removed_at_ms")?,
    })
}

fn restore_from_row(row: &AnyRow) -> Result<RestoreRecord, sqlx::Error> {
    Ok(RestoreRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        deployment_id: row.try_get("deployment_id")?,
        backup_id: row.try_get("backup_id")?,
        status: row.try_get("status")?,
        files: row.try_get("files")?,
        bytes_total: row.try_get("bytes_total")?,
        failure: row.try_get("failure")?,
        job_id: row.try_get("job_id")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        volume_map: row.try_get("volume_map")?,
    })
}

/// Inserts a queued backup of `b`'s deployment and its job in `tx`; returns the backup's id.
pub(super) async fn insert_backup(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    b: &BackupRecord,
    job: NewJob,
) -> StoreResult<String> {
    let id = new_id();
    let job_id = insert_job(
        tx,
        NewJob {
            payload: job.payload.replace("{backup_id}", &id),
            ..job
        },
    )
    .await?;
    sqlx::query(
        "INSERT INTO backups (id, project_id, deployment_id, deployment_name, release_id, \
         kind, trigger_kind, status, volumes, job_id, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(&b.project_id)
    .bind(&b.deployment_id)
    .bind(&b.deployment_name)
    .bind(&b.release_id)
    .bind(&b.kind)
    .bind(&b.trigger_kind)
    .bind(&b.volumes)
    .bind(&job_id)
    .bind(&b.created_by)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// The backups repository (in the database sense: the rows about backups).
pub struct Backups<'a> {
    pool: &'a AnyPool,
}

impl<'a> Backups<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// The project's backup repository, if one was made.
    pub async fn repository(
        &self,
        project_id: &str,
    ) -> StoreResult<Option<BackupRepositoryRecord>> {
        let row = sqlx::query(
            "SELECT project_id, kind, location, password, s3, restore_drill, next_check_at_ms, \
             created_at_ms FROM backup_repositories WHERE project_id = $1",
        )
        .bind(project_id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row
            .map(|row| -> Result<_, sqlx::Error> {
                Ok(BackupRepositoryRecord {
                    project_id: row.try_get("project_id")?,
                    kind: row.try_get("kind")?,
                    location: row.try_get("location")?,
                    password: row.try_get("password")?,
                    s3: row.try_get("s3")?,
                    restore_drill: super::flag(row.try_get("restore_drill")?),
                    next_check_at_ms: row.try_get("next_check_at_ms")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .transpose()?)
    }

    /// Records `repo` unless the project has a repository already; returns the one that is
    /// recorded (the existing one when two callers race).
    pub async fn ensure_repository(
        &self,
        repo: &BackupRepositoryRecord,
    ) -> StoreResult<BackupRepositoryRecord> {
        sqlx::query(
            "INSERT INTO backup_repositories (project_id, kind, location, password, s3, \
             restore_drill, next_check_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (project_id) DO NOTHING",
        )
        .bind(&repo.project_id)
        .bind(&repo.kind)
        .bind(&repo.location)
        .bind(&repo.password)
        .bind(&repo.s3)
        .bind(i64::from(repo.restore_drill))
        .bind(repo.next_check_at_ms)
        .bind(repo.created_at_ms)
        .execute(self.pool)
        .await?;
        self.repository(&repo.project_id)
            .await?
            .ok_or(super::StoreError::NotFound)
    }

    /// Records a queued backup and its job (`job.payload` may hold `{backup_id}`, replaced by
    /// the new id) in one transaction.
    pub async fn queue_backup(&self, b: &BackupRecord, job: NewJob) -> StoreResult<BackupRecord> {
        let mut tx = super::begin_write(self.pool).await?;
        let id = insert_backup(&mut tx, b, job).await?;
        tx.commit().await?;
        self.backup(&id).await?.ok_or(super::StoreError::NotFound)
    }

    /// Whether the deployment has a backup queued or running.
    /// Whether any backup of the project ever succeeded (its repository was made then).
    pub async fn any_succeeded(&self, project_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backups WHERE project_id = $1 AND status = 'succeeded'",
        )
        .bind(project_id)
        .fetch_one(self.pool)
        .await?;
        Ok(n > 0)
    }

    pub async fn has_unfinished(&self, deployment_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backups WHERE deployment_id = $1 \
             AND status IN ('queued', 'running')",
        )
        .bind(deployment_id)
        .fetch_one(self.pool)
        .await?;
        Ok(n > 0)
    }

    /// `(status, trigger, count)` of every backup recorded, and `(status, count)` of every
    /// restore (for `/metrics`).
    pub async fn counts(&self) -> StoreResult<(Vec<(String, String, i64)>, Vec<(String, i64)>)> {
        let backups = sqlx::query(
            "SELECT status, trigger_kind, COUNT(*) AS n FROM backups \
             GROUP BY status, trigger_kind ORDER BY status, trigger_kind",
        )
        .fetch_all(self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("status")?,
                r.try_get("trigger_kind")?,
                r.try_get("n")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let restores = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM restores GROUP BY status ORDER BY status",
        )
        .fetch_all(self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        Ok((backups, restores))
    }

    /// Marks the backups of these snapshots as removed by retention.
    pub async fn mark_removed(&self, snapshot_ids: &[String]) -> StoreResult<()> {
        let now = now_ms();
        for id in snapshot_ids {
            sqlx::query("UPDATE backups SET removed_at_ms = $2 WHERE snapshot_id = $1")
                .bind(id)
                .bind(now)
                .execute(self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn backup(&self, id: &str) -> StoreResult<Option<BackupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(backup_from_row).transpose()?)
    }

    /// The deployment's backups, newest first, at most `limit`.
    pub async fn backups_for_deployment(
        &self,
        deployment_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<BackupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE deployment_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(deployment_id)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(backup_from_row).collect::<Result<_, _>>()?)
    }

    /// Marks the backup running on `node_id`: of `kind` (`volumes` or `database`), with the
    /// volumes it reads (a JSON array).
    pub async fn start_backup(
        &self,
        id: &str,
        node_id: &str,
        kind: &str,
        volumes: &str,
    ) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE backups SET status = 'running', node_id = $2, volumes = $3, \
                 started_at_ms = $4, failure = '', kind = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(node_id)
            .bind(volumes)
            .bind(now_ms())
            .bind(kind)
            .execute(self.pool)
            .await?,
        )
    }

    /// Records how the backup ended.
    pub async fn finish_backup(&self, id: &str, outcome: &BackupOutcome) -> StoreResult<()> {
        let (status, snapshot, files, total, added, failure) = match outcome {
            BackupOutcome::Succeeded {
                snapshot_id,
                files,
                bytes_total,
                bytes_added,
            } => (
                "succeeded",
                Some(snapshot_id.as_str()),
                *files,
                *bytes_total,
                *bytes_added,
                "",
            ),
            BackupOutcome::Failed(why) => ("failed", None, 0, 0, 0, why.as_str()),
        };
        touched(
            sqlx::query(
                "UPDATE backups SET status = $2, snapshot_id = $3, files = $4, bytes_total = $5, \
                 bytes_added = $6, failure = $7, finished_at_ms = $8 WHERE id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(snapshot)
            .bind(files)
            .bind(total)
            .bind(added)
            .bind(failure)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }

    /// Records a queued restore and its job (`{restore_id}` in the payload is replaced).
    pub async fn queue_restore(
        &self,
        backup: &BackupRecord,
        deployment_id: &str,
        volume_map: &str,
        created_by: Option<String>,
        job: NewJob,
    ) -> StoreResult<RestoreRecord> {
        let mut tx = super::begin_write(self.pool).await?;
        let id = new_id();
        let job_id = insert_job(
            &mut tx,
            NewJob {
                payload: job.payload.replace("{restore_id}", &id),
                ..job
            },
        )
        .await?;
        sqlx::query(
            "INSERT INTO restores (id, project_id, deployment_id, backup_id, status, job_id, \
             created_by, created_at_ms, volume_map) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&backup.project_id)
        .bind(deployment_id)
        .bind(&backup.id)
        .bind(&job_id)
        .bind(&created_by)
        .bind(now_ms())
        .bind(volume_map)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.restore(&id).await?.ok_or(super::StoreError::NotFound)
    }

    pub async fn restore(&self, id: &str) -> StoreResult<Option<RestoreRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RESTORE_COLUMNS} FROM restores WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(restore_from_row).transpose()?)
    }

    /// The deployment's restores, newest first, at most `limit`.
    pub async fn restores_for_deployment(
        &self,
        deployment_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<RestoreRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RESTORE_COLUMNS} FROM restores WHERE deployment_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(deployment_id)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(restore_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn start_restore(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE restores SET status = 'running', started_at_ms = $2, failure = '' \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }

    /// Records how the restore ended: `Ok((files, bytes))` or the failure.
    pub async fn finish_restore(
        &self,
        id: &str,
        outcome: Result<(i64, i64), &str>,
    ) -> StoreResult<()> {
        let (status, files, bytes, failure) = match outcome {
            Ok((files, bytes)) => ("succeeded", files, bytes, ""),
            Err(why) => ("failed", 0, 0, why),
        };
        touched(
            sqlx::query(
                "UPDATE restores SET status = $2, files = $3, bytes_total = $4, failure = $5, \
                 finished_at_ms = $6 WHERE id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(files)
            .bind(bytes)
            .bind(failure)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }
}
