//! The service layer behind server functions and the REST API: implementations of the
//! `app::services` traits over the store, with every authorization check in one place.

pub mod accounts;
mod admin;
mod backup_destinations;
mod backups;
mod builds;
mod deployment_jobs;
mod deployment_views;
pub mod deployments;
mod domains;
mod logs;
mod node_checks;
mod path_routes;
mod projects;
mod repositories;
mod topology;
mod usage;
mod webhooks;

pub use accounts::AccountsService;
pub use admin::AdminConsole;
pub use backups::{file_error, BackupsService};
pub use builds::BuildsService;
pub use deployments::DeploymentsService;
pub use domains::AppUrls;
pub use logs::LOG_TAIL_MAX;
pub use projects::ProjectsService;
pub use repositories::RepositoriesService;
pub use topology::TopologyConsole;
pub use webhooks::{WebhookAnswer, WebhookReceiver, DELIVERY_RETENTION_MS};

use app::{
    model::{ApiError, AuditEventView, UserId, UserRole, UserView},
    services::RequestContext,
};

use crate::store::{AuditEventRecord, NewAuditEvent, Store, StoreError, UserRecord};

/// Logs a store failure once, here, and returns the opaque 500 the caller sees.
pub fn internal(context: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| {
        tracing::error!(error = %e, what = context, "store call failed");
        ApiError::internal()
    }
}

/// The API view of a stored user.
pub fn user_view(u: &UserRecord) -> UserView {
    UserView {
        id: UserId(u.id.clone()),
        email: u.email.clone(),
        display_name: u.display_name.clone(),
        role: UserRole::parse(&u.role).unwrap_or(UserRole::Customer),
        must_change_password: u.must_change_password,
        created_at_ms: u.created_at_ms,
    }
}

pub(crate) fn audit_view(e: AuditEventRecord) -> AuditEventView {
    AuditEventView {
        id: e.id,
        actor: e.actor,
        action: e.action,
        target: e.target,
        detail: e.detail,
        client_addr: e.client_addr,
        created_at_ms: e.created_at_ms,
    }
}

/// Appends an audit event for the request's caller (or an anonymous actor given by `actor`).
/// A failure to write the log is an error of the request: changes must not go unrecorded.
///
/// # Errors
/// `ApiError` 500 when the event cannot be stored.
pub async fn audit(
    store: &Store,
    ctx: &RequestContext,
    actor_fallback: Option<&str>,
    action: &str,
    target: String,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let (actor_id, actor) = match &ctx.caller {
        Some(u) => (Some(u.id.0.clone()), u.email.clone()),
        None => (None, actor_fallback.unwrap_or("anonymous").to_owned()),
    };
    store
        .audit_events()
        .append(NewAuditEvent {
            actor_id,
            actor,
            action: action.to_owned(),
            target,
            detail: detail.to_string(),
            client_addr: ctx.client_addr.clone(),
        })
        .await
        .map_err(internal("append audit event"))
}
