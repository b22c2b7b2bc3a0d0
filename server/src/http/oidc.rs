//! `GET /auth/oidc/start` and `GET /auth/oidc/callback`: the browser side of SSO.
//! Failures return to the sign-in page with `?sso_error=<message>` and leave no session.

use app::{model::UserId, services::RequestContext, services::SessionControl};
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
    Extension,
};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::AppState;
use crate::{
    auth::{
        oidc::{resolve_account, OidcError, PendingLogin, PENDING_KEY},
        session::BrowserSession,
    },
    platform::{audit, user_view},
};

fn back_to_sign_in(message: &str) -> Response {
    let encoded: String =
        openidconnect::url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    Redirect::to(&format!("/sign-in?sso_error={encoded}")).into_response()
}

/// Redirects the browser to the identity provider, remembering state, nonce and the PKCE
/// verifier in the session.
pub async fn start(State(state): State<AppState>, session: Session) -> Response {
    let Some(provider) = state.oidc.as_ref() else {
        return back_to_sign_in("Single sign-on is not configured on this Berth.");
    };
    match provider.begin().await {
        Ok((url, pending)) => {
            if let Err(e) = session.insert(PENDING_KEY, pending).await {
                tracing::error!(error = %e, "cannot store pending SSO sign-in");
                return back_to_sign_in("Sign-in could not be started. Try again.");
            }
            Redirect::to(&url).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "SSO sign-in could not start");
            back_to_sign_in(&format!("Single sign-on is unavailable: {e}."))
        }
    }
}

/// Query of the provider's redirect (OpenID Connect Core §3.1.2.5 and §3.1.2.6).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Completes the sign-in: verifies everything, finds or creates the account, signs the
/// session in with a new id.
pub async fn callback(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    session: Session,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(provider) = state.oidc.as_ref() else {
        return back_to_sign_in("Single sign-on is not configured on this Berth.");
    };
    // One use only: a replayed callback finds nothing pending.
    let pending: Option<PendingLogin> = session.remove(PENDING_KEY).await.ok().flatten();
    let result = async {
        if let Some(error) = q.error {
            return Err(OidcError::Refused(q.error_description.unwrap_or(error)));
        }
        let (Some(code), Some(returned_state), Some(pending)) = (q.code, q.state, pending) else {
            return Err(OidcError::StateMismatch);
        };
        let identity = provider.finish(pending, &code, &returned_state).await?;
        resolve_account(&state.store, &identity).await
    }
    .await;
    match result {
        Ok((user, created)) => {
            let view = user_view(&user);
            let browser = BrowserSession(session);
            if browser.sign_in(&UserId(user.id.clone())).await.is_err() {
                return back_to_sign_in("Sign-in could not be completed. Try again.");
            }
            let signed_in = RequestContext {
                caller: Some(view),
                ..ctx.clone()
            };
            let detail = json!({"method": "oidc", "account_created": created});
            if audit(
                &state.store,
                &signed_in,
                None,
                "user.sign_in",
                format!("user:{}", user.id),
                detail,
            )
            .await
            .is_err()
            {
                return back_to_sign_in("Sign-in could not be recorded. Try again.");
            }
            Redirect::to("/projects").into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "SSO sign-in refused");
            let _ = audit(
                &state.store,
                &ctx,
                Some("sso"),
                "user.sign_in_failed",
                "oidc".into(),
                json!({"method": "oidc", "reason": e.to_string()}),
            )
            .await;
            let message = match e {
                OidcError::Store(_) => "Sign-in failed on our side. Try again.".to_owned(),
                other => format!("Single sign-on failed: {other}."),
            };
            back_to_sign_in(&message)
        }
    }
}
