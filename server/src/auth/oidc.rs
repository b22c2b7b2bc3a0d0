//! OpenID Connect sign-in (OpenID Connect Core 1.0, authorization code flow) with the
//! `openidconnect` crate: discovery from the issuer URL, PKCE (RFC 7636, S256), `state`
//! against CSRF, `nonce` against replay, ID token signature/issuer/audience/expiry checks.
//!
//! Users are keyed by issuer + `sub`. A first SSO sign-in links to an existing account only
//! when the provider says the email is verified; otherwise it creates a customer account (also
//! only with a verified email). An optional claim value grants `admin`.

use std::sync::Arc;

use base64::Engine;
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::constant_time_eq;
use crate::{
    config::OidcConfig,
    store::{NewUser, Store, StoreError, UserRecord},
};

/// Path of the redirect URI registered at the provider: `<public_url>/auth/oidc/callback`.
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";

/// What the provider and Berth can get wrong; the message is shown on the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached or answered badly: {0}")]
    Provider(String),
    #[error("the sign-in request expired or came from another browser; start again")]
    StateMismatch,
    #[error("the identity provider's answer failed verification: {0}")]
    Verification(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Account(String),
    #[error("internal error")]
    Store(#[from] StoreError),
}

/// The pending sign-in, kept in the browser's session between start and callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Session key of [`PendingLogin`].
pub const PENDING_KEY: &str = "oidc_pending";

/// The verified identity from an ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Whether the configured admin claim carries the admin value.
    pub is_admin: bool,
}

/// An OIDC relying party for one configured provider.
pub struct OidcProvider {
    config: OidcConfig,
    redirect_url: String,
    http: openidconnect::reqwest::Client,
    metadata: RwLock<Option<CoreProviderMetadata>>,
}

impl OidcProvider {
    /// A provider for `config`; discovery happens on first use (and again after a failure),
    /// so Berth starts even while the provider is down.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: OidcConfig, public_url: &str) -> Result<Arc<Self>, OidcError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would expose us to SSRF (openidconnect crate docs).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(Arc::new(Self {
            config,
            redirect_url: format!("{public_url}{CALLBACK_PATH}"),
            http,
            metadata: RwLock::new(None),
        }))
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        if let Some(m) = self.metadata.read().await.clone() {
            return Ok(m);
        }
        let issuer = IssuerUrl::new(self.config.issuer_url.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Provider(format!("discovery failed: {e}")))?;
        *self.metadata.write().await = Some(m.clone());
        Ok(m)
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.redirect_url.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: the provider URL to send the browser to, and what to remember.
    ///
    /// # Errors
    /// `Provider` when discovery fails.
    pub async fn begin(&self) -> Result<(String, PendingLogin), OidcError> {
        let client = self.client(self.metadata().await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            PendingLogin {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Finishes a sign-in: checks `state`, redeems `code` with the PKCE verifier, verifies
    /// the ID token (signature, issuer, audience, expiry, nonce) and returns the identity.
    ///
    /// # Errors
    /// `StateMismatch`, `Provider`, `Verification`.
    pub async fn finish(
        &self,
        pending: PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<Identity, OidcError> {
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(OidcError::StateMismatch);
        }
        let client = self.client(self.metadata().await?)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Provider(format!("code exchange failed: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Verification("no ID token in the token response".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| OidcError::Verification(e.to_string()))?;
        let is_admin = match (&self.config.admin_claim, &self.config.admin_value) {
            (Some(claim), Some(value)) => {
                raw_claim(&id_token.to_string(), claim).is_some_and(|v| claim_has_value(&v, value))
            }
            _ => false,
        };
        Ok(Identity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            is_admin,
        })
    }
}

/// Reads one claim from an ID token's payload. Only called on a token whose signature and
/// claims were verified just before; custom claims are not part of `CoreIdTokenClaims`.
fn raw_claim(jwt: &str, name: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get(name).cloned()
}

/// True when the claim equals `value` or is an array containing it.
fn claim_has_value(claim: &serde_json::Value, value: &str) -> bool {
    match claim {
        serde_json::Value::String(s) => s == value,
        serde_json::Value::Array(items) => items.iter().any(|i| i.as_str() == Some(value)),
        _ => false,
    }
}

/// Finds or creates the Berth account of a verified identity:
/// 1. the account already linked to issuer + subject;
/// 2. else the account with the same email, linked now, if the email is verified;
/// 3. else a new customer account, if the email is verified.
///
/// Linking voids a one-time password the account never replaced. The admin claim promotes
/// the account to `admin`; it never demotes (an admin made in Berth stays one).
///
/// # Errors
/// `Account` when the email is missing or unverified, or belongs to an account linked to a
/// different identity.
pub async fn resolve_account(
    store: &Store,
    id: &Identity,
) -> Result<(UserRecord, bool), OidcError> {
    let users = store.users();
    let (user, created) = if let Some(u) = users.by_oidc_identity(&id.issuer, &id.subject).await? {
        (u, false)
    } else {
        let email = id
            .email
            .as_deref()
            .map(app::model::normalize_email)
            .ok_or_else(|| OidcError::Account("the identity provider sent no email address; Berth needs one to create or link an account".into()))?;
        if !id.email_verified {
            return Err(OidcError::Account(format!(
                "the identity provider has not verified {email}; verify it there, then sign in again"
            )));
        }
        match users.by_email(&email).await? {
            Some(existing) if existing.oidc_subject.is_some() => {
                return Err(OidcError::Account(format!(
                    "{email} is linked to another single sign-on identity"
                )))
            }
            Some(existing) => {
                users
                    .link_oidc_identity(&existing.id, &id.issuer, &id.subject)
                    .await?;
                if existing.must_change_password {
                    // An unused one-time password is void once the owner chose SSO.
                    users.clear_password(&existing.id).await?;
                }
                let linked = users
                    .by_id(&existing.id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                (linked, false)
            }
            None => {
                let name = id.name.clone().unwrap_or_else(|| email.clone());
                let user = users
                    .create(NewUser {
                        email,
                        display_name: name,
                        role: "customer".into(),
                        password_hash: None,
                        must_change_password: false,
                        oidc_issuer: Some(id.issuer.clone()),
                        oidc_subject: Some(id.subject.clone()),
                    })
                    .await?;
                (user, true)
            }
        }
    };
    if user.disabled {
        return Err(OidcError::Account("this account is disabled".into()));
    }
    if id.is_admin && user.role != "admin" {
        users.set_role(&user.id, "admin").await?;
        let user = users.by_id(&user.id).await?.ok_or(StoreError::NotFound)?;
        return Ok((user, created));
    }
    Ok((user, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_claim_matches_strings_and_arrays() {
        assert!(claim_has_value(&serde_json::json!("ops"), "ops"));
        assert!(claim_has_value(&serde_json::json!(["a", "ops"]), "ops"));
        assert!(!claim_has_value(&serde_json::json!(["a"]), "ops"));
        assert!(!claim_has_value(&serde_json::json!(true), "ops"));
    }

    #[test]
    fn reads_a_claim_from_a_jwt_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1","groups":["ops"]}"#);
        let jwt = format!("e30.{payload}.sig");
        assert_eq!(raw_claim(&jwt, "groups"), Some(serde_json::json!(["ops"])));
        assert_eq!(raw_claim(&jwt, "missing"), None);
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
