//! `AdminService`: users and the audit log, for admins only.

use app::{
    model::*,
    services::{AdminService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;

use super::{audit, audit_view, internal, user_view};
use crate::{
    auth::password,
    store::{NewUser, Store, StoreError},
};

/// The management console's service.
pub struct AdminConsole {
    store: Store,
}

impl AdminConsole {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AdminService for AdminConsole {
    async fn list_users(&self, ctx: &RequestContext) -> Result<Vec<UserView>, ApiError> {
        ctx.admin()?;
        let users = self
            .store
            .users()
            .list()
            .await
            .map_err(internal("list users"))?;
        Ok(users.iter().map(user_view).collect())
    }

    async fn create_user(
        &self,
        ctx: &RequestContext,
        req: CreateUser,
    ) -> Result<UserView, ApiError> {
        ctx.admin()?;
        let email = normalize_email(&req.email);
        validate_email(&email)?;
        let display_name = req.display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > 100 {
            return Err(ApiError::invalid_field(
                "display_name",
                "invalid_display_name",
                "Give a display name of 1–100 characters.",
            ));
        }
        validate_new_password(&req.password)?;
        let hash = password::hash_password(req.password)
            .await
            .map_err(|_| ApiError::internal())?;
        let user = match self
            .store
            .users()
            .create(NewUser {
                email: email.clone(),
                display_name: display_name.to_owned(),
                role: req.role.as_str().to_owned(),
                password_hash: Some(hash),
                must_change_password: true,
                oidc_issuer: None,
                oidc_subject: None,
            })
            .await
        {
            Ok(u) => u,
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::conflict_field(
                    "email",
                    "email_taken",
                    format!("An account with {email} exists already."),
                ))
            }
            Err(e) => return Err(internal("create user")(e)),
        };
        audit(
            &self.store,
            ctx,
            None,
            "user.create",
            format!("user:{}", user.id),
            json!({"email": email, "role": req.role.as_str()}),
        )
        .await?;
        Ok(user_view(&user))
    }

    async fn list_audit_events(
        &self,
        ctx: &RequestContext,
        limit: u32,
    ) -> Result<Vec<AuditEventView>, ApiError> {
        ctx.admin()?;
        let events = self
            .store
            .audit_events()
            .latest(limit.min(500))
            .await
            .map_err(internal("list audit events"))?;
        Ok(events.into_iter().map(audit_view).collect())
    }
}
