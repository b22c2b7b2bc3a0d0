//! `AccountService`: sign-in/out, the caller's password and API tokens.

use std::{sync::Arc, time::Instant};

use app::{
    model::*,
    services::{AccountService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;

use super::{audit, internal, user_view};
use crate::{
    auth::{password, token, FailureLimiter},
    store::{now_ms, Store, StoreError},
};

/// Limits for failed sign-ins.
#[derive(Debug, Clone, Copy)]
pub struct SignInLimits {
    pub per_account: u32,
    pub per_client: u32,
}

/// The account service.
pub struct AccountsService {
    store: Store,
    limiter: Arc<FailureLimiter>,
    limits: SignInLimits,
    sso: SignInOptions,
}

impl AccountsService {
    pub fn new(
        store: Store,
        limiter: Arc<FailureLimiter>,
        limits: SignInLimits,
        sso: SignInOptions,
    ) -> Self {
        Self {
            store,
            limiter,
            limits,
            sso,
        }
    }

    fn too_many(wait: std::time::Duration) -> ApiError {
        ApiError::new(
            429,
            "too_many_attempts",
            format!(
                "Too many failed sign-ins. Try again in {} minute(s).",
                wait.as_secs().div_ceil(60).max(1)
            ),
        )
    }
}

fn token_view(t: crate::store::ApiTokenRecord) -> ApiTokenView {
    ApiTokenView {
        id: ApiTokenId(t.id),
        name: t.name,
        prefix: t.prefix,
        expires_at_ms: t.expires_at_ms,
        last_used_at_ms: t.last_used_at_ms,
        created_at_ms: t.created_at_ms,
    }
}

#[async_trait]
impl AccountService for AccountsService {
    async fn sign_in(
        &self,
        ctx: &RequestContext,
        email: &str,
        password_text: &str,
    ) -> Result<UserView, ApiError> {
        let session = ctx.session.as_ref().ok_or_else(|| {
            ApiError::new(
                400,
                "no_session",
                "Sign-in needs a browser session; API clients use tokens.",
            )
        })?;
        let email = normalize_email(email);
        let account_key = format!("account:{email}");
        let client_key = format!("client:{}", ctx.client_addr.as_deref().unwrap_or("unknown"));
        let now = Instant::now();
        if let Some(wait) = self
            .limiter
            .blocked_for(&account_key, self.limits.per_account, now)
            .or_else(|| {
                self.limiter
                    .blocked_for(&client_key, self.limits.per_client, now)
            })
        {
            audit(
                &self.store,
                ctx,
                Some(&email),
                "user.sign_in_throttled",
                format!("email:{email}"),
                json!({}),
            )
            .await?;
            return Err(Self::too_many(wait));
        }
        let user = self
            .store
            .users()
            .by_email(&email)
            .await
            .map_err(internal("load user for sign-in"))?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = password::verify_password(password_text.to_owned(), hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "password verification failed");
                ApiError::internal()
            })?;
        let user = match user {
            Some(u) if ok && !u.disabled => u,
            _ => {
                self.limiter.record_failure(&account_key, now);
                self.limiter.record_failure(&client_key, now);
                audit(
                    &self.store,
                    ctx,
                    Some(&email),
                    "user.sign_in_failed",
                    format!("email:{email}"),
                    json!({}),
                )
                .await?;
                return Err(ApiError::new(
                    401,
                    "invalid_credentials",
                    "The email or password is not correct.",
                ));
            }
        };
        self.limiter.clear(&account_key);
        let view = user_view(&user);
        session.sign_in(&view.id).await?;
        let signed_in = RequestContext {
            caller: Some(view.clone()),
            ..ctx.clone()
        };
        audit(
            &self.store,
            &signed_in,
            None,
            "user.sign_in",
            format!("user:{}", view.id),
            json!({"method": "password"}),
        )
        .await?;
        Ok(view)
    }

    async fn sign_out(&self, ctx: &RequestContext) -> Result<(), ApiError> {
        if let Some(session) = &ctx.session {
            session.sign_out().await?;
        }
        if let Some(user) = &ctx.caller {
            audit(
                &self.store,
                ctx,
                None,
                "user.sign_out",
                format!("user:{}", user.id),
                json!({}),
            )
            .await?;
        }
        Ok(())
    }

    fn sign_in_options(&self) -> SignInOptions {
        self.sso.clone()
    }

    async fn change_password(
        &self,
        ctx: &RequestContext,
        req: ChangePassword,
    ) -> Result<(), ApiError> {
        let caller = ctx.signed_in()?;
        let user = self
            .store
            .users()
            .by_id(&caller.id.0)
            .await
            .map_err(internal("load user"))?
            .ok_or_else(ApiError::unauthenticated)?;
        let Some(hash) = user.password_hash.clone() else {
            return Err(ApiError::invalid_field(
                "current_password",
                "no_password",
                "This account signs in with SSO and has no password to change.",
            ));
        };
        let ok = password::verify_password(req.current_password, Some(hash))
            .await
            .map_err(|_| ApiError::internal())?;
        if !ok {
            return Err(ApiError::invalid_field(
                "current_password",
                "wrong_password",
                "The current password is not correct.",
            ));
        }
        validate_new_password(&req.new_password).map_err(|mut e| {
            e.field = Some("new_password".into());
            e
        })?;
        let new_hash = password::hash_password(req.new_password)
            .await
            .map_err(|_| ApiError::internal())?;
        self.store
            .users()
            .set_password(&user.id, &new_hash, false)
            .await
            .map_err(internal("set password"))?;
        audit(
            &self.store,
            ctx,
            None,
            "user.change_password",
            format!("user:{}", user.id),
            json!({}),
        )
        .await
    }

    async fn list_tokens(&self, ctx: &RequestContext) -> Result<Vec<ApiTokenView>, ApiError> {
        let caller = ctx.user()?;
        let tokens = self
            .store
            .api_tokens()
            .list_for_user(&caller.id.0)
            .await
            .map_err(internal("list tokens"))?;
        Ok(tokens.into_iter().map(token_view).collect())
    }

    async fn create_token(
        &self,
        ctx: &RequestContext,
        req: CreateApiToken,
    ) -> Result<NewApiToken, ApiError> {
        let caller = ctx.user()?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ApiError::invalid_field(
                "name",
                "invalid_token_name",
                "Give the token a name of 1–64 characters, e.g. 'ci-deploy'.",
            ));
        }
        let expires_at_ms = match req.expires_in_days {
            None => None,
            Some(d @ 1..=3650) => Some(now_ms() + i64::from(d) * 86_400_000),
            Some(d) => {
                return Err(ApiError::invalid_field(
                    "expires_in_days",
                    "invalid_expiry",
                    format!(
                        "{d} days is out of range. Leave it empty for no expiry, or use 1–3650."
                    ),
                ))
            }
        };
        let (secret, prefix) = token::generate_secret();
        let record = self
            .store
            .api_tokens()
            .create(
                &caller.id.0,
                name,
                &prefix,
                &token::hash_secret(&secret),
                expires_at_ms,
            )
            .await
            .map_err(internal("create token"))?;
        audit(
            &self.store,
            ctx,
            None,
            "token.create",
            format!("token:{}", record.id),
            json!({"name": name}),
        )
        .await?;
        Ok(NewApiToken {
            token: token_view(record),
            secret,
        })
    }

    async fn revoke_token(&self, ctx: &RequestContext, id: &ApiTokenId) -> Result<(), ApiError> {
        let caller = ctx.user()?;
        match self.store.api_tokens().revoke(&caller.id.0, &id.0).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::not_found(
                    "token_not_found",
                    "You have no API token with this id.",
                ))
            }
            Err(e) => return Err(internal("revoke token")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "token.revoke",
            format!("token:{id}"),
            json!({}),
        )
        .await
    }
}
