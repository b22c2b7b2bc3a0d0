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

pub mod acme;
mod balance;
pub mod dns_update;
pub mod domains;
mod headers;
pub mod observe;
mod pages;
pub mod routes;
pub mod tls;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    Request, Response, StatusCode, Uri,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tokio::{net::TcpListener, sync::Notify};
use tokio_rustls::TlsAcceptor;

use crate::{
    secrets::SecretBox,
    store::{now_ms, Store},
};
use balance::BackendState;
use headers::{
    body_is_empty, forwarded_headers, is_idempotent, strip_hop_by_hop, upgrade_protocol,
};
use observe::{access_log, AccessEntry, IngressStats};
use pages::{empty, page, too_large};
use routes::{normalize_host, RouteTable};
use tls::CertStore;

/// Where HTTP-01 answers are served (RFC 8555 §8.3).
const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

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
    backends: BackendState,
    limits: Limits,
    secrets: SecretBox,
    certs: Arc<CertStore>,
    /// The HTTPS listener's port, once bound (redirects name it unless it is 443).
    https_port: std::sync::OnceLock<u16>,
    stats: Arc<IngressStats>,
    access_log: bool,
}

/// What a request turned out to be, for the access log and the route's counters.
#[derive(Default)]
struct Trace {
    host: Option<String>,
    /// The route's hostname, when one matched.
    route: Option<String>,
    upstream: Option<SocketAddr>,
    request_id: Option<HeaderValue>,
}

impl Ingress {
    /// An ingress serving `<deployment>-<project>.<base_domain>`; `changed` is notified by
    /// the orchestrator when routes may have changed (and by the certificate manager);
    /// `secrets` opens the certificates' keys.
    pub fn new(
        store: Store,
        secrets: SecretBox,
        base_domain: String,
        changed: Arc<Notify>,
        limits: Limits,
    ) -> Self {
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
            backends: BackendState::default(),
            limits,
            secrets,
            certs: Arc::new(CertStore::default()),
            https_port: std::sync::OnceLock::new(),
            stats: Arc::new(IngressStats::default()),
            access_log: true,
        }
    }

    /// Turns the access log (target `berth::access`) off or on (default on).
    pub fn with_access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// The per-route counters.
    pub fn stats(&self) -> Arc<IngressStats> {
        self.stats.clone()
    }

    /// The certificates the HTTPS listener serves.
    pub fn certs(&self) -> Arc<CertStore> {
        self.certs.clone()
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().expect("route table lock").clone()
    }

    /// Rebuilds the table (and reloads changed certificates) from the store and swaps it in.
    ///
    /// # Errors
    /// Store failures (the old table stays).
    pub async fn refresh(&self) -> Result<(), crate::store::StoreError> {
        let projects = self.store.projects().list_all().await?;
        let deployments = self.store.deployments().all().await?;
        let locations = self.store.locations().all().await?;
        let domains = self.store.domains().verified().await?;
        let paths = self.store.domains().verified_paths().await?;
        #[derive(serde::Deserialize)]
        struct Routing {
            #[serde(default)]
            routing: app::model::RouteSettings,
        }
        let settings: HashMap<String, app::model::RouteSettings> = self
            .store
            .deployments()
            .current_specs()
            .await?
            .into_iter()
            .filter_map(|(id, spec)| {
                let r: Routing = serde_json::from_str(&spec).ok()?;
                Some((id, r.routing))
            })
            .collect();
        let table = RouteTable::build(
            &self.base_domain,
            &projects,
            &deployments,
            &locations,
            &domains,
            &paths,
            &settings,
        );
        self.stats.retain(|host| table.has_route(host));
        *self.table.write().expect("route table lock") = Arc::new(table);
        let certificates = self.store.certificates().all().await?;
        self.certs.load(&certificates, &self.secrets, now_ms());
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

    /// Accepts plain-HTTP connections on `listener` until the task is aborted.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        self.accept_loop(listener, None).await;
    }

    /// Accepts HTTPS connections on `listener` until the task is aborted: TLS with the
    /// certificate SNI picks ([`tls::CertStore`]), then HTTP/1.1 or HTTP/2 (ALPN).
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener) {
        if let Ok(addr) = listener.local_addr() {
            let _ = self.https_port.set(addr.port());
        }
        let acceptor = TlsAcceptor::from(tls::server_config(self.certs.clone()));
        self.accept_loop(listener, Some(acceptor)).await;
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, tls: Option<TlsAcceptor>) {
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
            let tls = tls.clone();
            tokio::spawn(async move {
                // hyper's header timeout starts with the first byte; a client that sends
                // nothing at all gets the same limit here.
                let mut first = [0u8; 1];
                match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let https = tls.is_some();
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req, peer, https).await) }
                });
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                        let Ok(Ok(stream)) = handshake.await else {
                            return;
                        };
                        // A TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3).
                        if stream.get_ref().1.alpn_protocol() == Some(tls::ACME_TLS_ALPN) {
                            return;
                        }
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    }

    /// Serves one request, then counts it on its route and writes the access log line.
    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let request_line = self
            .access_log
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let mut trace = Trace::default();
        let resp = self.route_request(req, peer, https, &mut trace).await;
        let latency = start.elapsed();
        let status = resp.status().as_u16();
        if let Some(route) = &trace.route {
            self.stats.record(route, status, latency);
        }
        if let Some((method, path)) = request_line {
            access_log(&AccessEntry {
                client: peer,
                method: method.as_str(),
                host: trace.host.as_deref(),
                path: &path,
                status,
                latency,
                upstream: trace.upstream,
                request_id: trace.request_id.as_ref().and_then(|v| v.to_str().ok()),
                tls: https,
            });
        }
        resp
    }

    /// Routes, forwards and answers one request.
    async fn route_request(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        https: bool,
        trace: &mut Trace,
    ) -> Response<ProxyBody> {
        if !https {
            if let Some(token) = req.uri().path().strip_prefix(ACME_CHALLENGE_PATH) {
                return self.acme_answer(token).await;
            }
        }
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
        trace.host = Some(host.clone());
        let table = self.table();
        let Some(route) = table.lookup_normalized(&host, req.uri().path()) else {
            return page(
                StatusCode::NOT_FOUND,
                "Nothing here",
                &format!("No app is served at {host}. Check the address, or the deployment's hostnames in the Berth portal."),
            );
        };
        trace.route = Some(route.key.clone());
        if !https && route.redirect_https && self.certs.covers(&host) {
            return self.redirect_to_https(&host, req.uri());
        }
        let upgrade = upgrade_protocol(req.headers());
        let downstream_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let proto = if https { "https" } else { "http" };
        forwarded_headers(&mut parts.headers, &host, peer, proto, upgrade.as_ref());
        trace.request_id = parts.headers.get("x-request-id").cloned();
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
        route.strip_path(&mut parts);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let max_body = route
            .settings
            .max_body_bytes
            .unwrap_or(self.limits.max_body_bytes);
        let upstream_timeout = route
            .settings
            .timeout_secs
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(self.limits.upstream_timeout);
        if declared.is_some_and(|n| n > max_body) {
            return too_large(max_body);
        }
        let retryable = is_idempotent(&parts.method) && body_is_empty(&parts.headers);
        // A body without a declared length is cut off at the limit as it streams.
        let limited = http_body_util::Limited::new(body, max_body as usize);
        let mut body = Some(limited.boxed());
        let mut backends: Vec<SocketAddr> = route
            .rotation()
            .filter(|b| !self.backends.is_ejected(*b))
            .collect();
        if route.settings.balance == app::model::BalanceStrategy::LeastConnections {
            // Fewest in flight first; the sort is stable, so ties keep the rotation's order.
            backends.sort_by_key(|b| self.backends.in_flight(*b));
        }
        if backends.is_empty() {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not running",
                &format!(
                    "The app at {host} has no healthy instance right now. Try again in a moment."
                ),
            );
        }
        let attempts = if retryable { backends.len() } else { 1 };
        let mut parts = Some(parts);
        for (attempt, backend) in backends.into_iter().take(attempts).enumerate() {
            // A retry only happens when the body was empty: an empty one is as good.
            trace.upstream = Some(backend);
            let b = body.take().unwrap_or_else(empty);
            let uri = parts
                .as_ref()
                .map(|p| upstream_uri(backend, &p.uri))
                .unwrap_or_default();
            // The head is cloned only when another attempt may follow.
            let head = if attempt + 1 == attempts {
                parts.take()
            } else {
                parts.clone()
            };
            let Some(head) = head else { break };
            let mut upstream = Request::from_parts(head, b);
            *upstream.uri_mut() = uri;
            let guard = self.backends.start_request(backend);
            let answer =
                tokio::time::timeout(upstream_timeout, self.client.request(upstream)).await;
            let Ok(answer) = answer else {
                tracing::warn!(backend = %backend, "instance did not answer in time");
                return page(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Gateway timeout",
                    &format!(
                        "The app at {host} did not answer within {} s.",
                        upstream_timeout.as_secs()
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
                    // The request counts as in flight until its body is sent or dropped.
                    let rbody = rbody.map_err(BoxError::from).map_frame(move |f| {
                        let _in_flight = &guard;
                        f
                    });
                    return Response::from_parts(rparts, rbody.boxed());
                }
                Err(e) if e.is_connect() => {
                    self.backends.eject(backend);
                    if retryable {
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    if is_length_limit(&e) {
                        return too_large(max_body);
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

    /// The HTTP-01 answer for `token`, or 404.
    async fn acme_answer(&self, token: &str) -> Response<ProxyBody> {
        let answer = match self.store.certificates().challenge(token).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an ACME challenge answer");
                None
            }
        };
        match answer {
            Some(key_authorization) => Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(
                    Full::new(Bytes::from(key_authorization))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .expect("a static response builds"),
            None => page(
                StatusCode::NOT_FOUND,
                "Unknown challenge",
                "No certificate request is waiting for this token.",
            ),
        }
    }

    /// `308` to the same path on HTTPS (a method-preserving redirect, RFC 9110 §15.4.9).
    fn redirect_to_https(&self, host: &str, uri: &Uri) -> Response<ProxyBody> {
        let port = match self.https_port.get() {
            None | Some(443) => String::new(),
            Some(p) => format!(":{p}"),
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let location = format!("https://{host}{port}{path}");
        let mut resp = page(
            StatusCode::PERMANENT_REDIRECT,
            "Moved to HTTPS",
            &format!("This app is served at {location}."),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }
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
