//! Server functions for the caller's own account: sign-in, sign-out, password, API tokens.

use leptos::prelude::*;

use crate::model::*;

/// The signed-in user, or `None`.
#[server(prefix = "/rpc", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<UserView>, ApiError> {
    let (_, ctx) = super::context()?;
    Ok(ctx.caller)
}

/// What the sign-in page offers (SSO or not).
#[server(prefix = "/rpc", endpoint = "sign_in_options")]
pub async fn sign_in_options() -> Result<crate::model::SignInOptions, ApiError> {
    let (services, _) = super::context()?;
    Ok(services.accounts.sign_in_options())
}

/// Signs in with email and password, then sends the browser to the projects list (or to the
/// account page while a one-time password must be replaced).
#[server(prefix = "/rpc", endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    let user = services
        .accounts
        .sign_in(&ctx, &email, &password)
        .await
        .map_err(super::tag(&ctx))?;
    if user.must_change_password {
        leptos_axum::redirect("/account?first=1");
    } else {
        leptos_axum::redirect("/projects");
    }
    Ok(())
}

/// Signs out and returns to the sign-in page.
#[server(prefix = "/rpc", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .accounts
        .sign_out(&ctx)
        .await
        .map_err(super::tag(&ctx))?;
    leptos_axum::redirect("/sign-in");
    Ok(())
}

/// Replaces the caller's password.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .accounts
        .change_password(
            &ctx,
            crate::model::ChangePassword {
                current_password,
                new_password,
            },
        )
        .await
        .map_err(super::tag(&ctx))
}

/// The caller's API tokens.
#[server(prefix = "/rpc", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<ApiTokenView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .accounts
        .list_tokens(&ctx)
        .await
        .map_err(super::tag(&ctx))
}

/// Creates an API token. `expires_in_days` is a form field: empty for no expiry, else 1–3650.
#[server(prefix = "/rpc", endpoint = "create_token")]
pub async fn create_token(name: String, expires_in_days: String) -> Result<NewApiToken, ApiError> {
    let (services, ctx) = super::context()?;
    let expires_in_days = match expires_in_days.trim() {
        "" => None,
        s => Some(
            s.parse::<u32>()
                .map_err(|_| {
                    ApiError::invalid_field(
                        "expires_in_days",
                        "invalid_expiry",
                        format!(
                    "'{s}' is not a number of days. Leave it empty for no expiry, or use 1–3650."
                ),
                    )
                })
                .map_err(super::tag(&ctx))?,
        ),
    };
    services
        .accounts
        .create_token(
            &ctx,
            crate::model::CreateApiToken {
                name,
                expires_in_days,
            },
        )
        .await
        .map_err(super::tag(&ctx))
}

/// Revokes one of the caller's API tokens.
#[server(prefix = "/rpc", endpoint = "revoke_token")]
pub async fn revoke_token(id: ApiTokenId) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .accounts
        .revoke_token(&ctx, &id)
        .await
        .map_err(super::tag(&ctx))
}
