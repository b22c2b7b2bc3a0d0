//! REST: `/api/v1/regions/{name}/backup-destination` (admins), `/api/v1/projects/{id}/backup-checks`,
//! `/api/v1/backup-checks/{id}` and the repository's settings
//! (`PATCH /api/v1/projects/{id}/backup-repository`).

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Extension, Json,
};

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// Admins: where the region's new backup repositories are made (`local` unless an S3 bucket
/// is set).
#[utoipa::path(get, path = "/api/v1/regions/{name}/backup-destination", tag = "backups",
    params(("name" = String, Path, description = "region name")),
    responses((status = 200, body = BackupDestinationView), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn get_destination(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> RestResult<Json<BackupDestinationView>> {
    state
        .services
        .repositories
        .backup_destination(&ctx, &name)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Admins: keep the region's new repositories in an S3-compatible bucket (checked by listing
/// it once before it is saved; existing repositories stay where they are).
#[utoipa::path(put, path = "/api/v1/regions/{name}/backup-destination", tag = "backups",
    params(("name" = String, Path, description = "region name")),
    request_body = S3Destination,
    responses((status = 200, body = BackupDestinationView), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn set_destination(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    ApiJson(destination): ApiJson<S3Destination>,
) -> RestResult<Json<BackupDestinationView>> {
    state
        .services
        .repositories
        .set_backup_destination(&ctx, &name, destination)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Admins: back to local directories for the region's new repositories.
#[utoipa::path(delete, path = "/api/v1/regions/{name}/backup-destination", tag = "backups",
    params(("name" = String, Path, description = "region name")),
    responses((status = 200, body = BackupDestinationView), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn remove_destination(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> RestResult<Json<BackupDestinationView>> {
    state
        .services
        .repositories
        .remove_backup_destination(&ctx, &name)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Queues a check of the project's repository now: restic's `check` reading a share of the
/// pack files, and with `restore_drill` each deployment's newest snapshot restored into a
/// scratch directory and compared (202; follow it by its id or job).
#[utoipa::path(post, path = "/api/v1/projects/{id}/backup-checks", tag = "backups",
    params(("id" = String, Path, description = "project id")),
    request_body = StartBackupCheck,
    responses((status = 202, body = BackupCheckView), (status = 404, body = ErrorEnvelope)))]
pub async fn start_check(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartBackupCheck>,
) -> RestResult<(StatusCode, Json<BackupCheckView>)> {
    state
        .services
        .repositories
        .start_backup_check(&ctx, &ProjectId(id), body.restore_drill)
        .await
        .map(|c| (StatusCode::ACCEPTED, Json(c)))
        .map_err(fail(&ctx))
}

/// The project's repository checks, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{id}/backup-checks", tag = "backups",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = Vec<BackupCheckView>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_checks(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<BackupCheckView>>> {
    state
        .services
        .repositories
        .list_backup_checks(&ctx, &ProjectId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// One repository check.
#[utoipa::path(get, path = "/api/v1/backup-checks/{id}", tag = "backups",
    params(("id" = String, Path, description = "check id")),
    responses((status = 200, body = BackupCheckView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_check(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<BackupCheckView>> {
    state
        .services
        .repositories
        .get_backup_check(&ctx, &BackupCheckId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Changes the repository's settings: whether scheduled checks include a restore drill
/// (project owners and admins).
#[utoipa::path(patch, path = "/api/v1/projects/{id}/backup-repository", tag = "backups",
    params(("id" = String, Path, description = "project id")),
    request_body = RepositorySettings,
    responses((status = 200, body = BackupRepositoryView), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn update_repository(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RepositorySettings>,
) -> RestResult<Json<BackupRepositoryView>> {
    state
        .services
        .repositories
        .set_restore_drill(&ctx, &ProjectId(id), body.restore_drill)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}
