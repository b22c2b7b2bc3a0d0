//! Password hashing with argon2id (RFC 9106) using the `argon2` crate's defaults
//! (m = 19 MiB, t = 2, p = 1: the OWASP Password Storage Cheat Sheet's first choice), stored as
//! PHC strings. Hashing runs on the blocking pool: it takes tens of milliseconds on purpose.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

/// Errors of hashing (never of a wrong password: that is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Hashes `password` with a fresh random salt; returns the PHC string.
///
/// # Errors
/// `PasswordError::Hash` if argon2 refuses the input (it accepts any length we allow).
pub async fn hash_password(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await?
}

/// A PHC hash of a random password, verified against when the account does not exist so that
/// unknown emails take as long as wrong passwords (no account enumeration by timing).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vb6MDe7fpSL8cQNpJ5Xb6ykh9zqgAv5x6Q2nUWtCC8Y";

/// Checks `password` against a stored PHC hash (or a dummy when `hash` is `None`, which
/// always fails). Comparison is constant-time inside the argon2 crate.
///
/// # Errors
/// `PasswordError::Join` if the blocking task panicked.
pub async fn verify_password(
    password: String,
    hash: Option<String>,
) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let phc = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    })
    .await
    .map_err(PasswordError::from)
}

/// A random password of 20 characters from an alphabet without look-alikes (about 115 bits).
pub fn generate_password() -> String {
    use argon2::password_hash::rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), Some(hash))
            .await
            .unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }
}
