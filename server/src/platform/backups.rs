//! `BackupService`: backups of deployments' volumes and restores, with the same authorization
//! as deployments (the caller must see the deployment's project); revealing the repository
//! password takes a project owner or an admin. Backups and restores run as jobs
//! (`backups::BackupRunner`).

use std::sync::Arc;

use app::{
    model::*,
    services::{BackupService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Notify;

use super::{audit, deployments::visible_deployment, internal, projects::project_access};
use crate::{
    backups::{schedule, BackupError, BackupRunner},
    store::{BackupRecord, BackupScheduleRecord, DeploymentRecord, NewJob, RestoreRecord, Store},
};

/// How many backups or restores a listing shows.
const LIST_LIMIT: i64 = 100;

/// The backup service.
pub struct BackupsService {
    store: Store,
    runner: Arc<BackupRunner>,
    wake_workers: Arc<Notify>,
}

fn backup_not_found() -> ApiError {
    ApiError::not_found(
        "backup_not_found",
        "No backup with this id is visible to you.",
    )
}

fn invalid_target(message: impl Into<String>) -> ApiError {
    ApiError::invalid_field("target_deployment_id", "invalid_restore_target", message)
}

fn restore_not_found() -> ApiError {
    ApiError::not_found(
        "restore_not_found",
        "No restore with this id is visible to you.",
    )
}

/// Volume names for a message: `'a', 'b'`, or `no volumes`.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        return "no volumes".into();
    }
    list.iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The API view of a backup row.
pub fn backup_view(b: BackupRecord) -> BackupView {
    BackupView {
        id: BackupId(b.id),
        deployment_id: DeploymentId(b.deployment_id),
        deployment_name: b.deployment_name,
        release_id: b.release_id.map(ReleaseId),
        kind: b.kind,
        trigger: b.trigger_kind,
        status: BackupStatus::parse(&b.status),
        volumes: serde_json::from_str(&b.volumes).unwrap_or_default(),
        snapshot_id: b.snapshot_id,
        files: b.files,
        bytes_total: b.bytes_total,
        bytes_added: b.bytes_added,
        failure: b.failure,
        progress: String::new(),
        job_id: b.job_id.map(JobId),
        created_at_ms: b.created_at_ms,
        started_at_ms: b.started_at_ms,
        finished_at_ms: b.finished_at_ms,
        removed_at_ms: b.removed_at_ms,
    }
}

/// The API view of a schedule row.
pub fn schedule_view(s: BackupScheduleRecord) -> BackupScheduleView {
    let keep = |n: i64| u32::try_from(n).unwrap_or(0);
    BackupScheduleView {
        deployment_id: DeploymentId(s.deployment_id),
        policy: BackupPolicy {
            cron: s.cron,
            keep_last: keep(s.keep_last),
            keep_hourly: keep(s.keep_hourly),
            keep_daily: keep(s.keep_daily),
            keep_weekly: keep(s.keep_weekly),
            keep_monthly: keep(s.keep_monthly),
        },
        next_run_at_ms: s.next_run_at_ms,
        last_run_at_ms: s.last_run_at_ms,
        missed: s.missed,
    }
}

/// The API view of a restore row.
pub fn restore_view(r: RestoreRecord) -> RestoreView {
    RestoreView {
        id: RestoreId(r.id),
        deployment_id: DeploymentId(r.deployment_id),
        backup_id: BackupId(r.backup_id),
        status: BackupStatus::parse(&r.status),
        files: r.files,
        bytes_total: r.bytes_total,
        failure: r.failure,
        job_id: r.job_id.map(JobId),
        created_at_ms: r.created_at_ms,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.finished_at_ms,
    }
}

fn refuse_deleting(d: &DeploymentRecord) -> Result<(), ApiError> {
    if d.status == DeploymentStatus::Deleting.as_str() {
        return Err(ApiError::new(
            409,
            "deployment_deleting",
            "The deployment is being deleted.",
        ));
    }
    Ok(())
}

/// The API error of a failed listing or download: what the caller can fix says so, the
/// rest is logged and opaque.
pub fn file_error(b: &BackupRecord, e: BackupError) -> ApiError {
    match e {
        BackupError::Unsafe(why) | BackupError::WrongKind(why) => {
            ApiError::invalid_field("path", "invalid_path", why)
        }
        BackupError::Invalid(why) => ApiError::new(409, "backup_not_readable", why),
        BackupError::Repository(why) if why.contains("not found") || why.contains("No such") => {
            ApiError::not_found("path_not_found", "No such path in this backup.")
        }
        other => {
            tracing::error!(backup.id = %b.id, error = %other, "cannot read a backup");
            ApiError::new(
                500,
                "backup_unreadable",
                "The backup's repository could not be read; an admin can see why in the log.",
            )
        }
    }
}

impl BackupsService {
    pub fn new(store: Store, runner: Arc<BackupRunner>, wake_workers: Arc<Notify>) -> Self {
        Self {
            store,
            runner,
            wake_workers,
        }
    }

    /// Which of the backup's volumes goes into which of the target's, as the JSON stored on
    /// the restore (`[]`: each into the volume of the same name, the backup's own deployment).
    ///
    /// # Errors
    /// 400 `invalid_restore_target` naming the volumes that do not match.
    async fn volume_map(
        &self,
        b: &BackupRecord,
        d: &DeploymentRecord,
        request: &RestoreRequest,
    ) -> Result<String, ApiError> {
        if b.kind == "database" || (d.id == b.deployment_id && request.volumes.is_empty()) {
            return Ok("[]".into());
        }
        let held: Vec<String> = serde_json::from_str(&b.volumes).unwrap_or_default();
        let targets: Vec<String> = self
            .store
            .deployments()
            .volume_generations(&d.id)
            .await
            .map_err(internal("read volumes"))?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let pairs: Vec<(String, String)> = if !request.volumes.is_empty() {
            request.volumes.clone().into_iter().collect()
        } else if held.len() == 1 && targets.len() == 1 {
            vec![(held[0].clone(), targets[0].clone())]
        } else {
            return Err(invalid_target(format!(
                "The backup holds {} and '{}' has {}: say which goes where in `volumes` \
                 (backup volume -> target volume).",
                names(&held),
                d.name,
                names(&targets)
            )));
        };
        let mut used = std::collections::HashSet::new();
        for (from, into) in &pairs {
            if !held.contains(from) {
                return Err(invalid_target(format!(
                    "The backup has no volume '{from}'; it holds {}.",
                    names(&held)
                )));
            }
            if !targets.contains(into) || !used.insert(into) {
                return Err(invalid_target(format!(
                    "'{into}' is not a volume of '{}' (or is named twice); it has {}.",
                    d.name,
                    names(&targets)
                )));
            }
        }
        Ok(serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into()))
    }

    /// The view of `b`, with its job's current message while it runs.
    async fn view(&self, b: BackupRecord) -> BackupView {
        let job_id = (b.status == "running").then(|| b.job_id.clone()).flatten();
        let mut view = backup_view(b);
        if let Some(job_id) = job_id {
            if let Ok(Some(job)) = self.store.jobs().by_id(&job_id).await {
                let steps: Vec<JobStep> = serde_json::from_str(&job.steps).unwrap_or_default();
                if let Some(step) = steps.last() {
                    view.progress = format!("{}: {}", step.name, step.message);
                }
            }
        }
        view
    }

    /// The backup, when the caller may see its project (404 otherwise, so ids cannot be
    /// probed). A backup outlives its deployment, so this goes by the project.
    async fn visible_backup(
        &self,
        ctx: &RequestContext,
        id: &BackupId,
    ) -> Result<BackupRecord, ApiError> {
        ctx.user()?;
        let b = self
            .store
            .backups()
            .backup(&id.0)
            .await
            .map_err(internal("load backup"))?
            .ok_or_else(backup_not_found)?;
        project_access(&self.store, ctx, &ProjectId(b.project_id.clone()))
            .await
            .map_err(|e| {
                if e.status == 404 {
                    backup_not_found()
                } else {
                    e
                }
            })?;
        Ok(b)
    }
}

#[async_trait]
impl BackupService for BackupsService {
    async fn create_backup(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<BackupView, ApiError> {
        let d = visible_deployment(&self.store, ctx, deployment).await?;
        refuse_deleting(&d)?;
        let volumes = self
            .store
            .deployments()
            .volumes(&d.id)
            .await
            .map_err(internal("load volumes"))?;
        let is_database = match &d.current_release_id {
            Some(release) => self
                .store
                .deployments()
                .release_by_id(release)
                .await
                .map_err(internal("load release"))?
                .and_then(|r| serde_json::from_str::<DeploymentSpec>(&r.spec).ok())
                .is_some_and(|spec| spec.database.is_some()),
            None => false,
        };
        if volumes.is_empty() && !is_database {
            return Err(ApiError::new(
                400,
                "no_volumes",
                "This deployment has no named volumes to back up and is not marked as a database. Add a volume (or its database settings) to its spec first.",
            ));
        }
        let caller = ctx.caller.as_ref().map(|u| u.id.0.clone());
        let record = BackupRecord {
            id: String::new(),
            project_id: d.project_id.clone(),
            deployment_id: d.id.clone(),
            deployment_name: d.name.clone(),
            release_id: d.current_release_id.clone(),
            kind: if is_database { "database" } else { "volumes" }.into(),
            trigger_kind: "manual".into(),
            status: "queued".into(),
            volumes: serde_json::to_string(&volumes).map_err(|_| ApiError::internal())?,
            node_id: None,
            snapshot_id: None,
            files: 0,
            bytes_total: 0,
            bytes_added: 0,
            failure: String::new(),
            job_id: None,
            created_by: caller.clone(),
            created_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
            removed_at_ms: None,
        };
        let backup = self
            .store
            .backups()
            .queue_backup(
                &record,
                NewJob {
                    kind: "backup".into(),
                    project_id: Some(d.project_id.clone()),
                    deployment_id: Some(d.id.clone()),
                    payload: json!({"backup_id": "{backup_id}"}).to_string(),
                    created_by: caller,
                },
            )
            .await
            .map_err(internal("queue backup"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.backup",
            format!("deployment:{}", d.id),
            json!({"backup": backup.id, "volumes": volumes}),
        )
        .await?;
        self.wake_workers.notify_waiters();
        Ok(backup_view(backup))
    }

    async fn list_backups(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<BackupView>, ApiError> {
        let d = visible_deployment(&self.store, ctx, deployment).await?;
        let rows = self
            .store
            .backups()
            .backups_for_deployment(&d.id, LIST_LIMIT)
            .await
            .map_err(internal("list backups"))?;
        let mut views = Vec::with_capacity(rows.len());
        for b in rows {
            views.push(self.view(b).await);
        }
        Ok(views)
    }

    async fn get_backup(
        &self,
        ctx: &RequestContext,
        id: &BackupId,
    ) -> Result<BackupView, ApiError> {
        let b = self.visible_backup(ctx, id).await?;
        Ok(self.view(b).await)
    }

    async fn restore_backup(
        &self,
        ctx: &RequestContext,
        id: &BackupId,
        request: RestoreRequest,
    ) -> Result<RestoreView, ApiError> {
        let b = self.visible_backup(ctx, id).await?;
        if b.removed_at_ms.is_some() {
            return Err(ApiError::new(
                409,
                "backup_not_restorable",
                "Retention removed this backup's snapshot.",
            ));
        }
        if b.status != "succeeded" || b.snapshot_id.is_none() {
            return Err(ApiError::new(
                409,
                "backup_not_restorable",
                "Only a backup that succeeded can be restored.",
            ));
        }
        let target = request
            .target_deployment_id
            .clone()
            .unwrap_or_else(|| DeploymentId(b.deployment_id.clone()));
        let d = visible_deployment(&self.store, ctx, &target)
            .await
            .map_err(|e| match (e.status, target.0 == b.deployment_id) {
                (404, true) => ApiError::new(
                    409,
                    "deployment_gone",
                    "The backup's deployment no longer exists: restore it into another deployment of the project.",
                ),
                (404, false) => invalid_target("No deployment with this id is visible to you."),
                _ => e,
            })?;
        if d.project_id != b.project_id {
            return Err(invalid_target(
                "A backup is restored into a deployment of its own project.",
            ));
        }
        let volume_map = self.volume_map(&b, &d, &request).await?;
        refuse_deleting(&d)?;
        let caller = ctx.caller.as_ref().map(|u| u.id.0.clone());
        let restore = self
            .store
            .backups()
            .queue_restore(
                &b,
                &d.id,
                &volume_map,
                caller.clone(),
                NewJob {
                    kind: "restore".into(),
                    project_id: Some(d.project_id.clone()),
                    deployment_id: Some(d.id.clone()),
                    payload: json!({"restore_id": "{restore_id}"}).to_string(),
                    created_by: caller,
                },
            )
            .await
            .map_err(internal("queue restore"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.restore",
            format!("deployment:{}", d.id),
            json!({"restore": restore.id, "backup": b.id, "snapshot": b.snapshot_id,
                   "from_deployment": b.deployment_id, "volume_map": volume_map}),
        )
        .await?;
        self.wake_workers.notify_waiters();
        Ok(restore_view(restore))
    }

    async fn list_backup_files(
        &self,
        ctx: &RequestContext,
        id: &BackupId,
        path: &str,
    ) -> Result<Vec<SnapshotEntry>, ApiError> {
        let b = self.visible_backup(ctx, id).await?;
        self.runner
            .list_files(&b, path)
            .await
            .map_err(|e| file_error(&b, e))
    }

    async fn get_restore(
        &self,
        ctx: &RequestContext,
        id: &RestoreId,
    ) -> Result<RestoreView, ApiError> {
        ctx.user()?;
        let r = self
            .store
            .backups()
            .restore(&id.0)
            .await
            .map_err(internal("load restore"))?
            .ok_or_else(restore_not_found)?;
        visible_deployment(&self.store, ctx, &DeploymentId(r.deployment_id.clone()))
            .await
            .map_err(|e| {
                if e.status == 404 {
                    restore_not_found()
                } else {
                    e
                }
            })?;
        Ok(restore_view(r))
    }

    async fn list_restores(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<RestoreView>, ApiError> {
        let d = visible_deployment(&self.store, ctx, deployment).await?;
        Ok(self
            .store
            .backups()
            .restores_for_deployment(&d.id, LIST_LIMIT)
            .await
            .map_err(internal("list restores"))?
            .into_iter()
            .map(restore_view)
            .collect())
    }

    async fn get_backup_schedule(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Option<BackupScheduleView>, ApiError> {
        let d = visible_deployment(&self.store, ctx, deployment).await?;
        Ok(self
            .store
            .backup_schedules()
            .get(&d.id)
            .await
            .map_err(internal("load backup schedule"))?
            .map(schedule_view))
    }

    async fn set_backup_schedule(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
        mut policy: BackupPolicy,
    ) -> Result<BackupScheduleView, ApiError> {
        let d = visible_deployment(&self.store, ctx, deployment).await?;
        refuse_deleting(&d)?;
        policy.cron = policy.cron.trim().to_owned();
        let cron = schedule::parse_cron(&policy.cron)
            .map_err(|why| ApiError::invalid_field("cron", "invalid_cron", why))?;
        policy.validate_retention()?;
        let next_run_at_ms =
            schedule::next_run_ms(&cron, crate::store::now_ms()).ok_or_else(|| {
                ApiError::invalid_field("cron", "invalid_cron", "It never runs again.")
            })?;
        let record = BackupScheduleRecord {
            deployment_id: d.id.clone(),
            project_id: d.project_id.clone(),
            cron: policy.cron.clone(),
            keep_last: i64::from(policy.keep_last),
            keep_hourly: i64::from(policy.keep_hourly),
            keep_daily: i64::from(policy.keep_daily),
            keep_weekly: i64::from(policy.keep_weekly),
            keep_monthly: i64::from(policy.keep_monthly),
            next_run_at_ms,
            last_run_at_ms: None,
            missed: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        self.store
            .backup_schedules()
            .put(&record)
            .await
            .map_err(internal("save backup schedule"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.backup_schedule",
            format!("deployment:{}", d.id),
            serde_json::to_value(&policy).unwrap_or_default(),
        )
        .await?;
        self.get_backup_schedule(ctx, deployment)
            .await?
            .ok_or_else(ApiError::internal)
    }

    async fn remove_backup_schedule(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<(), ApiError> {
        let d = visible_deployment(&self.store, ctx, deployment).await?;
        match self.store.backup_schedules().delete(&d.id).await {
            Ok(()) => {}
            Err(crate::store::StoreError::NotFound) => {
                return Err(ApiError::not_found(
                    "backup_schedule_not_found",
                    "This deployment has no backup schedule.",
                ))
            }
            Err(e) => return Err(internal("remove backup schedule")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "deployment.backup_schedule_removed",
            format!("deployment:{}", d.id),
            json!({}),
        )
        .await
    }
}
