//! `POST /webhooks/{provider}/{id}`: deliveries from git providers. Outside the session and
//! request-context layers (providers have no session; the signature is their credential),
//! with its own body limit. See `platform::webhooks` for what is answered.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::AppState;

/// Handles one delivery.
pub async fn receive(
    State(state): State<AppState>,
    Path((provider, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = state
        .webhooks
        .receive(&provider, &id, &headers, &body)
        .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(answer.body)).into_response()
}
