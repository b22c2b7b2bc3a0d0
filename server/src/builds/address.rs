//! Which repository hosts a build may fetch from: the URL's scheme, and every address its
//! host resolves to, must be public unless an admin allows private ones.

use std::net::IpAddr;

use app::model::parse_repository_url;

use super::BuildError;

/// Checks that `url` may be fetched: its scheme, and every address its host resolves to
/// (all allowed when `allow_private`, the admin's `build_allow_private_repositories`).
///
/// # Errors
/// `Refused` naming the address; `Fetch` when the name does not resolve.
pub async fn check_repository_url(url: &str, allow_private: bool) -> Result<(), BuildError> {
    let parsed = parse_repository_url(url).map_err(|e| BuildError::Refused(e.message))?;
    if allow_private {
        return Ok(());
    }
    if parsed.scheme == "http" {
        return Err(BuildError::Refused(
            "plain http:// repositories are refused; use https:// (an admin may allow them with build_allow_private_repositories)".into(),
        ));
    }
    let addrs: Vec<IpAddr> = match parsed.host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((parsed.host.as_str(), 443))
            .await
            .map_err(|e| BuildError::Fetch(format!("cannot resolve {}: {e}", parsed.host)))?
            .map(|a| a.ip())
            .collect(),
    };
    match addrs.iter().find(|ip| !is_public(**ip)) {
        Some(ip) => Err(BuildError::Refused(format!(
            "the repository host {} is at {ip}, which is not a public address; an admin may allow such repositories (build_allow_private_repositories)",
            parsed.host
        ))),
        None => Ok(()),
    }
}

/// Whether `ip` is an address a build may fetch from without an admin's consent: not
/// loopback, private (RFC 1918, RFC 4193), link-local (which holds cloud metadata services,
/// 169.254.169.254), shared (RFC 6598), unspecified, multicast or documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["140.82.112.3", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
