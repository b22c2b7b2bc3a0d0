//! `/api/v1/projects` and members.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Extension, Json,
};
use serde::Deserialize;

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// Projects visible to the caller (all of them for admins).
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, body = [ProjectView]), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<ProjectView>>> {
    state
        .services
        .projects
        .list_projects(&ctx)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Creates a project owned by the caller.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    ApiJson(req): ApiJson<CreateProject>,
) -> RestResult<(StatusCode, Json<ProjectView>)> {
    let p = state
        .services
        .projects
        .create_project(&ctx, req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// One project.
#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<ProjectView>> {
    state
        .services
        .projects
        .get_project(&ctx, &ProjectId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Renames a project (owners and admins).
#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects", request_body = RenameProject,
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = ProjectView), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn rename(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameProject>,
) -> RestResult<Json<ProjectView>> {
    state
        .services
        .projects
        .rename_project(&ctx, &ProjectId(id), req)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Query of a project deletion.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    /// Must equal the project's name.
    pub confirm_name: String,
}

/// Deletes a project (owners and admins); `confirm_name` must repeat its name.
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "project id"), DeleteQuery),
    responses((status = 204), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> RestResult<StatusCode> {
    state
        .services
        .projects
        .delete_project(
            &ctx,
            &ProjectId(id),
            DeleteProject {
                confirm_name: q.confirm_name,
            },
        )
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members of a project.
#[utoipa::path(get, path = "/api/v1/projects/{id}/members", tag = "projects",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = [MemberView]), (status = 404, body = ErrorEnvelope)))]
pub async fn members(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<MemberView>>> {
    state
        .services
        .projects
        .list_members(&ctx, &ProjectId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Adds an existing user to a project by email (owners and admins).
#[utoipa::path(post, path = "/api/v1/projects/{id}/members", tag = "projects", request_body = AddMember,
    params(("id" = String, Path, description = "project id")),
    responses((status = 201, body = MemberView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn add_member(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddMember>,
) -> RestResult<(StatusCode, Json<MemberView>)> {
    let m = state
        .services
        .projects
        .add_member(&ctx, &ProjectId(id), req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Removes a member (owners and admins); never the last owner.
#[utoipa::path(delete, path = "/api/v1/projects/{id}/members/{user_id}", tag = "projects",
    params(("id" = String, Path, description = "project id"), ("user_id" = String, Path, description = "user id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn remove_member(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, user_id)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    state
        .services
        .projects
        .remove_member(&ctx, &ProjectId(id), &UserId(user_id))
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}
