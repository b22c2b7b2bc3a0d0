//! Per-request middleware: request ids, the caller (session cookie or bearer token), the
//! cross-site request check, and the access log line.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use app::{model::ApiError, services::RequestContext};
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderValue, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_sessions::Session;
use tracing::Instrument;

use super::{rest::RestError, AppState};
use crate::{
    auth::{session::BrowserSession, token},
    platform::user_view,
};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "berth_session";

fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(crate::store::new_id)
}

/// Whether the request's `Origin` (or, without one, `Referer`) is this site: the same
/// authority as the `Host` header, or the configured public URL. Browsers always send
/// `Origin` on cross-site POSTs (Fetch standard), so a mismatch or absence means refusal.
fn same_origin(req: &Request, public_url: &str) -> bool {
    let headers = req.headers();
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else { return false };
    let Some((scheme, rest)) = source.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let origin = format!("{scheme}://{authority}");
    if origin == public_url {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

fn has_session_cookie(req: &Request) -> bool {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim_start().starts_with(SESSION_COOKIE))
}

/// Resolves who is calling and puts a [`RequestContext`] in the request's extensions.
/// Refuses (before any handler runs) a bad bearer token with 401 and a cross-site state
/// change with 403 `cross_site_request`.
pub async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request.id = %request_id, http.method = %method, http.path = %path);
    async move {
        let client_addr = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let bearer = req.headers().get(header::AUTHORIZATION).cloned();
        let fail = |e: ApiError| RestError(e.with_request_id(request_id.clone())).into_response();

        let mut response = 'respond: {
            let (caller, session) = if let Some(value) = bearer {
                let secret = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
                let Some(secret) = secret.map(str::trim).filter(|s| !s.is_empty()) else {
                    break 'respond fail(ApiError::new(401, "invalid_token", "The Authorization header must be 'Bearer <token>'."));
                };
                match authenticate_token(&state, secret).await {
                    Ok(Some(user)) => (Some(user), None),
                    Ok(None) => break 'respond fail(ApiError::new(401, "invalid_token", "The API token is unknown, revoked or expired.")),
                    Err(e) => break 'respond fail(e),
                }
            } else {
                // A WebSocket handshake is a GET, but browsers send cookies with cross-site ones
                // too (no CORS), so it is held to the same rule as a state change.
                let websocket = req
                    .headers()
                    .get(header::UPGRADE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
                let unsafe_method = websocket
                    || !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
                if unsafe_method
                    && (path.starts_with("/rpc/") || has_session_cookie(&req))
                    && !same_origin(&req, &state.config.public_url)
                {
                    tracing::warn!("cross-site request refused");
                    break 'respond fail(ApiError::new(
                        403,
                        "cross_site_request",
                        "This request came from another site and was refused. Use the Berth portal, or an API token.",
                    ));
                }
                let session = req.extensions().get::<Session>().cloned();
                let caller = match &session {
                    Some(s) => match crate::auth::session::session_user_id(s).await {
                        Some(id) => match load_active_user(&state, &id).await {
                            Ok(u) => u,
                            Err(e) => break 'respond fail(e),
                        },
                        None => None,
                    },
                    None => None,
                };
                (caller, session)
            };
            req.extensions_mut().insert(RequestContext {
                caller,
                client_addr,
                request_id: request_id.clone(),
                session: session.map(|s| Arc::new(BrowserSession(s)) as _),
            });
            next.run(req).await
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        let status = response.status().as_u16();
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(http.status = status, duration_ms, "request failed");
        } else {
            tracing::info!(http.status = status, duration_ms, "request");
        }
        response
    }
    .instrument(span)
    .await
}

async fn load_active_user(
    state: &AppState,
    id: &str,
) -> Result<Option<app::model::UserView>, ApiError> {
    let user = state
        .store
        .users()
        .by_id(id)
        .await
        .map_err(crate::platform::internal("load session user"))?;
    Ok(user.filter(|u| !u.disabled).map(|u| user_view(&u)))
}

async fn authenticate_token(
    state: &AppState,
    secret: &str,
) -> Result<Option<app::model::UserView>, ApiError> {
    let Some(token) = state
        .store
        .api_tokens()
        .authenticate(&token::hash_secret(secret))
        .await
        .map_err(crate::platform::internal("authenticate token"))?
    else {
        return Ok(None);
    };
    load_active_user(state, &token.user_id).await
}
