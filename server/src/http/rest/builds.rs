//! `/api/v1/deployments/{id}/git`, `/api/v1/deployments/{id}/builds`,
//! `/api/v1/deployments/{id}/webhook-deliveries`, `/api/v1/builds/{id}`.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Extension, Json,
};

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// The deployment's git source (404 `git_source_not_found` when it has none).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/git", tag = "builds",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = GitSourceView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_source(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<GitSourceView>> {
    state
        .services
        .builds
        .get_git_source(&ctx, &DeploymentId(id))
        .await
        .map_err(fail(&ctx))?
        .map(Json)
        .ok_or_else(|| {
            fail(&ctx)(ApiError::not_found(
                "git_source_not_found",
                "This deployment is not connected to a git repository.",
            ))
        })
}

/// Connects the deployment to a repository, or changes the connection. The first answer
/// holds the webhook secret; it is never shown again (rotate it to get a new one).
#[utoipa::path(put, path = "/api/v1/deployments/{id}/git", tag = "builds",
    request_body = SetGitSource,
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = GitSourceCreated), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn set_source(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetGitSource>,
) -> RestResult<Json<GitSourceCreated>> {
    state
        .services
        .builds
        .set_git_source(&ctx, &DeploymentId(id), req)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Disconnects the repository (builds and deliveries stay listed).
#[utoipa::path(delete, path = "/api/v1/deployments/{id}/git", tag = "builds",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_source(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    state
        .services
        .builds
        .remove_git_source(&ctx, &DeploymentId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new webhook secret (in the answer, once); the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/git/webhook-secret", tag = "builds",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = GitSourceCreated), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<GitSourceCreated>> {
    state
        .services
        .builds
        .rotate_webhook_secret(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// A new SSH deploy key; the answer shows its public half, to register at the git host.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/git/deploy-key", tag = "builds",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = GitSourceView), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_deploy_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<GitSourceView>> {
    state
        .services
        .builds
        .rotate_deploy_key(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// The deployment's builds, newest first (at most 50).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/builds", tag = "builds",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [BuildView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<BuildView>>> {
    state
        .services
        .builds
        .list_builds(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Builds the branch head (or `commit`) and rolls the image out as a new release. Follow it
/// at `/ws/builds/{id}/log` or poll `/api/v1/builds/{id}`.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/builds", tag = "builds",
    request_body = TriggerBuild,
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 202, body = BuildView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn trigger(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TriggerBuild>,
) -> RestResult<(StatusCode, Json<BuildView>)> {
    let build = state
        .services
        .builds
        .trigger_build(&ctx, &DeploymentId(id), req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(build)))
}

/// One build with its log.
#[utoipa::path(get, path = "/api/v1/builds/{id}", tag = "builds",
    params(("id" = String, Path, description = "build id")),
    responses((status = 200, body = BuildDetail), (status = 404, body = ErrorEnvelope)))]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<BuildDetail>> {
    state
        .services
        .builds
        .get_build(&ctx, &BuildId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Stops a queued or running build (409 `build_finished` once it has ended).
#[utoipa::path(post, path = "/api/v1/builds/{id}/cancel", tag = "builds",
    params(("id" = String, Path, description = "build id")),
    responses((status = 202, body = BuildView), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<(StatusCode, Json<BuildView>)> {
    let b = state
        .services
        .builds
        .cancel_build(&ctx, &BuildId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(b)))
}

/// The webhook deliveries received for the deployment, newest first (at most 50).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/webhook-deliveries", tag = "builds",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [WebhookDeliveryView]), (status = 404, body = ErrorEnvelope)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<WebhookDeliveryView>>> {
    state
        .services
        .builds
        .list_deliveries(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}
