//! The deployments repository: deployments (desired state), their immutable releases and
//! named volumes, plus the installation id that labels everything this Berth creates.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, touched, NewJob, StoreError, StoreResult};

/// A deployment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub replicas: i64,
    /// `running` or `stopped`.
    pub desired_state: String,
    /// A `DeploymentStatus` in its stored form.
    pub status: String,
    pub status_message: String,
    pub current_release_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A release row. `spec` is the JSON of `app::model::DeploymentSpec` with secret env values
/// sealed (`enc:v1:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub id: String,
    pub deployment_id: String,
    pub number: i64,
    pub spec: String,
    pub image_digest: Option<String>,
    /// `pending`, `active`, `failed` or `superseded`.
    pub status: String,
    pub failure_reason: String,
    pub cause: String,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
}

/// A release to add: the repository numbers it.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub spec: String,
    pub image_digest: Option<String>,
    pub cause: String,
    pub created_by: Option<String>,
}

/// Which unique rule a write broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Another deployment of the project has the name.
    DeploymentName,
    /// Another deployment of the project uses the volume name.
    Volume(String),
}

const DEPLOYMENT_COLUMNS: &str = "id, project_id, name, replicas, desired_state, status, \
     status_message, current_release_id, created_at_ms, updated_at_ms";
const RELEASE_COLUMNS: &str = "id, deployment_id, number, spec, image_digest, status, \
     failure_reason, cause, created_by, created_at_ms";

fn deployment_from_row(row: &AnyRow) -> Result<DeploymentRecord, sqlx::Error> {
    Ok(DeploymentRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        replicas: row.try_get("replicas")?,
        desired_state: row.try_get("desired_state")?,
        status: row.try_get("status")?,
        status_message: row.try_get("status_message")?,
        current_release_id: row.try_get("current_release_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn release_from_row(row: &AnyRow) -> Result<ReleaseRecord, sqlx::Error> {
    Ok(ReleaseRecord {
        id: row.try_get("id")?,
        deployment_id: row.try_get("deployment_id")?,
        number: row.try_get("number")?,
        spec: row.try_get("spec")?,
        image_digest: row.try_get("image_digest")?,
        status: row.try_get("status")?,
        failure_reason: row.try_get("failure_reason")?,
        cause: row.try_get("cause")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Reads and writes deployments, releases and volumes.
pub struct Deployments<'a> {
    pool: &'a AnyPool,
}

impl<'a> Deployments<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// This installation's id, created on first call. Every container, network and volume
    /// Berth creates carries it (`berth.installation`), so two installations (or parallel
    /// test runs) on one engine never touch each other's objects.
    ///
    /// # Errors
    /// `Database`.
    pub async fn installation_id(&self) -> StoreResult<String> {
        let existing: Option<String> = sqlx::query_scalar("SELECT id FROM installation LIMIT 1")
            .fetch_optional(self.pool)
            .await?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id = new_id();
        sqlx::query("INSERT INTO installation (id, created_at_ms) VALUES ($1, $2)")
            .bind(&id)
            .bind(now_ms())
            .execute(self.pool)
            .await?;
        let id: String = sqlx::query_scalar("SELECT id FROM installation ORDER BY id LIMIT 1")
            .fetch_one(self.pool)
            .await?;
        Ok(id)
    }

    /// Creates a deployment with its first release, its volumes and the job that rolls it
    /// out (`{release_id}` in its payload is replaced by the release's id), in one
    /// transaction. Returns the deployment, the release and the job id.
    ///
    /// # Errors
    /// `Ok(Err(Taken))` when the name or a volume name is used in the project; `Database`.
    pub async fn create(
        &self,
        project_id: &str,
        name: &str,
        replicas: i64,
        release: NewRelease,
        volumes: &[String],
        job: NewJob,
    ) -> StoreResult<Result<(DeploymentRecord, ReleaseRecord, String), Taken>> {
        let now = now_ms();
        let deployment_id = new_id();
        let mut tx = super::begin_write(self.pool).await?;
        let inserted = sqlx::query(
            "INSERT INTO deployments (id, project_id, name, replicas, desired_state, status, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 'running', 'deploying', $5, $5)",
        )
        .bind(&deployment_id)
        .bind(project_id)
        .bind(name)
        .bind(replicas)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted.map_err(StoreError::from) {
            Err(StoreError::Conflict(_)) => return Ok(Err(Taken::DeploymentName)),
            other => other?,
        };
        if let Err(taken) = add_volumes(&mut tx, project_id, &deployment_id, volumes).await? {
            return Ok(Err(taken));
        }
        let release = insert_release(&mut tx, &deployment_id, release, now).await?;
        let job_id = super::jobs::insert_job(
            &mut tx,
            NewJob {
                deployment_id: Some(deployment_id.clone()),
                payload: job.payload.replace("{release_id}", &release.id),
                ..job
            },
        )
        .await?;
        tx.commit().await?;
        let deployment = self
            .by_id(&deployment_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Ok((deployment, release, job_id)))
    }

    /// Adds a release (numbered after the last one) and the volumes it introduces, and queues
    /// `job` with the release id in its payload placeholder `{release_id}`, in one transaction.
    ///
    /// # Errors
    /// `Ok(Err(Taken::Volume))` when a new volume name is used by another deployment.
    pub async fn add_release(
        &self,
        deployment: &DeploymentRecord,
        release: NewRelease,
        volumes: &[String],
        job: NewJob,
    ) -> StoreResult<Result<(ReleaseRecord, String), Taken>> {
        let mut tx = super::begin_write(self.pool).await?;
        if let Err(taken) =
            add_volumes(&mut tx, &deployment.project_id, &deployment.id, volumes).await?
        {
            return Ok(Err(taken));
        }
        let release = insert_release(&mut tx, &deployment.id, release, now_ms()).await?;
        let job = NewJob {
            payload: job.payload.replace("{release_id}", &release.id),
            ..job
        };
        let job_id = super::jobs::insert_job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(Ok((release, job_id)))
    }

    pub async fn by_id(&self, id: &str) -> StoreResult<Option<DeploymentRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(deployment_from_row).transpose()?)
    }

    /// The project's deployments by name.
    pub async fn for_project(&self, project_id: &str) -> StoreResult<Vec<DeploymentRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE project_id = $1 ORDER BY name"
        ))
        .bind(project_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(deployment_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Every deployment (the reconciler's view).
    pub async fn all(&self) -> StoreResult<Vec<DeploymentRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY id"
        ))
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(deployment_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The spec (JSON) of every deployment's current release, by deployment id.
    pub async fn current_specs(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT r.deployment_id, r.spec FROM releases r \
             JOIN deployments d ON d.current_release_id = r.id",
        )
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("deployment_id")?, r.try_get("spec")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Sets the derived status and its message.
    pub async fn set_status(&self, id: &str, status: &str, message: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployments SET status = $1, status_message = $2, updated_at_ms = $3 \
                 WHERE id = $4",
            )
            .bind(status)
            .bind(message)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Records what the user wants: replicas and `running`/`stopped`.
    pub async fn set_desired(
        &self,
        id: &str,
        replicas: i64,
        desired_state: &str,
    ) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployments SET replicas = $1, desired_state = $2, updated_at_ms = $3 \
                 WHERE id = $4",
            )
            .bind(replicas)
            .bind(desired_state)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Makes `release_id` the current release: it becomes `active`, the previous active one
    /// `superseded`, in one transaction.
    pub async fn activate_release(&self, deployment_id: &str, release_id: &str) -> StoreResult<()> {
        let mut tx = super::begin_write(self.pool).await?;
        sqlx::query(
            "UPDATE releases SET status = 'superseded' WHERE deployment_id = $1 \
             AND status = 'active' AND id <> $2",
        )
        .bind(deployment_id)
        .bind(release_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE releases SET status = 'active', failure_reason = '' WHERE id = $1")
            .bind(release_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE deployments SET current_release_id = $1, updated_at_ms = $2 WHERE id = $3",
        )
        .bind(release_id)
        .bind(now_ms())
        .bind(deployment_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the image a release resolved to, once (a release's image never changes after).
    pub async fn set_release_digest(&self, release_id: &str, digest: &str) -> StoreResult<()> {
        sqlx::query("UPDATE releases SET image_digest = $1 WHERE id = $2 AND image_digest IS NULL")
            .bind(digest)
            .bind(release_id)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Marks a release failed with the reason people will read.
    pub async fn fail_release(&self, release_id: &str, reason: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE releases SET status = 'failed', failure_reason = $1 WHERE id = $2")
                .bind(reason)
                .bind(release_id)
                .execute(self.pool)
                .await?,
        )
    }

    pub async fn release_by_id(&self, id: &str) -> StoreResult<Option<ReleaseRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(release_from_row).transpose()?)
    }

    /// A deployment's releases, newest first.
    pub async fn releases(&self, deployment_id: &str) -> StoreResult<Vec<ReleaseRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE deployment_id = $1 ORDER BY number DESC"
        ))
        .bind(deployment_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(release_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Names of the deployment's volumes.
    pub async fn volumes(&self, deployment_id: &str) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM volumes WHERE deployment_id = $1 ORDER BY name")
                .bind(deployment_id)
                .fetch_all(self.pool)
                .await?,
        )
    }

    /// The deployment's volumes with their generation (0 until a restore replaced one), by
    /// name.
    pub async fn volume_generations(&self, deployment_id: &str) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT name, generation FROM volumes WHERE deployment_id = $1 ORDER BY name",
        )
        .bind(deployment_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("generation")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Switches the named volumes of the deployment to new generations, all in one
    /// transaction.
    ///
    /// # Errors
    /// `NotFound` when a volume is not the deployment's.
    pub async fn set_volume_generations(
        &self,
        deployment_id: &str,
        generations: &[(String, i64)],
    ) -> StoreResult<()> {
        let mut tx = super::begin_write(self.pool).await?;
        for (name, generation) in generations {
            touched(
                sqlx::query(
                    "UPDATE volumes SET generation = $3 WHERE deployment_id = $1 AND name = $2",
                )
                .bind(deployment_id)
                .bind(name)
                .bind(generation)
                .execute(&mut *tx)
                .await?,
            )?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the deployment with its releases, locations and volume records (cascade).
    pub async fn delete(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM deployments WHERE id = $1")
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }
}

/// Locks the deployment's row until the transaction ends, so that transactions numbering its
/// releases or builds (`MAX(number) + 1`) take turns: a no-op update, which takes the row lock
/// on PostgreSQL (read committed would otherwise let two of them read the same maximum) and is
/// already covered by the write lock of `begin_write` on SQLite.
pub(super) async fn lock_deployment(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deployment_id: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE deployments SET updated_at_ms = updated_at_ms WHERE id = $1")
        .bind(deployment_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn insert_release(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deployment_id: &str,
    release: NewRelease,
    now: i64,
) -> StoreResult<ReleaseRecord> {
    lock_deployment(tx, deployment_id).await?;
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(number) FROM releases WHERE deployment_id = $1")
            .bind(deployment_id)
            .fetch_one(&mut **tx)
            .await?;
    let record = ReleaseRecord {
        id: new_id(),
        deployment_id: deployment_id.to_owned(),
        number: last.unwrap_or(0) + 1,
        spec: release.spec,
        image_digest: release.image_digest,
        status: "pending".into(),
        failure_reason: String::new(),
        cause: release.cause,
        created_by: release.created_by,
        created_at_ms: now,
    };
    sqlx::query(
        "INSERT INTO releases (id, deployment_id, number, spec, image_digest, status, cause, \
         created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)",
    )
    .bind(&record.id)
    .bind(deployment_id)
    .bind(record.number)
    .bind(&record.spec)
    .bind(&record.image_digest)
    .bind(&record.cause)
    .bind(&record.created_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(record)
}

/// Records the volume names not yet recorded for this deployment.
pub(super) async fn add_volumes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project_id: &str,
    deployment_id: &str,
    names: &[String],
) -> StoreResult<Result<(), Taken>> {
    for name in names {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT deployment_id FROM volumes WHERE project_id = $1 AND name = $2",
        )
        .bind(project_id)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
        match owner {
            Some(o) if o == deployment_id => continue,
            Some(_) => return Ok(Err(Taken::Volume(name.clone()))),
            None => {}
        }
        let inserted = sqlx::query(
            "INSERT INTO volumes (id, project_id, deployment_id, name, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new_id())
        .bind(project_id)
        .bind(deployment_id)
        .bind(name)
        .bind(now_ms())
        .execute(&mut **tx)
        .await;
        match inserted.map_err(StoreError::from) {
            Err(StoreError::Conflict(_)) => return Ok(Err(Taken::Volume(name.clone()))),
            other => other?,
        };
    }
    Ok(Ok(()))
}
