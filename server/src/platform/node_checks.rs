//! Checks of an admin's request to add a node, before Berth connects to it.

use app::model::*;

use crate::runtime::Endpoint;

/// A form field's text, trimmed; `None` when absent or blank.
pub(super) fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Checks an [`AddNode`] request: names, endpoint, and which credentials the endpoint's
/// scheme needs (`tcp://`: CA, certificate and key; `ssh://`: at most a key; `unix://`:
/// none).
pub(super) fn checked_node(node: &AddNode) -> Result<(), ApiError> {
    validate_dns_label("name", node.name.trim())?;
    validate_dns_label("region", node.region.trim())?;
    validate_dns_label("availability_zone", node.availability_zone.trim())?;
    if let Some(max) = node.max_instances {
        if !(1..=10_000).contains(&max) {
            return Err(ApiError::invalid_field(
                "max_instances",
                "out_of_range",
                format!("{max} instances is out of range: use 1 to 10000."),
            ));
        }
    }
    if let Some(address) = given(&node.advertise_address) {
        checked_advertise_address(address)?;
    }
    let endpoint = Endpoint::parse(node.endpoint.trim())
        .map_err(|e| ApiError::invalid_field("endpoint", "invalid_endpoint", e.to_string()))?;
    let (ca, cert, key) = (
        given(&node.tls_ca_pem),
        given(&node.tls_cert_pem),
        given(&node.private_key_pem),
    );
    let pem = |field: &str, text: Option<&str>, label: &str| -> Result<(), ApiError> {
        match text {
            Some(t) if t.contains("-----BEGIN") && t.contains(label) => Ok(()),
            Some(_) => Err(ApiError::invalid_field(
                field,
                "invalid_pem",
                format!("This is not a PEM {label}: paste the text starting with -----BEGIN."),
            )),
            None => Err(ApiError::invalid_field(
                field,
                "required",
                "A tcp:// node needs the CA certificate, the client certificate and its key \
                 (Docker's --tlsverify mode).",
            )),
        }
    };
    let unwanted = |field: &str| {
        ApiError::invalid_field(
            field,
            "not_for_this_endpoint",
            "TLS certificates are for tcp:// endpoints only; leave this empty.",
        )
    };
    match endpoint {
        Endpoint::Tcp { .. } => {
            pem("tls_ca_pem", ca, "CERTIFICATE")?;
            pem("tls_cert_pem", cert, "CERTIFICATE")?;
            pem("private_key_pem", key, "PRIVATE KEY")?;
        }
        Endpoint::Ssh { .. } | Endpoint::Unix(_) => {
            if ca.is_some() {
                return Err(unwanted("tls_ca_pem"));
            }
            if cert.is_some() {
                return Err(unwanted("tls_cert_pem"));
            }
            if matches!(endpoint, Endpoint::Unix(_)) && key.is_some() {
                return Err(ApiError::invalid_field(
                    "private_key_pem",
                    "not_for_this_endpoint",
                    "A unix:// endpoint takes no key; leave this empty.",
                ));
            }
            if key.is_some() {
                pem("private_key_pem", key, "PRIVATE KEY")?;
            }
        }
    }
    Ok(())
}

/// A node's advertise address: one IPv4 or IPv6 address, not the unspecified one (which
/// would publish every instance on all of the node's interfaces, public ones included).
pub(super) fn checked_advertise_address(address: &str) -> Result<std::net::IpAddr, ApiError> {
    let ip: std::net::IpAddr = address.parse().map_err(|_| {
        ApiError::invalid_field(
            "advertise_address",
            "invalid_address",
            format!(
                "'{address}' is not an IP address: give the node's private IPv4 or IPv6 \
                 address, such as 10.0.0.5 (no port, no hostname)."
            ),
        )
    })?;
    if ip.is_unspecified() {
        return Err(ApiError::invalid_field(
            "advertise_address",
            "invalid_address",
            format!(
                "{ip} would publish every instance on all of the node's interfaces: give the \
                 node's address on the private network the ingress reaches it by."
            ),
        ));
    }
    Ok(ip)
}
