//! The first admin account: created on first start with an empty database, with a generated
//! one-time password printed once. There are no default credentials.

use crate::store::{NewUser, Store, StoreError};

use super::password::{generate_password, hash_password};

/// Credentials of an account Berth just created, to print once.
#[derive(Debug, Clone)]
pub struct GeneratedCredentials {
    pub email: String,
    pub password: String,
}

/// Creates the first admin when there are no users at all; returns its credentials.
/// With any user present it does nothing and returns `None`.
///
/// # Errors
/// Store errors; hashing errors as `StoreError::Corrupt`.
pub async fn ensure_first_admin(
    store: &Store,
    email: &str,
) -> Result<Option<GeneratedCredentials>, StoreError> {
    if store.users().count().await? > 0 {
        return Ok(None);
    }
    let password = generate_password();
    let hash = hash_password(password.clone())
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let email = app::model::normalize_email(email);
    match store
        .users()
        .create(NewUser {
            email: email.clone(),
            display_name: "Administrator".into(),
            role: "admin".into(),
            password_hash: Some(hash),
            must_change_password: true,
            oidc_issuer: None,
            oidc_subject: None,
        })
        .await
    {
        Ok(_) => Ok(Some(GeneratedCredentials { email, password })),
        // Another controller created it at the same moment.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
