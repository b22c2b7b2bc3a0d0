//! `/api/v1/deployments/{id}/backups`, `/api/v1/backups/{id}`, `/api/v1/backups/{id}/restore`,
//! `/api/v1/deployments/{id}/restores`, `/api/v1/restores/{id}`,
//! `/api/v1/deployments/{id}/backup-schedule`, `/api/v1/backups/{id}/files`,
//! `/api/v1/backups/{id}/download`, `/api/v1/projects/{id}/backup-repository`.

use app::model::*;
use app::services::RequestContext;
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// Queues a backup of the deployment's named volumes (202; follow it by its id or job).
#[utoipa::path(post, path = "/api/v1/deployments/{id}/backups", tag = "backups",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 202, body = BackupView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<(StatusCode, Json<BackupView>)> {
    let b = state
        .services
        .backups
        .create_backup(&ctx, &DeploymentId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(b)))
}

/// The deployment's backups, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/backups", tag = "backups",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [BackupView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<BackupView>>> {
    state
        .services
        .backups
        .list_backups(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// One backup.
#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups",
    params(("id" = String, Path, description = "backup id")),
    responses((status = 200, body = BackupView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<BackupView>> {
    state
        .services
        .backups
        .get_backup(&ctx, &BackupId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Queues a restore of the backup into its deployment, or into another deployment of the
/// project (202): the volumes are filled anew, then switched while the deployment is stopped;
/// the old contents stay live until then.
#[utoipa::path(post, path = "/api/v1/backups/{id}/restore", tag = "backups",
    params(("id" = String, Path, description = "backup id")),
    request_body = RestoreRequest,
    responses((status = 202, body = RestoreView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn restore(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> RestResult<(StatusCode, Json<RestoreView>)> {
    // No body (or `{}`) restores into the backup's own deployment.
    let request: RestoreRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RestoreRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            fail(&ctx)(ApiError::new(
                400,
                "invalid_json",
                format!("The body is not a restore request: {e}"),
            ))
        })?
    };
    let r = state
        .services
        .backups
        .restore_backup(&ctx, &BackupId(id), request)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// The deployment's restores, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/restores", tag = "backups",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [RestoreView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_restores(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<RestoreView>>> {
    state
        .services
        .backups
        .list_restores(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// One restore.
#[utoipa::path(get, path = "/api/v1/restores/{id}", tag = "backups",
    params(("id" = String, Path, description = "restore id")),
    responses((status = 200, body = RestoreView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_restore(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<RestoreView>> {
    state
        .services
        .backups
        .get_restore(&ctx, &RestoreId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// The project's backup repository (without its password).
#[utoipa::path(get, path = "/api/v1/projects/{id}/backup-repository", tag = "backups",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = BackupRepositoryView), (status = 404, body = ErrorEnvelope)))]
pub async fn repository(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<BackupRepositoryView>> {
    state
        .services
        .repositories
        .backup_repository(&ctx, &ProjectId(id), false)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// The repository with its password, for stock `restic` (`RESTIC_PASSWORD`): project owners
/// and admins only, recorded in the audit log.
#[utoipa::path(post, path = "/api/v1/projects/{id}/backup-repository/reveal", tag = "backups",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = BackupRepositoryView), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn reveal(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<BackupRepositoryView>> {
    state
        .services
        .repositories
        .backup_repository(&ctx, &ProjectId(id), true)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// The deployment's backup schedule (404 `backup_schedule_not_found` when it has none).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/backup-schedule", tag = "backups",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = BackupScheduleView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<BackupScheduleView>> {
    state
        .services
        .backups
        .get_backup_schedule(&ctx, &DeploymentId(id))
        .await
        .map_err(fail(&ctx))?
        .map(Json)
        .ok_or_else(|| {
            fail(&ctx)(ApiError::not_found(
                "backup_schedule_not_found",
                "This deployment has no backup schedule.",
            ))
        })
}

/// Sets the deployment's backup schedule (cron, UTC) and retention.
#[utoipa::path(put, path = "/api/v1/deployments/{id}/backup-schedule", tag = "backups",
    request_body = BackupPolicy,
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = BackupScheduleView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn set_schedule(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(policy): ApiJson<BackupPolicy>,
) -> RestResult<Json<BackupScheduleView>> {
    state
        .services
        .backups
        .set_backup_schedule(&ctx, &DeploymentId(id), policy)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Removes the deployment's backup schedule (its backups stay).
#[utoipa::path(delete, path = "/api/v1/deployments/{id}/backup-schedule", tag = "backups",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_schedule(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    state
        .services
        .backups
        .remove_backup_schedule(&ctx, &DeploymentId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?path=` of the file routes.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PathQuery {
    /// A path in the snapshot, under `/volumes` or `/databases` (default `/volumes`).
    pub path: Option<String>,
}

/// The entries of a directory of the backup's snapshot, directories first.
#[utoipa::path(get, path = "/api/v1/backups/{id}/files", tag = "backups",
    params(("id" = String, Path, description = "backup id"), PathQuery),
    responses((status = 200, body = [SnapshotEntry]), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn files(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> RestResult<Json<Vec<SnapshotEntry>>> {
    let path = q.path.unwrap_or_else(|| "/volumes".into());
    state
        .services
        .backups
        .list_backup_files(&ctx, &BackupId(id), &path)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Downloads one file of the backup's snapshot (`application/octet-stream`, as an
/// attachment named after the file).
#[utoipa::path(get, path = "/api/v1/backups/{id}/download", tag = "backups",
    params(("id" = String, Path, description = "backup id"), PathQuery),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn download(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> RestResult<Response> {
    let path = q.path.unwrap_or_default();
    // The same visibility check as every backup route.
    state
        .services
        .backups
        .get_backup(&ctx, &BackupId(id.clone()))
        .await
        .map_err(fail(&ctx))?;
    let record = state
        .store
        .backups()
        .backup(&id)
        .await
        .map_err(|e| fail(&ctx)(crate::platform::internal("load backup")(e)))?
        .ok_or_else(|| fail(&ctx)(ApiError::internal()))?;
    let (size, stream) = state
        .backups
        .open_file(&record, &path)
        .await
        .map_err(|e| fail(&ctx)(crate::platform::file_error(&record, e)))?;
    let name: String = std::path::Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
