//! `RepositoryService`: a project's backup repository (where it is, its password for stock
//! `restic`), each region's destination for new repositories (admins), and the repository's
//! checks and restore drills. Members may read and check; revealing the password and turning
//! the scheduled drill on or off take a project owner or an admin.

use std::sync::Arc;

use app::{
    model::*,
    services::{RepositoryService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Notify;

use super::{audit, backup_destinations, internal, projects::project_access};
use crate::{
    backups::BackupRunner,
    secrets::SecretBox,
    store::{BackupCheckRecord, BackupRepositoryRecord, Store},
};

/// How many checks a listing shows.
const LIST_LIMIT: i64 = 50;

/// The repository service.
pub struct RepositoriesService {
    store: Store,
    secrets: SecretBox,
    runner: Arc<BackupRunner>,
    wake_workers: Arc<Notify>,
    /// Share of the pack files a check reads, percent (config `backup_check_read_data_percent`).
    read_data_percent: u8,
}

impl RepositoriesService {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        runner: Arc<BackupRunner>,
        wake_workers: Arc<Notify>,
        read_data_percent: u8,
    ) -> Self {
        Self {
            store,
            secrets,
            runner,
            wake_workers,
            read_data_percent,
        }
    }

    /// The project's repository; 404 `backup_repository_not_found` before its first backup
    /// (reads never make one: where it is made is decided at the first backup).
    async fn record(&self, project_id: &str) -> Result<BackupRepositoryRecord, ApiError> {
        self.store
            .backups()
            .repository(project_id)
            .await
            .map_err(internal("read backup repository"))?
            .ok_or_else(|| {
                ApiError::not_found(
                    "backup_repository_not_found",
                    "The project has no backup repository yet: it is made at its first backup.",
                )
            })
    }
}

fn repository_view(record: &BackupRepositoryRecord) -> BackupRepositoryView {
    BackupRepositoryView {
        kind: record.kind.clone(),
        location: record.location.clone(),
        password: None,
        access_key_id: None,
        secret_access_key: None,
        restore_drill: record.restore_drill,
        next_check_at_ms: record.next_check_at_ms,
        created_at_ms: record.created_at_ms,
    }
}

/// The API view of a check row.
pub fn check_view(c: BackupCheckRecord) -> BackupCheckView {
    BackupCheckView {
        id: BackupCheckId(c.id),
        trigger: c.trigger_kind,
        restore_drill: c.restore_drill,
        read_data_percent: c.read_data_percent,
        status: BackupStatus::parse(&c.status),
        snapshots: c.snapshots,
        drill_files: c.drill_files,
        drill_bytes: c.drill_bytes,
        findings: c.findings,
        job_id: c.job_id.map(JobId),
        created_at_ms: c.created_at_ms,
        started_at_ms: c.started_at_ms,
        finished_at_ms: c.finished_at_ms,
    }
}

fn check_not_found() -> ApiError {
    ApiError::not_found(
        "backup_check_not_found",
        "No repository check with this id is visible to you.",
    )
}

#[async_trait]
impl RepositoryService for RepositoriesService {
    async fn backup_repository(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        reveal_password: bool,
    ) -> Result<BackupRepositoryView, ApiError> {
        let access = project_access(&self.store, ctx, project).await?;
        if reveal_password {
            access.require_manage()?;
        }
        let record = self.record(&access.project.id).await?;
        let mut view = repository_view(&record);
        if reveal_password {
            let fail = |e: &dyn std::fmt::Display| {
                tracing::error!(project.id = %access.project.id, error = %e, "cannot open the repository's secrets");
                ApiError::internal()
            };
            view.password = Some(self.secrets.open(&record.password).map_err(|e| fail(&e))?);
            // The S3 keys are the region's, good for every project's repository in the
            // bucket: only admins get them.
            let s3_keys = access.is_admin && record.s3.is_some();
            if s3_keys {
                if let Some(s3) = self.runner.s3_settings(&record).map_err(|e| fail(&e))? {
                    view.access_key_id = Some(s3.destination.access_key_id);
                    view.secret_access_key = Some(s3.destination.secret_access_key);
                }
            }
            audit(
                &self.store,
                ctx,
                None,
                "project.backup_password_revealed",
                format!("project:{}", access.project.id),
                json!({ "s3_keys": s3_keys }),
            )
            .await?;
        }
        Ok(view)
    }

    async fn backup_destination(
        &self,
        ctx: &RequestContext,
        region: &str,
    ) -> Result<BackupDestinationView, ApiError> {
        backup_destinations::get(&self.store, ctx, region).await
    }

    async fn set_backup_destination(
        &self,
        ctx: &RequestContext,
        region: &str,
        destination: S3Destination,
    ) -> Result<BackupDestinationView, ApiError> {
        backup_destinations::set(&self.store, &self.secrets, ctx, region, destination).await
    }

    async fn remove_backup_destination(
        &self,
        ctx: &RequestContext,
        region: &str,
    ) -> Result<BackupDestinationView, ApiError> {
        backup_destinations::remove(&self.store, ctx, region).await
    }

    async fn start_backup_check(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        restore_drill: bool,
    ) -> Result<BackupCheckView, ApiError> {
        let access = project_access(&self.store, ctx, project).await?;
        let project_id = access.project.id.clone();
        self.record(&project_id).await?;
        if self
            .store
            .backup_checks()
            .has_unfinished(&project_id)
            .await
            .map_err(internal("read repository checks"))?
        {
            return Err(ApiError::new(
                409,
                "backup_check_running",
                "A check of this repository is already queued or running; wait for its result.",
            ));
        }
        let check = self
            .store
            .backup_checks()
            .queue(
                &project_id,
                restore_drill,
                i64::from(self.read_data_percent),
                ctx.caller.as_ref().map(|u| u.id.0.clone()),
            )
            .await
            .map_err(internal("queue repository check"))?;
        audit(
            &self.store,
            ctx,
            None,
            "project.backup_check",
            format!("project:{project_id}"),
            json!({"check": check.id, "restore_drill": restore_drill}),
        )
        .await?;
        self.wake_workers.notify_waiters();
        Ok(check_view(check))
    }

    async fn list_backup_checks(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<BackupCheckView>, ApiError> {
        let access = project_access(&self.store, ctx, project).await?;
        let checks = self
            .store
            .backup_checks()
            .list(&access.project.id, LIST_LIMIT)
            .await
            .map_err(internal("list repository checks"))?;
        Ok(checks.into_iter().map(check_view).collect())
    }

    async fn get_backup_check(
        &self,
        ctx: &RequestContext,
        id: &BackupCheckId,
    ) -> Result<BackupCheckView, ApiError> {
        let check = self
            .store
            .backup_checks()
            .get(&id.0)
            .await
            .map_err(internal("read repository check"))?
            .ok_or_else(check_not_found)?;
        project_access(&self.store, ctx, &ProjectId(check.project_id.clone()))
            .await
            .map_err(|_| check_not_found())?;
        Ok(check_view(check))
    }

    async fn set_restore_drill(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        restore_drill: bool,
    ) -> Result<BackupRepositoryView, ApiError> {
        let access = project_access(&self.store, ctx, project).await?;
        access.require_manage()?;
        let project_id = access.project.id.clone();
        self.record(&project_id).await?;
        self.store
            .backup_checks()
            .set_restore_drill(&project_id, restore_drill)
            .await
            .map_err(internal("set restore drill"))?;
        audit(
            &self.store,
            ctx,
            None,
            "project.backup_repository_updated",
            format!("project:{project_id}"),
            json!({"restore_drill": restore_drill}),
        )
        .await?;
        Ok(repository_view(&self.record(&project_id).await?))
    }
}
