//! Personal API token secrets: `berth_` followed by 32 random bytes in unpadded base64url.
//! Only the hex SHA-256 of a secret is stored; a fast hash is right here because the secret
//! has 256 bits of entropy (nothing to brute-force), unlike a password.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefix of every secret, so that leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "berth_";

/// A new secret and the part of it shown in listings (the first 12 characters).
pub fn generate_secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let shown = secret[..12].to_owned();
    (secret, shown)
}

/// Lower-case hex SHA-256 of a secret, the form stored and looked up.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_stably() {
        let (a, shown) = generate_secret();
        let (b, _) = generate_secret();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 6 + 43);
        assert!(a.starts_with(&shown));
        assert_ne!(a, b);
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
