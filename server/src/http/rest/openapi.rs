//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use super::{
    account, admin, backups, builds, deployments, domains, metrics, projects, repositories,
    topology,
};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::http::middleware::SESSION_COOKIE,
            ))),
        );
    }
}

/// Berth's REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Berth API", description = "Self-hosted container platform. Authenticate with `Authorization: Bearer <token>` (tokens are created in the portal) or the portal's session cookie."),
    paths(
        account::me, account::change_password, account::list_tokens, account::create_token, account::revoke_token,
        projects::list, projects::create, projects::get_one, projects::rename, projects::remove,
        projects::members, projects::add_member, projects::remove_member,
        admin::list_users, admin::create_user, admin::audit_events, admin::ingress_routes,
        topology::list_plans, topology::create_plan, topology::update_plan,
        topology::list_nodes, topology::add_node, topology::set_node_state,
        topology::list_regions, topology::set_placement_strategy,
        deployments::list, deployments::create, deployments::get_one, deployments::act,
        deployments::remove, deployments::job, deployments::logs,
        domains::list, domains::add, domains::verify, domains::remove, domains::update,
        domains::list_paths, domains::add_path, domains::remove_path,
        metrics::live, metrics::history, metrics::project_now, metrics::usage,
        builds::get_source, builds::set_source, builds::remove_source, builds::rotate_secret, builds::rotate_deploy_key,
        builds::list, builds::trigger, builds::get_one, builds::cancel, builds::deliveries,
        backups::create, backups::list, backups::get_one, backups::restore, backups::list_restores,
        backups::get_restore, backups::repository, backups::reveal, backups::get_schedule,
        backups::set_schedule, backups::remove_schedule, backups::files, backups::download,
        repositories::get_destination, repositories::set_destination, repositories::remove_destination,
        repositories::start_check, repositories::list_checks, repositories::get_check,
        repositories::update_repository,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
