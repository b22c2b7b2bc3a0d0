//! Server functions for backups, restores, schedules and the backup repository (the service
//! checks who may touch which deployment and project). Forms post plain text fields.

use leptos::prelude::*;

use crate::model::*;

/// "Back up now".
#[server(prefix = "/rpc", endpoint = "start_backup")]
pub async fn start_backup(id: String) -> Result<BackupView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .backups
        .create_backup(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// The deployment's backups, newest first.
#[server(prefix = "/rpc", endpoint = "list_backups")]
pub async fn list_backups(id: String) -> Result<Vec<BackupView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .backups
        .list_backups(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// The deployment's restores, newest first.
#[server(prefix = "/rpc", endpoint = "list_restores")]
pub async fn list_restores(id: String) -> Result<Vec<RestoreView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .backups
        .list_restores(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Restores a backup into its deployment, or into the `target` deployment of the project
/// (empty: its own) with `volumes` as `backup=target` pairs (`data=data-copy, logs=logs2`;
/// may be empty when each side has one volume); the form must tick `confirm`.
#[server(prefix = "/rpc", endpoint = "restore_backup")]
pub async fn restore_backup(
    backup_id: String,
    confirm: Option<String>,
    #[server(default)] target: Option<String>,
    #[server(default)] volumes: Option<String>,
) -> Result<RestoreView, ApiError> {
    let (services, ctx) = super::context()?;
    if confirm.is_none() {
        return Err(ApiError::invalid_field(
            "confirm",
            "confirmation_required",
            "Tick the box: the volumes' current contents are replaced.",
        ))
        .map_err(super::tag(&ctx));
    }
    let mut request = RestoreRequest {
        target_deployment_id: target
            .filter(|t| !t.trim().is_empty())
            .map(|t| DeploymentId(t.trim().to_owned())),
        ..RestoreRequest::default()
    };
    for pair in volumes
        .unwrap_or_default()
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((from, into)) = pair.split_once('=') else {
            return Err(ApiError::invalid_field(
                "volumes",
                "invalid_restore_target",
                format!("'{pair}' is not accepted: write backup-volume=target-volume pairs, separated by commas."),
            ))
            .map_err(super::tag(&ctx));
        };
        request
            .volumes
            .insert(from.trim().to_owned(), into.trim().to_owned());
    }
    services
        .backups
        .restore_backup(&ctx, &BackupId(backup_id), request)
        .await
        .map_err(super::tag(&ctx))
}

/// The deployment's backup schedule, if any.
#[server(prefix = "/rpc", endpoint = "load_backup_schedule")]
pub async fn load_backup_schedule(id: String) -> Result<Option<BackupScheduleView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .backups
        .get_backup_schedule(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Parses a retention field of the form: empty is 0.
#[cfg(feature = "ssr")]
fn keep(field: &str, text: &str) -> Result<u32, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse().map_err(|_| {
        ApiError::invalid_field(
            field,
            "invalid_retention",
            format!("'{text}' is not a whole number from 0 to {KEEP_MAX}."),
        )
    })
}

/// Saves the schedule form.
#[server(prefix = "/rpc", endpoint = "save_backup_schedule")]
pub async fn save_backup_schedule(
    id: String,
    cron: String,
    keep_last: String,
    keep_hourly: String,
    keep_daily: String,
    keep_weekly: String,
    keep_monthly: String,
) -> Result<BackupScheduleView, ApiError> {
    let (services, ctx) = super::context()?;
    let policy = (|| {
        Ok::<_, ApiError>(BackupPolicy {
            cron,
            keep_last: keep("keep_last", &keep_last)?,
            keep_hourly: keep("keep_hourly", &keep_hourly)?,
            keep_daily: keep("keep_daily", &keep_daily)?,
            keep_weekly: keep("keep_weekly", &keep_weekly)?,
            keep_monthly: keep("keep_monthly", &keep_monthly)?,
        })
    })()
    .map_err(super::tag(&ctx))?;
    services
        .backups
        .set_backup_schedule(&ctx, &DeploymentId(id), policy)
        .await
        .map_err(super::tag(&ctx))
}

/// Removes the schedule.
#[server(prefix = "/rpc", endpoint = "remove_backup_schedule")]
pub async fn remove_backup_schedule(id: String) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .backups
        .remove_backup_schedule(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// The repository of the deployment's project with its password, for stock `restic`
/// (project owners and admins; recorded in the audit log).
#[server(prefix = "/rpc", endpoint = "reveal_backup_repository")]
pub async fn reveal_backup_repository(id: String) -> Result<BackupRepositoryView, ApiError> {
    let (services, ctx) = super::context()?;
    let detail = services
        .deployments
        .get_deployment(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))?;
    services
        .repositories
        .backup_repository(&ctx, &detail.deployment.project_id, true)
        .await
        .map_err(super::tag(&ctx))
}

/// The entries of a directory of a backup's snapshot.
#[server(prefix = "/rpc", endpoint = "list_backup_files")]
pub async fn list_backup_files(
    backup_id: String,
    path: String,
) -> Result<Vec<SnapshotEntry>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .backups
        .list_backup_files(&ctx, &BackupId(backup_id), &path)
        .await
        .map_err(super::tag(&ctx))
}

/// Admins: a region's backup destination (`local` unless an S3 bucket is set).
#[server(prefix = "/rpc", endpoint = "backup_destination")]
pub async fn backup_destination(region: String) -> Result<BackupDestinationView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .repositories
        .backup_destination(&ctx, &region)
        .await
        .map_err(super::tag(&ctx))
}

/// Admins: keep the region's new backup repositories in an S3-compatible bucket.
#[server(prefix = "/rpc", endpoint = "set_backup_destination")]
pub async fn set_backup_destination(
    region: String,
    endpoint: String,
    bucket: String,
    s3_region: String,
    prefix: String,
    access_key_id: String,
    secret_access_key: String,
) -> Result<BackupDestinationView, ApiError> {
    let (services, ctx) = super::context()?;
    let destination = S3Destination {
        endpoint,
        bucket,
        region: s3_region,
        prefix,
        access_key_id,
        secret_access_key,
    };
    services
        .repositories
        .set_backup_destination(&ctx, &region, destination)
        .await
        .map_err(super::tag(&ctx))
}

/// Admins: back to local directories for the region's new backup repositories.
#[server(prefix = "/rpc", endpoint = "remove_backup_destination")]
pub async fn remove_backup_destination(region: String) -> Result<BackupDestinationView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .repositories
        .remove_backup_destination(&ctx, &region)
        .await
        .map_err(super::tag(&ctx))
}

/// The project of deployment `id` (the caller must see the deployment).
#[cfg(feature = "ssr")]
async fn project_of(
    services: &crate::services::Services,
    ctx: &crate::services::RequestContext,
    id: String,
) -> Result<ProjectId, ApiError> {
    services
        .deployments
        .get_deployment(ctx, &DeploymentId(id))
        .await
        .map(|d| d.deployment.project_id)
}

/// The repository of the deployment's project (without its password): where it is, the
/// next scheduled check, whether checks include a restore drill.
#[server(prefix = "/rpc", endpoint = "load_backup_repository")]
pub async fn load_backup_repository(id: String) -> Result<BackupRepositoryView, ApiError> {
    let (services, ctx) = super::context()?;
    let project = project_of(&services, &ctx, id)
        .await
        .map_err(super::tag(&ctx))?;
    services
        .repositories
        .backup_repository(&ctx, &project, false)
        .await
        .map_err(super::tag(&ctx))
}

/// The checks of the deployment's project's repository, newest first.
#[server(prefix = "/rpc", endpoint = "list_backup_checks")]
pub async fn list_backup_checks(id: String) -> Result<Vec<BackupCheckView>, ApiError> {
    let (services, ctx) = super::context()?;
    let project = project_of(&services, &ctx, id)
        .await
        .map_err(super::tag(&ctx))?;
    services
        .repositories
        .list_backup_checks(&ctx, &project)
        .await
        .map_err(super::tag(&ctx))
}

/// "Check the repository now", with a restore drill when `restore_drill` is ticked.
#[server(prefix = "/rpc", endpoint = "start_backup_check")]
pub async fn start_backup_check(
    id: String,
    restore_drill: Option<String>,
) -> Result<BackupCheckView, ApiError> {
    let (services, ctx) = super::context()?;
    let project = project_of(&services, &ctx, id)
        .await
        .map_err(super::tag(&ctx))?;
    services
        .repositories
        .start_backup_check(&ctx, &project, restore_drill.is_some())
        .await
        .map_err(super::tag(&ctx))
}

/// Whether the scheduled checks include a restore drill (project owners).
#[server(prefix = "/rpc", endpoint = "set_scheduled_drill")]
pub async fn set_scheduled_drill(
    id: String,
    restore_drill: Option<String>,
) -> Result<BackupRepositoryView, ApiError> {
    let (services, ctx) = super::context()?;
    let project = project_of(&services, &ctx, id)
        .await
        .map_err(super::tag(&ctx))?;
    services
        .repositories
        .set_restore_drill(&ctx, &project, restore_drill.is_some())
        .await
        .map_err(super::tag(&ctx))
}

/// Where a backup of deployment `id` may be restored: the deployments of its project, as
/// (id, name), the deployment itself first.
#[server(prefix = "/rpc", endpoint = "restore_targets")]
pub async fn restore_targets(id: String) -> Result<Vec<(String, String)>, ApiError> {
    let (services, ctx) = super::context()?;
    let project = project_of(&services, &ctx, id.clone())
        .await
        .map_err(super::tag(&ctx))?;
    let mut list: Vec<(String, String)> = services
        .deployments
        .list_deployments(&ctx, &project)
        .await
        .map_err(super::tag(&ctx))?
        .into_iter()
        .map(|d| (d.id.0, d.name))
        .collect();
    list.sort_by_key(|(d, name)| (d != &id, name.clone()));
    Ok(list)
}
