//! `/api/v1/deployments/{id}/domains`, `/api/v1/domains/{id}`: custom domains;
//! `/api/v1/deployments/{id}/paths`, `/api/v1/paths/{id}`: path routes on them.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Extension, Json,
};

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// A deployment's custom domains, with the DNS records each needs and its last check.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/domains", tag = "domains",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [DomainView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<DomainView>>> {
    state
        .services
        .deployments
        .list_domains(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Adds a custom domain: pending until its DNS records prove control, then routed.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/domains", tag = "domains",
    request_body = AddDomain,
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 201, body = DomainView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn add(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddDomain>,
) -> RestResult<(StatusCode, Json<DomainView>)> {
    let domain = state
        .services
        .deployments
        .add_domain(&ctx, &DeploymentId(id), req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(domain)))
}

/// Checks a pending domain's DNS now rather than after its backoff.
#[utoipa::path(post, path = "/api/v1/domains/{id}/verify", tag = "domains",
    params(("id" = String, Path, description = "domain id")),
    responses((status = 202, body = DomainView), (status = 404, body = ErrorEnvelope)))]
pub async fn verify(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<(StatusCode, Json<DomainView>)> {
    let domain = state
        .services
        .deployments
        .verify_domain(&ctx, &DomainId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::ACCEPTED, Json(domain)))
}

/// Removes a custom domain; it stops being routed at once.
#[utoipa::path(delete, path = "/api/v1/domains/{id}", tag = "domains",
    params(("id" = String, Path, description = "domain id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    state
        .services
        .deployments
        .remove_domain(&ctx, &DomainId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a custom domain's settings: `redirect_https` sends plain-HTTP requests to HTTPS
/// (308) once the domain's certificate is issued.
#[utoipa::path(patch, path = "/api/v1/domains/{id}", tag = "domains",
    request_body = UpdateDomain,
    params(("id" = String, Path, description = "domain id")),
    responses((status = 200, body = DomainView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateDomain>,
) -> RestResult<Json<DomainView>> {
    let domain = state
        .services
        .deployments
        .update_domain(&ctx, &DomainId(id), req)
        .await
        .map_err(fail(&ctx))?;
    Ok(Json(domain))
}

/// The path routes a deployment serves (`<domain><prefix>` of its project's domains).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/paths", tag = "domains",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [PathRouteView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_paths(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<PathRouteView>>> {
    state
        .services
        .deployments
        .list_path_routes(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Serves the deployment under a path prefix of one of its project's custom domains; the
/// longest matching prefix wins.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/paths", tag = "domains",
    request_body = AddPathRoute,
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 201, body = PathRouteView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn add_path(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddPathRoute>,
) -> RestResult<(StatusCode, Json<PathRouteView>)> {
    let route = state
        .services
        .deployments
        .add_path_route(&ctx, &DeploymentId(id), req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(route)))
}

/// Removes a path route; the domain's own deployment serves the path again.
#[utoipa::path(delete, path = "/api/v1/paths/{id}", tag = "domains",
    params(("id" = String, Path, description = "path route id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_path(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    state
        .services
        .deployments
        .remove_path_route(&ctx, &PathRouteId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}
