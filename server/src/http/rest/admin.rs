//! `/api/v1/users`, `/api/v1/audit-events` (admins only).

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    Extension, Json,
};
use serde::Deserialize;

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// Every user.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = [UserView]), (status = 403, body = ErrorEnvelope)))]
pub async fn list_users(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<UserView>>> {
    state
        .services
        .admin
        .list_users(&ctx)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Creates a user who must change the given password at first sign-in.
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    ApiJson(req): ApiJson<CreateUser>,
) -> RestResult<(StatusCode, Json<UserView>)> {
    let u = state
        .services
        .admin
        .create_user(&ctx, req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(u)))
}

/// Query of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// How many events, newest first; default 100, at most 500.
    pub limit: Option<u32>,
}

/// The newest audit events.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "admin", params(AuditQuery),
    responses((status = 200, body = [AuditEventView]), (status = 403, body = ErrorEnvelope)))]
pub async fn audit_events(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<AuditQuery>,
) -> RestResult<Json<Vec<AuditEventView>>> {
    state
        .services
        .admin
        .list_audit_events(&ctx, q.limit.unwrap_or(100))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Per-route traffic of this process's ingress since it started: requests, responses by
/// status class and a latency histogram (time to the response head). Empty when this process
/// runs no ingress. Admins only.
#[utoipa::path(get, path = "/api/v1/ingress/routes", tag = "admin",
    responses((status = 200, body = [crate::ingress::observe::RouteStatsView]),
        (status = 403, body = ErrorEnvelope)))]
pub async fn ingress_routes(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<crate::ingress::observe::RouteStatsView>>> {
    ctx.admin().map_err(fail(&ctx))?;
    Ok(Json(
        state
            .ingress_stats
            .as_ref()
            .map(|s| s.snapshot())
            .unwrap_or_default(),
    ))
}
