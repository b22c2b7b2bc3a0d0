//! Encryption of secrets at rest (secret env values; later keys and credentials):
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`, draft-irtf-cfrg-xchacha) with a random
//! 192-bit nonce per value, so nonces never need coordinating between controllers.
//!
//! A sealed value is the text `enc:v1:` followed by base64 (standard, padded) of
//! `nonce (24 bytes) || ciphertext || tag (16 bytes)`.

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng},
    XChaCha20Poly1305,
};

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

/// `bytes` random bytes from the operating system, as lower-case hex (webhook ids and
/// secrets).
pub fn random_hex(bytes: usize) -> String {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured key is not 32 bytes of base64.
    #[error("the secret key must be 32 bytes in base64 (openssl rand -base64 32): {0}")]
    BadKey(String),
    /// The key file could not be read or created.
    #[error("cannot read or create the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The value was not sealed with this key, or it was altered.
    #[error("a stored secret cannot be decrypted (wrong key or altered value)")]
    Undecryptable,
}

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box from a base64 key of 32 bytes.
    ///
    /// # Errors
    /// `BadKey` when the text is not base64 of exactly 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|e| SecretError::BadKey(e.to_string()))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| SecretError::BadKey(format!("{} bytes", bytes.len())))?;
        Ok(Self { cipher })
    }

    /// The configured key, or the one in `path`, which is created (mode 0600, 32 random
    /// bytes) when it does not exist yet.
    ///
    /// # Errors
    /// `BadKey`, `KeyFile`.
    pub fn from_config_or_file(configured: Option<&str>, path: &Path) -> Result<Self, SecretError> {
        if let Some(key) = configured {
            return Self::from_base64(key);
        }
        let io = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(key) => Self::from_base64(&key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng));
                write_private(path, &key).map_err(io)?;
                tracing::info!(path = %path.display(), "created a new secret key; back it up with the database");
                Self::from_base64(&key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts `plain` into the `enc:v1:` form.
    pub fn seal(&self, plain: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a value made by [`SecretBox::seal`].
    ///
    /// # Errors
    /// `Undecryptable` for anything else, another key's value or an altered one.
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let data = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|d| d.len() > NONCE_LEN)
            .ok_or(SecretError::Undecryptable)?;
        let (nonce, body) = data.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(nonce.into(), body)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = SecretBox::from_config_or_file(None, &path).unwrap();
        let again = SecretBox::from_config_or_file(None, &path).unwrap();
        let sealed = a.seal("hunter2-password");
        assert!(sealed.starts_with("enc:v1:"));
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, a.seal("hunter2-password"), "fresh nonce per value");
        assert_eq!(again.open(&sealed).unwrap(), "hunter2-password");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = SecretBox::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other.open(&sealed).is_err());
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(a.open(&altered).is_err());
        assert!(a.open("plain").is_err());
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
    }
}
