//! The persisted job queue: jobs are rows; a worker claims one with a lease, records its steps
//! as it goes, and finishes it. Jobs of one deployment run one at a time, oldest first. A job
//! whose lease ran out (its worker died, e.g. `kill -9`) is queued again and re-run from the
//! start; job handlers are idempotent so that is safe.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, touched, StoreResult};

/// A job row. `payload` is handler-specific JSON; `steps` is JSON of
/// `Vec<app::model::JobStep>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub project_id: Option<String>,
    pub deployment_id: Option<String>,
    pub payload: String,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: String,
    pub steps: String,
    pub error: String,
    pub attempts: i64,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A job to queue.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub kind: String,
    pub project_id: Option<String>,
    pub deployment_id: Option<String>,
    pub payload: String,
    pub created_by: Option<String>,
}

const COLUMNS: &str = "id, kind, project_id, deployment_id, payload, status, steps, error, \
     attempts, created_by, created_at_ms, started_at_ms, finished_at_ms";

fn from_row(row: &AnyRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        project_id: row.try_get("project_id")?,
        deployment_id: row.try_get("deployment_id")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        steps: row.try_get("steps")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

pub(super) async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: NewJob,
) -> StoreResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO jobs (id, kind, project_id, deployment_id, payload, status, created_by, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)",
    )
    .bind(&id)
    .bind(&job.kind)
    .bind(&job.project_id)
    .bind(&job.deployment_id)
    .bind(&job.payload)
    .bind(&job.created_by)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Reads and writes jobs.
pub struct Jobs<'a> {
    pool: &'a AnyPool,
}

impl<'a> Jobs<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Queues a job.
    ///
    /// # Errors
    /// `Database`.
    pub async fn enqueue(&self, job: NewJob) -> StoreResult<String> {
        let mut tx = super::begin_write(self.pool).await?;
        let id = insert_job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// `(kind, status, count)` of the jobs that are `queued` or `running`.
    ///
    /// # Errors
    /// `Database`.
    pub async fn depths(&self) -> StoreResult<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT kind, status, COUNT(*) AS n FROM jobs \
             WHERE status IN ('queued', 'running') GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    /// Claims the oldest queued job whose deployment has no running job, for `lease_ms`.
    /// Claiming is a conditional update, so two workers (or controllers) never both win.
    ///
    /// # Errors
    /// `Database`.
    pub async fn claim(&self, owner: &str, lease_ms: i64) -> StoreResult<Option<JobRecord>> {
        for _ in 0..5 {
            let candidate: Option<String> = sqlx::query_scalar(
                "SELECT j.id FROM jobs j WHERE j.status = 'queued' AND NOT EXISTS \
                 (SELECT 1 FROM jobs r WHERE r.status = 'running' \
                  AND r.deployment_id = j.deployment_id) \
                 ORDER BY j.created_at_ms, j.id LIMIT 1",
            )
            .fetch_optional(self.pool)
            .await?;
            let Some(id) = candidate else {
                return Ok(None);
            };
            let now = now_ms();
            let won = sqlx::query(
                "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until_ms = $2, \
                 attempts = attempts + 1, started_at_ms = COALESCE(started_at_ms, $3) \
                 WHERE id = $4 AND status = 'queued'",
            )
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(&id)
            .execute(self.pool)
            .await?
            .rows_affected()
                == 1;
            if won {
                return self.by_id(&id).await;
            }
        }
        Ok(None)
    }

    /// Extends the lease of a running job this worker owns.
    pub async fn renew(&self, id: &str, owner: &str, lease_ms: i64) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE jobs SET lease_until_ms = $1 WHERE id = $2 AND lease_owner = $3 \
                 AND status = 'running'",
            )
            .bind(now_ms() + lease_ms)
            .bind(id)
            .bind(owner)
            .execute(self.pool)
            .await?,
        )
    }

    /// Queues again running jobs whose lease expired (their worker is gone), those held by
    /// `owner`, or, with `all`, every running job (a sole controller starting up: nothing
    /// else can be running them). Returns how many were re-queued.
    pub async fn requeue_abandoned(&self, owner: Option<&str>, all: bool) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until_ms = NULL \
             WHERE status = 'running' AND ($1 = 1 OR lease_until_ms < $2 OR lease_owner = $3)",
        )
        .bind(i64::from(all))
        .bind(now_ms())
        .bind(owner.unwrap_or(""))
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Replaces the recorded steps (JSON).
    pub async fn set_steps(&self, id: &str, steps: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE jobs SET steps = $1 WHERE id = $2")
                .bind(steps)
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }

    /// Ends a job: `succeeded`, or `failed` with `error` written for people.
    pub async fn finish(&self, id: &str, succeeded: bool, error: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE jobs SET status = $1, error = $2, finished_at_ms = $3, \
                 lease_owner = NULL, lease_until_ms = NULL WHERE id = $4",
            )
            .bind(if succeeded { "succeeded" } else { "failed" })
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    pub async fn by_id(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The deployment's latest jobs, newest first.
    pub async fn for_deployment(
        &self,
        deployment_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE deployment_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(deployment_id)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Whether the deployment has a queued or running job.
    pub async fn has_pending(&self, deployment_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE deployment_id = $1 \
             AND status IN ('queued', 'running')",
        )
        .bind(deployment_id)
        .fetch_one(self.pool)
        .await?;
        Ok(n > 0)
    }
}
