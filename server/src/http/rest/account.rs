//! `/api/v1/me`, `/api/v1/tokens`.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Extension, Json,
};

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope)))]
pub async fn me(Extension(ctx): Extension<RequestContext>) -> RestResult<Json<UserView>> {
    ctx.signed_in().cloned().map(Json).map_err(fail(&ctx))
}

/// Changes the caller's password.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "account", request_body = ChangePassword,
    responses((status = 204), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn change_password(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    ApiJson(req): ApiJson<ChangePassword>,
) -> RestResult<StatusCode> {
    state
        .services
        .accounts
        .change_password(&ctx, req)
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "account",
    responses((status = 200, body = [ApiTokenView]), (status = 401, body = ErrorEnvelope)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<ApiTokenView>>> {
    state
        .services
        .accounts
        .list_tokens(&ctx)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Creates an API token; the answer holds the secret, shown this once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "account", request_body = CreateApiToken,
    responses((status = 201, body = NewApiToken), (status = 400, body = ErrorEnvelope)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    ApiJson(req): ApiJson<CreateApiToken>,
) -> RestResult<(StatusCode, Json<NewApiToken>)> {
    let token = state
        .services
        .accounts
        .create_token(&ctx, req)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// Revokes one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "account",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<StatusCode> {
    state
        .services
        .accounts
        .revoke_token(&ctx, &ApiTokenId(id))
        .await
        .map_err(fail(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}
