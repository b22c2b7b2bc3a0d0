//! `/api/v1/projects/{id}/deployments`, `/api/v1/deployments/...`, `/api/v1/jobs/{id}`.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// The project's deployments.
#[utoipa::path(get, path = "/api/v1/projects/{id}/deployments", tag = "deployments",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = [DeploymentView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<DeploymentView>>> {
    state
        .services
        .deployments
        .list_deployments(&ctx, &ProjectId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Creates a deployment and queues the rollout of its first release (see `jobs`).
#[utoipa::path(post, path = "/api/v1/projects/{id}/deployments", tag = "deployments",
    request_body = CreateDeployment,
    params(("id" = String, Path, description = "project id")),
    responses((status = 201, body = DeploymentDetail), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateDeployment>,
) -> RestResult<(StatusCode, Json<DeploymentDetail>)> {
    let d = state
        .services
        .deployments
        .create_deployment(&ctx, &ProjectId(id), req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// A deployment with its releases, instances and latest jobs.
#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = DeploymentDetail), (status = 404, body = ErrorEnvelope)))]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<DeploymentDetail>> {
    state
        .services
        .deployments
        .get_deployment(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Queues a lifecycle action: `update` (new spec → new release), `redeploy`, `rollback`
/// (to `release_id`), `scale` (`replicas`), `stop`, `start`, `restart`, `delete`
/// (`remove_volumes`). Answers the queued job; poll `/api/v1/jobs/{id}`.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/actions", tag = "deployments",
    request_body = DeploymentAction,
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 202, body = JobView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn act(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(action): ApiJson<DeploymentAction>,
) -> RestResult<(StatusCode, Json<JobView>)> {
    let job = state
        .services
        .deployments
        .act(&ctx, &DeploymentId(id), action)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    /// Also remove the deployment's named volumes (their data is lost). Default false.
    #[serde(default)]
    remove_volumes: bool,
}

/// Deletes a deployment (a job): its instances, and its volumes if asked.
#[utoipa::path(delete, path = "/api/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "deployment id"), DeleteQuery),
    responses((status = 202, body = JobView), (status = 404, body = ErrorEnvelope)))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> RestResult<(StatusCode, Json<JobView>)> {
    let job = state
        .services
        .deployments
        .act(
            &ctx,
            &DeploymentId(id),
            DeploymentAction::Delete {
                remove_volumes: q.remove_volumes,
            },
        )
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// One job with its steps.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "deployments",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorEnvelope)))]
pub async fn job(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<JobView>> {
    state
        .services
        .deployments
        .get_job(&ctx, &JobId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// Lines per instance, 1–5000. Default 200.
    tail: Option<u32>,
    /// `json` (default) or `text` (a download: `timestamp instance stream text` lines).
    format: Option<String>,
}

/// The instances' recent output, oldest first.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/logs", tag = "deployments",
    params(("id" = String, Path, description = "deployment id"), LogQuery),
    responses((status = 200, body = [LogLine]), (status = 404, body = ErrorEnvelope)))]
pub async fn logs(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> RestResult<Response> {
    let lines = state
        .services
        .deployments
        .instance_logs(&ctx, &DeploymentId(id.clone()), q.tail.unwrap_or(200))
        .await
        .map_err(fail(&ctx))?;
    if q.format.as_deref() == Some("text") {
        let mut body = String::new();
        for l in &lines {
            body.push_str(&format!(
                "{} {} {} {}\n",
                l.timestamp, l.instance_id, l.stream, l.text
            ));
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"deployment-{id}.log\""),
                ),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(lines).into_response())
}
