//! `/api/v1`: JSON over the same services as the portal's server functions, authenticated by
//! the session cookie or a bearer token. Errors are `{"error": {"code", "message"}}`.

mod account;
mod admin;
mod backups;
mod builds;
mod deployments;
mod domains;
mod metrics;
mod openapi;
mod projects;
mod repositories;
mod topology;

use app::{
    model::{ApiError, ErrorEnvelope},
    services::RequestContext,
};
use axum::{
    extract::{rejection::JsonRejection, FromRequest},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
    Json, Router,
};

use super::AppState;

pub use openapi::ApiDoc;

/// An [`ApiError`] leaving the REST API (or the middleware) as JSON with its status.
#[derive(Debug)]
pub struct RestError(pub ApiError);

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorEnvelope { error: self.0 })).into_response()
    }
}

impl From<JsonRejection> for RestError {
    fn from(r: JsonRejection) -> Self {
        RestError(ApiError::new(
            r.status().as_u16(),
            "invalid_body",
            format!("The request body is not valid: {}", r.body_text()),
        ))
    }
}

/// `Json` whose rejections use the API's error envelope.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(RestError))]
pub struct ApiJson<T>(pub T);

/// Converts a service error into a REST error carrying the request id.
pub(crate) fn fail(ctx: &RequestContext) -> impl Fn(ApiError) -> RestError + '_ {
    move |e| RestError(e.with_request_id(ctx.request_id.clone()))
}

/// Handler result.
pub type RestResult<T> = Result<T, RestError>;

/// The `/api/v1` router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/me", get(account::me))
        .route("/me/password", post(account::change_password))
        .route(
            "/tokens",
            get(account::list_tokens).post(account::create_token),
        )
        .route("/tokens/{id}", delete(account::revoke_token))
        .route("/projects", get(projects::list).post(projects::create))
        .route(
            "/projects/{id}",
            get(projects::get_one)
                .patch(projects::rename)
                .delete(projects::remove),
        )
        .route(
            "/projects/{id}/members",
            get(projects::members).post(projects::add_member),
        )
        .route(
            "/projects/{id}/members/{user_id}",
            delete(projects::remove_member),
        )
        .route("/users", get(admin::list_users).post(admin::create_user))
        .route("/audit-events", get(admin::audit_events))
        .route("/ingress/routes", get(admin::ingress_routes))
        .route(
            "/plans",
            get(topology::list_plans).post(topology::create_plan),
        )
        .route("/plans/{id}", put(topology::update_plan))
        .route("/nodes", get(topology::list_nodes).post(topology::add_node))
        .route("/nodes/{id}/state", put(topology::set_node_state))
        .route("/regions", get(topology::list_regions))
        .route(
            "/regions/{name}/placement-strategy",
            put(topology::set_placement_strategy),
        )
        .route(
            "/projects/{id}/deployments",
            get(deployments::list).post(deployments::create),
        )
        .route(
            "/deployments/{id}",
            get(deployments::get_one).delete(deployments::remove),
        )
        .route("/deployments/{id}/actions", post(deployments::act))
        .route("/deployments/{id}/logs", get(deployments::logs))
        .route("/deployments/{id}/metrics", get(metrics::live))
        .route("/deployments/{id}/metrics/history", get(metrics::history))
        .route("/projects/{id}/usage", get(metrics::usage))
        .route("/projects/{id}/metrics", get(metrics::project_now))
        .route("/jobs/{id}", get(deployments::job))
        .route(
            "/deployments/{id}/domains",
            get(domains::list).post(domains::add),
        )
        .route(
            "/domains/{id}",
            delete(domains::remove).patch(domains::update),
        )
        .route("/domains/{id}/verify", post(domains::verify))
        .route(
            "/deployments/{id}/paths",
            get(domains::list_paths).post(domains::add_path),
        )
        .route("/paths/{id}", delete(domains::remove_path))
        .route(
            "/deployments/{id}/git",
            get(builds::get_source)
                .put(builds::set_source)
                .delete(builds::remove_source),
        )
        .route(
            "/deployments/{id}/git/webhook-secret",
            post(builds::rotate_secret),
        )
        .route(
            "/deployments/{id}/git/deploy-key",
            post(builds::rotate_deploy_key),
        )
        .route(
            "/deployments/{id}/builds",
            get(builds::list).post(builds::trigger),
        )
        .route(
            "/deployments/{id}/webhook-deliveries",
            get(builds::deliveries),
        )
        .route("/builds/{id}", get(builds::get_one))
        .route("/builds/{id}/cancel", post(builds::cancel))
        .route(
            "/deployments/{id}/backups",
            get(backups::list).post(backups::create),
        )
        .route(
            "/deployments/{id}/backup-schedule",
            get(backups::get_schedule)
                .put(backups::set_schedule)
                .delete(backups::remove_schedule),
        )
        .route("/backups/{id}", get(backups::get_one))
        .route("/backups/{id}/restore", post(backups::restore))
        .route("/backups/{id}/files", get(backups::files))
        .route("/backups/{id}/download", get(backups::download))
        .route("/deployments/{id}/restores", get(backups::list_restores))
        .route("/restores/{id}", get(backups::get_restore))
        .route(
            "/projects/{id}/backup-repository",
            get(backups::repository).patch(repositories::update_repository),
        )
        .route(
            "/regions/{name}/backup-destination",
            get(repositories::get_destination)
                .put(repositories::set_destination)
                .delete(repositories::remove_destination),
        )
        .route(
            "/projects/{id}/backup-checks",
            get(repositories::list_checks).post(repositories::start_check),
        )
        .route("/backup-checks/{id}", get(repositories::get_check))
        .route(
            "/projects/{id}/backup-repository/reveal",
            post(backups::reveal),
        )
        .fallback(|| async {
            RestError(ApiError::not_found(
                "route_not_found",
                "No such API route. See /api/v1/openapi.json for the routes that exist.",
            ))
        })
}
