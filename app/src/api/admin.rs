//! Server functions of the management console (admins only; the service checks).

use leptos::prelude::*;

use crate::model::*;

/// All users.
#[server(prefix = "/rpc", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .admin
        .list_users(&ctx)
        .await
        .map_err(super::tag(&ctx))
}

/// Creates a user; `role` is `admin` or `customer`.
#[server(prefix = "/rpc", endpoint = "create_user")]
pub async fn create_user(
    email: String,
    display_name: String,
    role: String,
    password: String,
) -> Result<UserView, ApiError> {
    let (services, ctx) = super::context()?;
    let role = UserRole::parse(&role)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "role",
                "invalid_role",
                format!("'{role}' is not a user role. Use 'admin' or 'customer'."),
            )
        })
        .map_err(super::tag(&ctx))?;
    services
        .admin
        .create_user(
            &ctx,
            crate::model::CreateUser {
                email,
                display_name,
                role,
                password,
            },
        )
        .await
        .map_err(super::tag(&ctx))
}

/// The newest audit events (at most 200).
#[server(prefix = "/rpc", endpoint = "list_audit_events")]
pub async fn list_audit_events() -> Result<Vec<AuditEventView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .admin
        .list_audit_events(&ctx, 200)
        .await
        .map_err(super::tag(&ctx))
}
