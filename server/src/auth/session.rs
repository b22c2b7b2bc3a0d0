//! The portal's view of a tower-sessions session.

use app::{
    model::{ApiError, UserId},
    services::SessionControl,
};
use async_trait::async_trait;
use tower_sessions::Session;

pub use crate::store::USER_ID_KEY;

/// Wraps the request's tower-sessions `Session`.
pub struct BrowserSession(pub Session);

#[async_trait]
impl SessionControl for BrowserSession {
    async fn sign_in(&self, user: &UserId) -> Result<(), ApiError> {
        // A new id at sign-in defeats session fixation (OWASP Session Management Cheat Sheet).
        self.0.cycle_id().await.map_err(|e| {
            tracing::error!(error = %e, "cannot rotate session id");
            ApiError::internal()
        })?;
        self.0.insert(USER_ID_KEY, &user.0).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write session");
            ApiError::internal()
        })
    }

    async fn sign_out(&self) -> Result<(), ApiError> {
        self.0.flush().await.map_err(|e| {
            tracing::error!(error = %e, "cannot delete session");
            ApiError::internal()
        })
    }
}

/// The signed-in user's id stored in `session`, if any.
pub async fn session_user_id(session: &Session) -> Option<String> {
    match session.get::<String>(USER_ID_KEY).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable session ignored");
            None
        }
    }
}
