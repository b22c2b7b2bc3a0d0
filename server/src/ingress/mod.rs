//! The ingress (role `ingress`): Berth's reverse proxy for customers' apps, on hyper
//! (server: hyper-util's HTTP/1.1 + HTTP/2 connection builder; upstream: hyper-util's pooled
//! keep-alive client). No HTTP is parsed here.
//!
//! - **Routing** by `Host` to the healthy instances of a deployment's current release
//!   ([`routes::RouteTable`]), round-robin. Each deployment is served at
//!   `<deployment>-<project>.<base_domain>` and at its verified custom domains
//!   ([`domains`]).
//! - **Live table**: rebuilt from the store whenever the orchestrator signals a change (a
//!   rollout switching, an instance becoming healthy or unhealthy) and every
//!   [`REFRESH`] in any case, then swapped in one step: in-flight requests, keep-alive
//!   connections and upgraded connections are not disturbed.
//! - **Failures**: a connection refused by an instance ejects it for [`EJECT_FOR`], and a
//!   request without a body whose method is idempotent (RFC 9110 §9.2.2) is retried on the
//!   next instance. Unknown hosts get a 404 page, deployments with nothing healthy a 503
//!   page, an instance failing mid-request a 502 page.
//! - **Headers**: hop-by-hop headers (RFC 9110 §7.6.1, plus those named in `Connection`)
//!   are removed both ways; `X-Forwarded-For` (appended), `X-Forwarded-Proto`,
//!   `X-Forwarded-Host` and `X-Request-Id` (kept, or generated) are set; `Host` is passed on.
//! - **Upgrades** (WebSocket and any other `Upgrade`): the handshake is forwarded and, on
//!   `101`, both connections are spliced.
//! - **Slow clients**: the request head must arrive within [`HEADER_READ_TIMEOUT`].
//! - **Limits** ([`Limits`]): request bodies above `max_body_bytes` get 413 (declared
//!   lengths at once, streamed bodies when they pass it); an instance that sends no response
//!   head within `upstream_timeout` gets the client a 504.

pub mod domains;
pub mod routes;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{
    body::Incoming,
    header::{self, HeaderMap, HeaderName, HeaderValue},
    Method, Request, Response, StatusCode, Uri,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tokio::{net::TcpListener, sync::Notify};

use crate::store::Store;
use routes::{normalize_host, RouteTable};

/// The table is rebuilt at least this often, even without a signal (another process may
/// have changed the store).
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long an instance that refused a connection gets no new requests.
pub const EJECT_FOR: Duration = Duration::from_secs(5);
/// Time a client has to send a request head (slowloris protection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// Limits applied to every route (per-route settings are still to come).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body passed on, bytes; larger ones get 413.
    pub max_body_bytes: u64,
    /// Time an instance has to send its response head; then 504.
    pub upstream_timeout: Duration,
}

/// The proxy's state, shared by every connection.
pub struct Ingress {
    store: Store,
    base_domain: String,
    table: RwLock<Arc<RouteTable>>,
    changed: Arc<Notify>,
    client: Client<HttpConnector, ProxyBody>,
    ejected: Mutex<HashMap<SocketAddr, Instant>>,
    limits: Limits,
}

impl Ingress {
    /// An ingress serving `<deployment>-<project>.<base_domain>`; `changed` is notified by
    /// the orchestrator when routes may have changed.
    pub fn new(store: Store, base_domain: String, changed: Arc<Notify>, limits: Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self {
            store,
            base_domain: base_domain.to_ascii_lowercase(),
            table: RwLock::new(Arc::new(RouteTable::default())),
            changed,
            client,
            ejected: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().expect("route table lock").clone()
    }

    /// Rebuilds the table from the store and swaps it in.
    ///
    /// # Errors
    /// Store failures (the old table stays).
    pub async fn refresh(&self) -> Result<(), crate::store::StoreError> {
        let projects = self.store.projects().list_all().await?;
        let deployments = self.store.deployments().all().await?;
        let locations = self.store.locations().all().await?;
        let domains = self.store.domains().verified().await?;
        let table = RouteTable::build(
            &self.base_domain,
            &projects,
            &deployments,
            &locations,
            &domains,
        );
        *self.table.write().expect("route table lock") = Arc::new(table);
        Ok(())
    }

    /// Keeps the table fresh: on every change signal, and every [`REFRESH`].
    pub async fn keep_fresh(self: Arc<Self>) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot rebuild the route table");
            }
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    }

    /// Accepts connections on `listener` until the task is aborted.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(64 * 1024);
        let builder = Arc::new(builder);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "ingress accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                // hyper's header timeout starts with the first byte; a client that sends
                // nothing at all gets the same limit here.
                let mut first = [0u8; 1];
                match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req, peer).await) }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn is_ejected(&self, backend: SocketAddr) -> bool {
        let mut ejected = self.ejected.lock().expect("ejected lock");
        match ejected.get(&backend) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                ejected.remove(&backend);
                false
            }
            None => false,
        }
    }

    fn eject(&self, backend: SocketAddr) {
        tracing::warn!(backend = %backend, "instance refused a connection; ejected");
        self.ejected
            .lock()
            .expect("ejected lock")
            .insert(backend, Instant::now() + EJECT_FOR);
    }

    /// Serves one request: route, forward, answer.
    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let Some(host) = host.as_deref().and_then(normalize_host) else {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request has no valid Host header.",
            );
        };
        let table = self.table();
        let Some(route) = table.lookup(&host) else {
            return page(
                StatusCode::NOT_FOUND,
                "Nothing here",
                &format!("No app is served at {host}. Check the address, or the deployment's hostnames in the Berth portal."),
            );
        };
        let upgrade = upgrade_protocol(req.headers());
        let downstream_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        forwarded_headers(&mut parts.headers, &host, peer, upgrade.as_ref());
        // Instances speak HTTP/1.1, whatever the client spoke; an HTTP/2 request carries its
        // host in `:authority`, which HTTP/1.1 needs as `Host`.
        parts.version = hyper::Version::HTTP_11;
        if !parts.headers.contains_key(header::HOST) {
            if let Some(authority) = parts.uri.authority().map(|a| a.as_str().to_owned()) {
                if let Ok(v) = HeaderValue::from_str(&authority) {
                    parts.headers.insert(header::HOST, v);
                }
            }
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body_bytes) {
            return too_large(self.limits.max_body_bytes);
        }
        let retryable = is_idempotent(&parts.method) && body_is_empty(&parts.headers);
        // A body without a declared length is cut off at the limit as it streams.
        let limited = http_body_util::Limited::new(body, self.limits.max_body_bytes as usize);
        let mut body = Some(limited.boxed());
        let backends: Vec<SocketAddr> = route.rotation().filter(|b| !self.is_ejected(*b)).collect();
        if backends.is_empty() {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not running",
                &format!(
                    "The app at {host} has no healthy instance right now. Try again in a moment."
                ),
            );
        }
        for backend in backends {
            // A retry only happens when the body was empty: an empty one is as good.
            let b = body.take().unwrap_or_else(empty);
            let mut upstream = Request::from_parts(parts.clone(), b);
            *upstream.uri_mut() = upstream_uri(backend, &parts.uri);
            let answer =
                tokio::time::timeout(self.limits.upstream_timeout, self.client.request(upstream))
                    .await;
            let Ok(answer) = answer else {
                tracing::warn!(backend = %backend, "instance did not answer in time");
                return page(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Gateway timeout",
                    &format!(
                        "The app at {host} did not answer within {} s.",
                        self.limits.upstream_timeout.as_secs()
                    ),
                );
            };
            match answer {
                Ok(mut resp) => {
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(down) = downstream_upgrade {
                            let up = hyper::upgrade::on(&mut resp);
                            tokio::spawn(splice(down, up));
                        }
                        let (mut rparts, _) = resp.into_parts();
                        strip_hop_by_hop(&mut rparts.headers);
                        if let Some(proto) = upgrade {
                            rparts
                                .headers
                                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                            rparts.headers.insert(header::UPGRADE, proto);
                        }
                        return Response::from_parts(rparts, empty());
                    }
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    return Response::from_parts(rparts, rbody.map_err(BoxError::from).boxed());
                }
                Err(e) if e.is_connect() => {
                    self.eject(backend);
                    if retryable {
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    if is_length_limit(&e) {
                        return too_large(self.limits.max_body_bytes);
                    }
                    tracing::warn!(backend = %backend, error = %e, "upstream request failed");
                    break;
                }
            }
        }
        page(
            StatusCode::BAD_GATEWAY,
            "Bad gateway",
            &format!("The app at {host} did not answer. Try again in a moment."),
        )
    }
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` + `Upgrade: …`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
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
fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
/// when one is asked for), `X-Forwarded-*` and `X-Request-Id` set.
fn forwarded_headers(
    headers: &mut HeaderMap,
    host: &str,
    peer: SocketAddr,
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
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", v);
    }
    let valid_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.is_empty() && v.len() <= 200);
    if !valid_id {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()) {
            headers.insert("x-request-id", v);
        }
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// No body: neither a length above zero nor chunked transfer.
fn body_is_empty(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim() == "0");
    length.unwrap_or(true) && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// `http://<backend><path and query of the original request>`.
fn upstream_uri(backend: SocketAddr, original: &Uri) -> Uri {
    let path = original.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("http://{backend}{path}")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// Joins an upgraded client connection to the upgraded instance connection.
async fn splice(down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
    let (Ok(down), Ok(up)) = (down.await, up.await) else {
        return;
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
}

/// Whether a failed upstream request failed because the client's body passed the limit.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn too_large(max: u64) -> Response<ProxyBody> {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request too large",
        &format!("The request body is larger than the {max} bytes this app accepts."),
    )
}

fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A small HTML page of Berth's own (unknown host, nothing healthy, instance failed).
fn page(status: StatusCode, title: &str, message: &str) -> Response<ProxyBody> {
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
            None,
        );
        assert!(h.get("x-secret-hop").is_none() && h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none() && h.get(header::TE).is_none());
        assert_eq!(h["x-app"], "kept");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "web-shop.localhost");
        assert!(!h["x-request-id"].is_empty());
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
