//! Custom domains: a customer's hostname routed to one of their deployments once Berth has
//! seen DNS prove they control it.

use serde::{Deserialize, Serialize};

use super::{ApiError, DeploymentId};

id_type!(
    /// A custom domain's id: a UUIDv7 string.
    DomainId
);

id_type!(
    /// A path route's id: a UUIDv7 string.
    PathRouteId
);

/// The label of the TXT record that proves control of a domain: `_berth-challenge.<domain>`.
pub const CHALLENGE_LABEL: &str = "_berth-challenge";

/// For a wildcard domain `*.example.com`, the name whose address records are checked: a
/// name the wildcard covers, `berth-wildcard-check.example.com`.
pub const WILDCARD_PROBE_LABEL: &str = "berth-wildcard-check";

/// The TXT record that proves control of `hostname`: `_berth-challenge.<hostname>`, and for
/// a wildcard `*.example.com` the record of the name it sits under,
/// `_berth-challenge.example.com`.
pub fn proof_record(hostname: &str) -> String {
    let owner = hostname.strip_prefix("*.").unwrap_or(hostname);
    format!("{CHALLENGE_LABEL}.{owner}")
}

/// A domain to add to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AddDomain {
    /// A fully qualified hostname such as `shop.example.com` (no scheme, port or trailing dot),
    /// or a wildcard such as `*.shop.example.com` (one label; needs the installation's DNS-01
    /// set-up).
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

/// Serve a deployment under a path of one of its project's custom domains, e.g. `/api` of
/// `shop.example.com`. The longest matching prefix wins; the rest of the domain stays with
/// the domain's own deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AddPathRoute {
    /// A custom domain of the same project (any deployment's), e.g. `shop.example.com`.
    pub hostname: String,
    /// `/` followed by path segments, e.g. `/api` or `/docs/v2` (no trailing `/`, no query).
    /// A request matches when its path is the prefix or continues with `/`.
    pub path_prefix: String,
    /// Send the app the path without the prefix (`/api/users` arrives as `/users`, with
    /// `X-Forwarded-Prefix: /api`). Default `false`.
    #[serde(default)]
    pub strip_prefix: bool,
}

/// A path route as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PathRouteView {
    pub id: PathRouteId,
    pub deployment_id: DeploymentId,
    pub domain_id: DomainId,
    pub hostname: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// Whether the domain is verified (only then is the path routed).
    pub routed: bool,
}

/// Checks a path prefix: `/` then segments of URL path characters (RFC 3986 `pchar` without
/// percent-encoding: letters, digits, `-._~!$&'()*+,;=:@`), no empty, `.` or `..` segment,
/// 200 characters at most. A trailing `/` is dropped; `/` alone is refused (it is the
/// domain's own deployment).
///
/// # Errors
/// 400 `invalid_path_prefix` on field `path_prefix`, saying what is accepted.
pub fn validate_path_prefix(prefix: &str) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_field(
            "path_prefix",
            "invalid_path_prefix",
            format!("{why} Use a path such as /api or /docs/v2: '/' then segments of letters, digits and -._~ (no query, no '..')."),
        )
    };
    let p = prefix.trim();
    if !p.starts_with('/') {
        return Err(bad("The path must start with '/'."));
    }
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        return Err(bad(
            "'/' is the domain itself, served by its own deployment.",
        ));
    }
    if p.len() > 200 {
        return Err(bad("The path is longer than 200 characters."));
    }
    for segment in p[1..].split('/') {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c));
        if !ok {
            return Err(bad(&format!(
                "'{segment}' is not an accepted path segment."
            )));
        }
    }
    Ok(p.to_owned())
}

/// Checks a custom domain and returns it lower-cased: a DNS name (RFC 1035 §2.3.4: labels of
/// 1–63 letters, digits and `-`, not starting or ending with `-`; 253 characters at most) of
/// at least two labels, not an IP address, not under `base_domain` (those names are Berth's).
/// With `wildcards`, `*.` followed by such a name is accepted too (a wildcard certificate
/// needs DNS-01: the installation must have an RFC 2136 update server).
///
/// # Errors
/// 400 `invalid_domain` on field `hostname`, saying what is wrong and what is accepted;
/// `wildcard_needs_dns01` for `*.` names without `wildcards`.
pub fn validate_domain(
    hostname: &str,
    base_domain: &str,
    wildcards: bool,
) -> Result<String, ApiError> {
    let full = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
    let (prefix, name) = match full.strip_prefix("*.") {
        Some(rest) if wildcards => ("*.", rest.to_owned()),
        _ => ("", full.clone()),
    };
    let bad = |why: String| {
        ApiError::invalid_field(
            "hostname",
            "invalid_domain",
            format!("{why} Use a full hostname such as shop.example.com: labels of letters, digits and '-', separated by dots."),
        )
    };
    if !wildcards && name.starts_with("*.") {
        return Err(ApiError::invalid_field(
            "hostname",
            "wildcard_needs_dns01",
            "Wildcard domains need DNS-01 certificates, and this installation has no DNS update server set up for them (ask an admin). Add each hostname on its own.",
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
    Ok(format!("{prefix}{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes_are_normalised_or_refused() {
        assert_eq!(validate_path_prefix(" /api/ ").unwrap(), "/api");
        assert_eq!(validate_path_prefix("/docs/v2").unwrap(), "/docs/v2");
        for bad in [
            "", "/", "api", "/a//b", "/a/../b", "/a?x=1", "/a#f", "/a b", "/%2e%2e",
        ] {
            assert_eq!(
                validate_path_prefix(bad).unwrap_err().code,
                "invalid_path_prefix",
                "{bad}"
            );
        }
    }

    #[test]
    fn domains_are_normalised_or_refused_with_the_reason() {
        assert_eq!(
            validate_domain(" Shop.Example.COM. ", "apps.berth.test", false).unwrap(),
            "shop.example.com"
        );
        assert_eq!(
            validate_domain("*.example.com", "x", false)
                .unwrap_err()
                .code,
            "wildcard_needs_dns01"
        );
        assert_eq!(
            validate_domain("*.Example.com", "x", true).unwrap(),
            "*.example.com"
        );
        assert_eq!(
            proof_record("*.example.com"),
            "_berth-challenge.example.com"
        );
        assert_eq!(proof_record("example.com"), "_berth-challenge.example.com");
        for bad in [
            "*.*.example.com",
            "*.com",
            "a.*.example.com",
            "*.web-shop.apps.berth.test",
        ] {
            assert_eq!(
                validate_domain(bad, "apps.berth.test", true)
                    .unwrap_err()
                    .code,
                "invalid_domain",
                "{bad}"
            );
        }
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
            let e = validate_domain(bad, "apps.berth.test", true).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.field.as_deref()),
                ("invalid_domain", Some("hostname")),
                "{bad}"
            );
        }
    }
}
