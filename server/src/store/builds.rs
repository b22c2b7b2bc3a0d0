//! Git sources (one per deployment, with its webhook) and the builds made from them. A build
//! is queued together with its job, and a successful one becomes a release and a deploy job in
//! the same transaction, so a crash never leaves a built image without its release or a
//! release without its rollout.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{
    deployments::{insert_release, NewRelease, ReleaseRecord},
    flag,
    jobs::{insert_job, NewJob},
    new_id, now_ms, touched, StoreResult,
};

/// A stored git source. `https_token` and `webhook_secret` are sealed (`server::secrets`);
/// `build_args` is JSON of `Vec<app::model::BuildArg>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSourceRecord {
    pub deployment_id: String,
    pub repository_url: String,
    pub branch: String,
    pub dockerfile_path: String,
    pub context_dir: String,
    pub build_args: String,
    pub https_token: Option<String>,
    pub webhook_id: String,
    pub webhook_secret: String,
    /// The deploy key's private half in OpenSSH form, sealed; `None` until an ssh URL is set.
    pub ssh_private_key: Option<String>,
    /// The deploy key's public half, `ssh-ed25519 AAAA… berth-<deployment>`.
    pub ssh_public_key: Option<String>,
    /// known_hosts lines of the hosts fetched from over ssh (pinned on first use).
    pub ssh_known_hosts: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A build row. `status`: `queued`, `running`, `succeeded`, `failed`, `cancelled`;
/// `trigger_kind`: `manual` or a provider name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    pub id: String,
    pub deployment_id: String,
    pub number: i64,
    pub status: String,
    pub cancel_requested: bool,
    pub trigger_kind: String,
    pub branch: String,
    pub requested_commit: Option<String>,
    pub commit_sha: Option<String>,
    pub image: Option<String>,
    pub release_id: Option<String>,
    pub failure: String,
    pub job_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A build to queue.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub deployment_id: String,
    pub project_id: String,
    pub trigger_kind: String,
    pub branch: String,
    pub requested_commit: Option<String>,
    pub created_by: Option<String>,
}

const SOURCE_COLUMNS: &str = "deployment_id, repository_url, branch, dockerfile_path, \
     context_dir, build_args, https_token, webhook_id, webhook_secret, ssh_private_key, \
     ssh_public_key, ssh_known_hosts, created_at_ms, updated_at_ms";

const BUILD_COLUMNS: &str = "id, deployment_id, number, status, cancel_requested, trigger_kind, \
     branch, requested_commit, commit_sha, image, release_id, failure, job_id, created_by, \
     created_at_ms, started_at_ms, finished_at_ms";

fn source_from_row(row: &AnyRow) -> Result<GitSourceRecord, sqlx::Error> {
    Ok(GitSourceRecord {
        deployment_id: row.try_get("deployment_id")?,
        repository_url: row.try_get("repository_url")?,
        branch: row.try_get("branch")?,
        dockerfile_path: row.try_get("dockerfile_path")?,
        context_dir: row.try_get("context_dir")?,
        build_args: row.try_get("build_args")?,
        https_token: row.try_get("https_token")?,
        webhook_id: row.try_get("webhook_id")?,
        webhook_secret: row.try_get("webhook_secret")?,
        ssh_private_key: row.try_get("ssh_private_key")?,
        ssh_public_key: row.try_get("ssh_public_key")?,
        ssh_known_hosts: row.try_get("ssh_known_hosts")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn build_from_row(row: &AnyRow) -> Result<BuildRecord, sqlx::Error> {
    Ok(BuildRecord {
        id: row.try_get("id")?,
        deployment_id: row.try_get("deployment_id")?,
        number: row.try_get("number")?,
        status: row.try_get("status")?,
        cancel_requested: flag(row.try_get("cancel_requested")?),
        trigger_kind: row.try_get("trigger_kind")?,
        branch: row.try_get("branch")?,
        requested_commit: row.try_get("requested_commit")?,
        commit_sha: row.try_get("commit_sha")?,
        image: row.try_get("image")?,
        release_id: row.try_get("release_id")?,
        failure: row.try_get("failure")?,
        job_id: row.try_get("job_id")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

/// The git sources and builds repository.
pub struct Builds<'a> {
    pool: &'a AnyPool,
}

impl<'a> Builds<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    pub async fn source(&self, deployment_id: &str) -> StoreResult<Option<GitSourceRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SOURCE_COLUMNS} FROM git_sources WHERE deployment_id = $1"
        ))
        .bind(deployment_id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(source_from_row).transpose()?)
    }

    /// The source whose webhook has this id.
    pub async fn source_by_webhook(
        &self,
        webhook_id: &str,
    ) -> StoreResult<Option<GitSourceRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SOURCE_COLUMNS} FROM git_sources WHERE webhook_id = $1"
        ))
        .bind(webhook_id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(source_from_row).transpose()?)
    }

    /// Inserts the source, or replaces every field of the deployment's existing one (the
    /// caller carries over what is kept, such as the webhook and the token).
    pub async fn put_source(&self, s: &GitSourceRecord) -> StoreResult<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO git_sources (deployment_id, repository_url, branch, dockerfile_path, \
             context_dir, build_args, https_token, webhook_id, webhook_secret, ssh_private_key, \
             ssh_public_key, ssh_known_hosts, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
             ON CONFLICT (deployment_id) DO UPDATE SET repository_url = $2, branch = $3, \
             dockerfile_path = $4, context_dir = $5, build_args = $6, https_token = $7, \
             webhook_id = $8, webhook_secret = $9, ssh_private_key = $10, ssh_public_key = $11, \
             ssh_known_hosts = $12, updated_at_ms = $13",
        )
        .bind(&s.deployment_id)
        .bind(&s.repository_url)
        .bind(&s.branch)
        .bind(&s.dockerfile_path)
        .bind(&s.context_dir)
        .bind(&s.build_args)
        .bind(&s.https_token)
        .bind(&s.webhook_id)
        .bind(&s.webhook_secret)
        .bind(&s.ssh_private_key)
        .bind(&s.ssh_public_key)
        .bind(&s.ssh_known_hosts)
        .bind(now)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Disconnects the deployment from its repository (its builds stay listed).
    ///
    /// # Errors
    /// `NotFound` when it had no source.
    pub async fn delete_source(&self, deployment_id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM git_sources WHERE deployment_id = $1")
                .bind(deployment_id)
                .execute(self.pool)
                .await?,
        )
    }

    /// Pins the host keys seen when fetching over ssh (known_hosts lines).
    ///
    /// # Errors
    /// `NotFound` when the deployment has no source (any more).
    pub async fn set_known_hosts(&self, deployment_id: &str, known_hosts: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE git_sources SET ssh_known_hosts = $2 WHERE deployment_id = $1")
                .bind(deployment_id)
                .bind(known_hosts)
                .execute(self.pool)
                .await?,
        )
    }

    /// Records a build (numbered after the deployment's last) and its job
    /// (`job.payload` may hold `{build_id}`, replaced by the new id) in one transaction.
    pub async fn queue(&self, build: NewBuild, job: NewJob) -> StoreResult<BuildRecord> {
        let mut tx = super::begin_write(self.pool).await?;
        super::deployments::lock_deployment(&mut tx, &build.deployment_id).await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(number) FROM builds WHERE deployment_id = $1")
                .bind(&build.deployment_id)
                .fetch_one(&mut *tx)
                .await?;
        let id = new_id();
        let job_id = insert_job(
            &mut tx,
            NewJob {
                payload: job.payload.replace("{build_id}", &id),
                ..job
            },
        )
        .await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO builds (id, deployment_id, number, status, trigger_kind, branch, \
             requested_commit, job_id, created_by, created_at_ms) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&build.deployment_id)
        .bind(last.unwrap_or(0) + 1)
        .bind(&build.trigger_kind)
        .bind(&build.branch)
        .bind(&build.requested_commit)
        .bind(&job_id)
        .bind(&build.created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.by_id(&id).await?.ok_or(super::StoreError::NotFound)
    }

    pub async fn by_id(&self, id: &str) -> StoreResult<Option<BuildRecord>> {
        let row = sqlx::query(&format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(build_from_row).transpose()?)
    }

    /// The deployment's builds, newest first, at most `limit`.
    pub async fn for_deployment(
        &self,
        deployment_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<BuildRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE deployment_id = $1 \
             ORDER BY number DESC LIMIT $2"
        ))
        .bind(deployment_id)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(build_from_row).collect::<Result<_, _>>()?)
    }

    /// The build's log so far.
    pub async fn log(&self, id: &str) -> StoreResult<String> {
        Ok(sqlx::query_scalar("SELECT log FROM builds WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool)
            .await?
            .unwrap_or_default())
    }

    /// Marks the build running (again, after a crash: its log starts over).
    pub async fn start(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE builds SET status = 'running', started_at_ms = $2, log = '', \
                 failure = '' WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }

    /// Records the commit fetched and the image tag it will get.
    pub async fn set_commit(&self, id: &str, commit_sha: &str, image: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE builds SET commit_sha = $2, image = $3 WHERE id = $1")
                .bind(id)
                .bind(commit_sha)
                .bind(image)
                .execute(self.pool)
                .await?,
        )
    }

    /// Replaces the stored log (the builder keeps the whole, capped, log in memory).
    pub async fn set_log(&self, id: &str, log: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE builds SET log = $2 WHERE id = $1")
                .bind(id)
                .bind(log)
                .execute(self.pool)
                .await?,
        )
    }

    /// Ends a build that did not become a release: `failed` or `cancelled`, with the reason.
    pub async fn finish(
        &self,
        id: &str,
        status: &str,
        failure: &str,
        log: &str,
    ) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE builds SET status = $2, failure = $3, log = $4, finished_at_ms = $5 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(failure)
            .bind(log)
            .bind(now_ms())
            .execute(self.pool)
            .await?,
        )
    }

    /// Ends a build as `succeeded` and records its release and the release's rollout job
    /// (`job.payload` may hold `{release_id}`), all in one transaction.
    pub async fn succeed(
        &self,
        id: &str,
        log: &str,
        release: NewRelease,
        job: NewJob,
    ) -> StoreResult<(ReleaseRecord, String)> {
        let deployment_id: String =
            sqlx::query_scalar("SELECT deployment_id FROM builds WHERE id = $1")
                .bind(id)
                .fetch_one(self.pool)
                .await?;
        let mut tx = super::begin_write(self.pool).await?;
        let now = now_ms();
        let release = insert_release(&mut tx, &deployment_id, release, now).await?;
        let job_id = insert_job(
            &mut tx,
            NewJob {
                payload: job.payload.replace("{release_id}", &release.id),
                ..job
            },
        )
        .await?;
        sqlx::query(
            "UPDATE builds SET status = 'succeeded', release_id = $2, log = $3, failure = '', \
             finished_at_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(&release.id)
        .bind(log)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((release, job_id))
    }

    /// Asks a build to stop. A queued build is cancelled at once; a running one is marked and
    /// its builder stops at its next check. Returns the status after the call.
    ///
    /// # Errors
    /// `NotFound` for an unknown build.
    pub async fn cancel(&self, id: &str) -> StoreResult<String> {
        sqlx::query(
            "UPDATE builds SET status = 'cancelled', failure = 'cancelled before it started', \
             finished_at_ms = $2 WHERE id = $1 AND status = 'queued'",
        )
        .bind(id)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        sqlx::query("UPDATE builds SET cancel_requested = 1 WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(self.pool)
            .await?;
        sqlx::query_scalar("SELECT status FROM builds WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool)
            .await?
            .ok_or(super::StoreError::NotFound)
    }

    /// Whether someone asked the build to stop.
    pub async fn cancel_requested(&self, id: &str) -> StoreResult<bool> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT cancel_requested FROM builds WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool)
                .await?;
        Ok(v.is_some_and(flag))
    }
}
