//! Request and response headers at the proxy: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*`, `X-Request-Id`, upgrades, and which requests may be retried.

use std::net::SocketAddr;

use hyper::{
    header::{self, HeaderMap, HeaderName, HeaderValue},
    Method,
};

/// The protocol a request asks to upgrade to (`Connection: upgrade` + `Upgrade: …`).
pub(super) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Removes hop-by-hop headers: those of RFC 9110 §7.6.1 and every header `Connection` names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Prepares a request's headers for the instance: hop-by-hop removed (the upgrade put back
/// when one is asked for), `X-Forwarded-*` and `X-Request-Id` set, a client's
/// `X-Forwarded-Prefix` dropped.
pub(super) fn forwarded_headers(
    headers: &mut HeaderMap,
    host: &str,
    peer: SocketAddr,
    proto: &'static str,
    upgrade: Option<&HeaderValue>,
) {
    strip_hop_by_hop(headers);
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
    let client = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", v);
    }
    // Only the ingress says which prefix it stripped (set after this for such routes).
    headers.remove("x-forwarded-prefix");
    let valid_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.is_empty() && v.len() <= 200);
    if !valid_id {
        if let Ok(v) = HeaderValue::from_str(&request_id()) {
            headers.insert("x-request-id", v);
        }
    }
}

/// A new request id: 32 hex digits, a random per-process prefix then a counter, so ids are
/// unique without a random number (a system call) per request.
pub(super) fn request_id() -> String {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    };
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The random bits of a UUIDv7 (RFC 9562 §5.7) are the low 62 of its second half.
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::now_v7().as_u64_pair().1);
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// RFC 9110 §9.2.2.
pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// No body: neither a length above zero nor chunked transfer.
pub(super) fn body_is_empty(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim() == "0");
    length.unwrap_or(true) && !headers.contains_key(header::TRANSFER_ENCODING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_forwarded_ones_come() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        forwarded_headers(
            &mut h,
            "web-shop.localhost",
            "127.0.0.1:5000".parse().unwrap(),
            "http",
            None,
        );
        assert!(h.get("x-secret-hop").is_none() && h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none() && h.get(header::TE).is_none());
        assert_eq!(h["x-app"], "kept");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "web-shop.localhost");
        assert_eq!(h["x-request-id"].len(), 32);
        assert_ne!(request_id(), request_id());
    }

    #[test]
    fn upgrades_are_recognised_and_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let proto = upgrade_protocol(&h).unwrap();
        forwarded_headers(
            &mut h,
            "a.localhost",
            "127.0.0.1:1".parse().unwrap(),
            "https",
            Some(&proto),
        );
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }

    #[test]
    fn only_bodiless_idempotent_requests_are_retried() {
        let mut h = HeaderMap::new();
        assert!(is_idempotent(&Method::GET) && body_is_empty(&h));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(!body_is_empty(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(body_is_empty(&h));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(!body_is_empty(&h));
    }
}
