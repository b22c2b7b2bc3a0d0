//! TLS termination for the ingress: rustls (ring provider), TLS 1.2 and 1.3, a certificate
//! chosen per connection by SNI ([`CertStore`]).
//!
//! Lookup order for a server name: the certificate for exactly that name, then a wildcard
//! for its parent (`*.example.com` covers `shop.example.com`, one label only, RFC 6125
//! §6.4.3), then the fallback (`*.<base_domain>`, the slot without a domain). A ClientHello that offers
//! only the `acme-tls/1` protocol gets the TLS-ALPN-01 challenge certificate for its name
//! (RFC 8737 §3) and nothing else.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use tokio_rustls::rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};

use crate::{secrets::SecretBox, store::CertificateRecord};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates by server name, swapped as a whole when the store changes.
#[derive(Default)]
pub struct CertStore {
    by_name: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
    fallback: RwLock<Option<Arc<CertifiedKey>>>,
    /// `(id, updated_at_ms)` of the rows loaded, to skip reloading an unchanged table.
    loaded: Mutex<Vec<(String, i64)>>,
    /// TLS-ALPN-01 answers by server name, set while an order is being validated.
    alpn_challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads every row holding a certificate that has not expired at `now_ms`; rows that fail
    /// to parse or decrypt are skipped with a warning. Does nothing when the rows are
    /// unchanged since the last load.
    pub fn load(&self, rows: &[CertificateRecord], secrets: &SecretBox, now_ms: i64) {
        let mut stamp: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r.id.clone(), r.updated_at_ms))
            .collect();
        stamp.sort();
        {
            let mut loaded = self.loaded.lock().expect("cert store lock");
            if *loaded == stamp {
                return;
            }
            *loaded = stamp;
        }
        let mut by_name = HashMap::new();
        let mut fallback = None;
        for row in rows {
            let (Some(pem), Some(sealed)) = (&row.cert_pem, &row.key_sealed) else {
                continue;
            };
            if row.not_after_ms.is_some_and(|t| t <= now_ms) {
                continue;
            }
            let key = match secrets.open(sealed) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(hostname = %row.hostname, error = %e, "cannot open a certificate's key");
                    continue;
                }
            };
            match certified_key(pem, &key) {
                Ok(ck) => {
                    let ck = Arc::new(ck);
                    // The slot without a domain is `*.<base_domain>`: self-signed, or from
                    // the CA when DNS-01 is set up.
                    if row.domain_id.is_none() {
                        fallback = Some(ck.clone());
                    }
                    by_name.insert(row.hostname.clone(), ck);
                }
                Err(e) => {
                    tracing::warn!(hostname = %row.hostname, error = %e, "cannot load a certificate")
                }
            }
        }
        *self.by_name.write().expect("cert store lock") = Arc::new(by_name);
        *self.fallback.write().expect("cert store lock") = fallback;
    }

    /// The certificate for `name` (exact, then wildcard), without the fallback.
    pub fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        let by_name = self.by_name.read().expect("cert store lock").clone();
        if let Some(ck) = by_name.get(&name) {
            return Some(ck.clone());
        }
        let (_, parent) = name.split_once('.')?;
        by_name.get(&format!("*.{parent}")).cloned()
    }

    /// Whether a certificate (not the fallback) covers `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// Publishes the TLS-ALPN-01 certificate for `name`.
    pub fn set_alpn_challenge(&self, name: &str, ck: CertifiedKey) {
        self.alpn_challenges
            .lock()
            .expect("cert store lock")
            .insert(name.to_ascii_lowercase(), Arc::new(ck));
    }

    /// Withdraws the TLS-ALPN-01 certificate for `name`.
    pub fn clear_alpn_challenge(&self, name: &str) {
        self.alpn_challenges
            .lock()
            .expect("cert store lock")
            .remove(&name.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let challenges = self.alpn_challenges.lock().expect("cert store lock");
            return challenges.get(&name?).cloned();
        }
        if let Some(ck) = name.as_deref().and_then(|n| self.lookup(n)) {
            return Some(ck);
        }
        self.fallback.read().expect("cert store lock").clone()
    }
}

/// A certificate chain (PEM, leaf first) and its private key (PKCS#8 PEM) as rustls serves
/// them.
///
/// # Errors
/// A message naming what could not be read.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("certificate chain: no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("private key: {e}"))?;
    let signer = tokio_rustls::rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private key: {e}"))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// The rustls configuration of the HTTPS listener: certificates from `store`, ALPN `h2`,
/// `http/1.1` and `acme-tls/1`.
pub fn server_config(store: Arc<CertStore>) -> Arc<ServerConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Arc::new(config)
}

/// A generated certificate: chain and key as PEM, validity in ms since the epoch.
#[derive(Debug, Clone)]
pub struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

/// A self-signed ECDSA P-256 certificate for `*.<base_domain>` and `<base_domain>`, valid
/// from a day before `now_ms` for `days` days. Browsers warn about it; it keeps HTTPS usable
/// for generated hostnames before (or without) a CA.
///
/// # Errors
/// rcgen's, as text (an invalid base domain).
pub fn self_signed(base_domain: &str, now_ms: i64, days: i64) -> Result<Generated, String> {
    let names = vec![format!("*.{base_domain}"), base_domain.to_owned()];
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, format!("*.{base_domain}"));
    dn.push(rcgen::DnType::OrganizationName, "Berth (self-signed)");
    params.distinguished_name = dn;
    let not_before_ms = now_ms - 86_400_000;
    let not_after_ms = now_ms + days * 86_400_000;
    params.not_before = datetime(not_before_ms)?;
    params.not_after = datetime(not_after_ms)?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before_ms,
        not_after_ms,
    })
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, the name as its only SAN, and the
/// critical `acmeIdentifier` extension holding SHA-256 of the key authorization (RFC 8737 §3).
///
/// # Errors
/// rcgen's, as text.
pub fn alpn_challenge_cert(name: &str, key_auth_digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(key_auth_digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    certified_key(&cert.pem(), &key.serialize_pem())
}

/// `notBefore`/`notAfter` of the first certificate in a PEM chain, ms since the epoch.
///
/// # Errors
/// A message when the PEM or the certificate cannot be parsed.
pub fn validity(chain_pem: &str) -> Result<(i64, i64), String> {
    let first = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("no certificate in the chain")?
        .map_err(|e| e.to_string())?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(first.as_ref()).map_err(|e| e.to_string())?;
    let v = cert.validity();
    Ok((
        v.not_before.timestamp() * 1000,
        v.not_after.timestamp() * 1000,
    ))
}

fn datetime(ms: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hostname: &str, source: &str, g: &Generated, secrets: &SecretBox) -> CertificateRecord {
        CertificateRecord {
            id: hostname.into(),
            hostname: hostname.into(),
            // Custom domains' slots have their domain; `*.<base_domain>`'s has none.
            domain_id: (source == "acme").then(|| hostname.into()),
            source: source.into(),
            cert_pem: Some(g.cert_pem.clone()),
            key_sealed: Some(secrets.seal(&g.key_pem)),
            not_before_ms: Some(g.not_before_ms),
            not_after_ms: Some(g.not_after_ms),
            last_error: String::new(),
            attempts: 0,
            next_attempt_at_ms: 0,
            updated_at_ms: 1,
        }
    }

    #[test]
    fn names_resolve_exact_then_wildcard_and_expired_ones_are_skipped() {
        let secrets = SecretBox::from_base64(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [7u8; 32],
        ))
        .unwrap();
        let now = crate::store::now_ms();
        let fallback = self_signed("localhost", now, 365).unwrap();
        let (nb, na) = validity(&fallback.cert_pem).unwrap();
        assert_eq!(nb / 1000, fallback.not_before_ms / 1000);
        assert_eq!(na / 1000, fallback.not_after_ms / 1000);
        let shop = self_signed("shop.example.com", now, 30).unwrap();
        let old = self_signed("old.example.com", now - 90 * 86_400_000, 30).unwrap();
        let store = CertStore::default();
        store.load(
            &[
                row("*.localhost", "self_signed", &fallback, &secrets),
                row("shop.example.com", "acme", &shop, &secrets),
                row("old.example.com", "acme", &old, &secrets),
            ],
            &secrets,
            now,
        );
        assert!(store.covers("shop.example.com") && store.covers("SHOP.example.com"));
        assert!(store.covers("web-shop.localhost"));
        assert!(
            !store.covers("a.b.localhost"),
            "a wildcard covers one label"
        );
        assert!(!store.covers("old.example.com"), "expired");
        assert!(!store.covers("other.example.com"));
    }

    #[test]
    fn a_broken_chain_is_an_error_not_a_panic() {
        assert!(certified_key("not pem", "not pem").is_err());
        assert!(validity("").is_err());
    }
}
