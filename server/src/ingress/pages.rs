//! Berth's own responses at the ingress: small HTML pages (unknown host, nothing healthy,
//! instance failed, too large, redirect) and the empty body.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Response, StatusCode};

use super::ProxyBody;

pub(super) fn too_large(max: u64) -> Response<ProxyBody> {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request too large",
        &format!("The request body is larger than the {max} bytes this app accepts."),
    )
}

pub(super) fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A small HTML page of Berth's own (unknown host, nothing healthy, instance failed).
pub(super) fn page(status: StatusCode, title: &str, message: &str) -> Response<ProxyBody> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} {title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#1e293b}}\
         @media (prefers-color-scheme:dark){{body{{background:#0f172a;color:#e2e8f0}}}}\
         small{{color:#64748b}}</style></head><body><h1>{title}</h1><p>{message}</p>\
         <p><small>{code} · served by Berth</small></p></body></html>",
        code = status.as_u16(),
        title = escape(title),
        message = escape(message),
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(
            Full::new(Bytes::from(html))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a static response builds")
}
