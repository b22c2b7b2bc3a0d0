//! Custom domains: a customer's hostname routed to one of their deployments once Berth has
//! seen DNS prove they control it.

use serde::{Deserialize, Serialize};

use super::{ApiError, DeploymentId};

id_type!(
    /// A custom domain's id: a UUIDv7 string.
    DomainId
);

/// The label of the TXT record that proves control of a domain: `_berth-challenge.<domain>`.
pub const CHALLENGE_LABEL: &str = "_berth-challenge";

/// A domain to add to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AddDomain {
    /// A fully qualified hostname such as `shop.example.com` (no scheme, port or trailing dot).
    pub hostname: String,
}

/// Where a domain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    /// Waiting for the DNS records; Berth keeps checking, with backoff.
    Pending,
    /// DNS proved control: the domain is routed.
    Verified,
}

/// A DNS record the customer is to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DnsRecord {
    /// `TXT`, `CNAME` or `A`.
    pub kind: String,
    /// The record's full name.
    pub name: String,
    /// What it must contain or point to.
    pub value: String,
}

/// A custom domain as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DomainView {
    pub id: DomainId,
    pub deployment_id: DeploymentId,
    pub hostname: String,
    pub status: DomainStatus,
    /// The records to create: the TXT proof, and a CNAME to the deployment's generated
    /// hostname (or, for a zone apex, A records to the ingress).
    pub dns_records: Vec<DnsRecord>,
    /// What the last check found, in words; empty before the first.
    pub last_result: String,
    /// Unix epoch ms of the last check.
    pub last_check_at_ms: Option<i64>,
    /// Unix epoch ms of the next automatic check (pending domains).
    pub next_check_at_ms: Option<i64>,
    pub verified_at_ms: Option<i64>,
    /// Plain-HTTP requests get a 308 to HTTPS once the certificate is issued.
    pub redirect_https: bool,
    /// The domain's TLS certificate; `None` until the domain is verified (or without ACME).
    pub certificate: Option<CertificateView>,
    /// `https://<hostname>[:port]/` once a certificate is issued.
    pub https_url: Option<String>,
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    /// Not issued yet; the first attempt is due.
    Pending,
    /// Issued and valid.
    Issued,
    /// Never issued: the last attempt failed (see `last_error`); Berth retries with backoff.
    Failed,
    /// Issued, but the last renewal failed; the current certificate is still served.
    RenewalFailing,
    /// Past its expiry and not renewed.
    Expired,
}

/// A TLS certificate as the API shows it (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CertificateView {
    pub state: CertificateState,
    /// `acme` (from the configured CA) or `self_signed`.
    pub source: String,
    /// Unix epoch ms.
    pub not_before_ms: Option<i64>,
    /// Unix epoch ms.
    pub not_after_ms: Option<i64>,
    /// Why the last attempt failed; empty after a success.
    pub last_error: String,
    /// Unix epoch ms of the next issuance or renewal attempt.
    pub next_attempt_at_ms: i64,
}

/// A change to a custom domain's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UpdateDomain {
    /// Redirect plain-HTTP requests to HTTPS (308) once a certificate is issued.
    pub redirect_https: bool,
}

/// Checks a custom domain and returns it lower-cased: a DNS name (RFC 1035 §2.3.4: labels of
/// 1–63 letters, digits and `-`, not starting or ending with `-`; 253 characters at most) of
/// at least two labels, not an IP address, not under `base_domain` (those names are Berth's).
///
/// # Errors
/// 400 `invalid_domain` on field `hostname`, saying what is wrong and what is accepted;
/// `wildcard_needs_dns01` for `*.` names.
pub fn validate_domain(hostname: &str, base_domain: &str) -> Result<String, ApiError> {
    let name = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = |why: String| {
        ApiError::invalid_field(
            "hostname",
            "invalid_domain",
            format!("{why} Use a full hostname such as shop.example.com: labels of letters, digits and '-', separated by dots."),
        )
    };
    if name.starts_with("*.") {
        return Err(ApiError::invalid_field(
            "hostname",
            "wildcard_needs_dns01",
            "Wildcard domains need a DNS-01 certificate, which Berth cannot issue yet. Add each hostname on its own.",
        ));
    }
    if name.is_empty() {
        return Err(bad("The domain is empty.".into()));
    }
    if name.len() > 253 {
        return Err(bad(format!(
            "The domain is {} characters long; 253 at most.",
            name.len()
        )));
    }
    if name.contains("://") || name.contains('/') || name.contains(':') {
        return Err(bad(
            "Give only the hostname, without scheme, path or port.".into()
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(bad(format!("'{name}' has a single label.")));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(format!("'{label}' is not a valid label of '{name}'.")));
        }
    }
    if labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad(format!("'{name}' is an IP address, not a domain.")));
    }
    let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
    if name == base || name.ends_with(&format!(".{base}")) {
        return Err(bad(format!(
            "Names under {base} are the generated hostnames Berth hands out."
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_or_refused_with_the_reason() {
        assert_eq!(
            validate_domain(" Shop.Example.COM. ", "apps.berth.test").unwrap(),
            "shop.example.com"
        );
        assert_eq!(
            validate_domain("*.example.com", "x").unwrap_err().code,
            "wildcard_needs_dns01"
        );
        for bad in [
            "",
            "localhost",
            "https://shop.example.com",
            "shop.example.com:8443",
            "-shop.example.com",
            "shop..example.com",
            "sh_op.example.com",
            "10.0.0.1",
            "web-shop.apps.berth.test",
            &format!("{}.com", "a".repeat(64)),
        ] {
            let e = validate_domain(bad, "apps.berth.test").unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.field.as_deref()),
                ("invalid_domain", Some("hostname")),
                "{bad}"
            );
        }
    }
}
