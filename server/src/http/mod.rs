//! The axum router: Leptos pages and server functions, `/api/v1`, `/healthz`, static assets.

mod metrics;
pub mod middleware;
mod oidc;
pub mod rest;
pub mod webhooks;
pub mod ws;
mod ws_builds;

use std::sync::Arc;

use app::{services::Services, shell, App, STYLESHEET, STYLESHEET_PATH};
use axum::{
    body::Body,
    extract::{FromRef, Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, handle_server_fns_with_context, LeptosRoutes};
use tower_http::services::ServeDir;
use tower_sessions::{cookie::SameSite, Expiry, SessionManagerLayer};

use crate::{config::Config, store::Store};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub services: Services,
    pub config: Arc<Config>,
    pub leptos_options: LeptosOptions,
    /// The SSO provider, when `oidc` is configured.
    pub oidc: Option<Arc<crate::auth::oidc::OidcProvider>>,
    /// Placement, rollouts and the node connections (for logs).
    pub orchestrator: Arc<crate::orchestrator::Orchestrator>,
    /// The per-route counters of this process's ingress (`None` without one).
    pub ingress_stats: Option<Arc<crate::ingress::observe::IngressStats>>,
    /// The live metrics of this process (`None` without the `metrics` role).
    pub metrics: Option<crate::metrics::LiveMetrics>,
    pub webhooks: Arc<crate::platform::WebhookReceiver>,
    /// Live logs of the builds running in this process.
    pub build_logs: crate::builds::BuildLogs,
    /// Reads backups' files for downloads.
    pub backups: Arc<crate::backups::BackupRunner>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

async fn server_fn_handler(State(state): State<AppState>, req: Request<Body>) -> impl IntoResponse {
    let services = state.services.clone();
    handle_server_fns_with_context(move || provide_context(services.clone()), req).await
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../../../public/favicon.svg"),
    )
        .into_response()
}

/// `GET /healthz`: 200 `{"status":"ok","database":"ok"}` when the database answers; 503 with
/// `"database":"unreachable"` otherwise. `metrics` is `off` without the metrics role, else
/// `{"state": "streaming" | "degraded", "errors", "breakers_open"}`: degraded while an
/// engine's breaker is open or a history write failed last.
async fn healthz(State(state): State<AppState>) -> Response {
    let metrics = match &state.metrics {
        None => serde_json::json!("off"),
        Some(m) => {
            let open = m
                .stats
                .breaker_states()
                .iter()
                .filter(|(_, s)| *s != crate::metrics::breaker::BreakerState::Closed)
                .count();
            let unwritten = m.stats.history_failing();
            serde_json::json!({
                "state": if open > 0 || unwritten { "degraded" } else { "streaming" },
                "errors": m.stats.errors.load(std::sync::atomic::Ordering::Relaxed),
                "breakers_open": open,
            })
        }
    };
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok", "database": "ok", "metrics": metrics}))
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "degraded", "database": "unreachable", "metrics": metrics})),
            )
                .into_response()
        }
    }
}

/// Builds the whole router with its middleware.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let services = state.services.clone();
    let options = state.leptos_options.clone();
    let pkg_dir = std::path::Path::new(&*options.site_root).join(&*options.site_pkg_dir);

    let sessions = SessionManagerLayer::new(state.store.session_repo())
        .with_name(middleware::SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies())
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(i64::from(
            state.config.session_idle_hours,
        ))));

    Router::new()
        .route(
            "/rpc/{*fn_name}",
            get(server_fn_handler).post(server_fn_handler),
        )
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(services.clone()),
            move || shell(options.clone()),
        )
        .nest("/api/v1", rest::router())
        .route("/ws/deployments/{id}/logs", get(ws::deployment_logs))
        .route("/ws/deployments/{id}/metrics", get(ws::deployment_metrics))
        .route("/ws/builds/{id}/log", get(ws_builds::build_log))
        .route("/auth/oidc/start", get(oidc::start))
        .route(crate::auth::oidc::CALLBACK_PATH, get(oidc::callback))
        .route("/healthz", get(healthz))
        .route("/metrics/observability", get(metrics::observability))
        .route(STYLESHEET_PATH, get(stylesheet))
        .route("/public/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .nest_service("/pkg", ServeDir::new(pkg_dir))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        .layer(sessions)
        .with_state(state.clone())
        // Outside the middleware: Prometheus authenticates with its own token.
        .merge(
            Router::new()
                .route(metrics::EXPOSITION_PATH, get(metrics::exposition))
                .route(
                    "/webhooks/{provider}/{id}",
                    axum::routing::post(webhooks::receive).layer(
                        axum::extract::DefaultBodyLimit::max(crate::webhooks::MAX_BODY_BYTES),
                    ),
                )
                .with_state(state),
        )
}
