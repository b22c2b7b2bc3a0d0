//! The route table: which backends serve which hostname. Built from the store as a whole and
//! swapped in one step, so a request sees either the old table or the new one.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering},
};

use app::model::RouteSettings;

use crate::store::{
    DeploymentRecord, DomainRecord, LocationRecord, PathRouteRecord, ProjectRecord,
};

/// Where requests for one hostname (and path prefix) go.
#[derive(Debug)]
pub struct Route {
    /// `/`, or a prefix such as `/api` (no trailing `/`) of a path route.
    pub path_prefix: String,
    /// The hostname (lower-case, no port; `*.example.com` for a wildcard domain) followed by
    /// the prefix unless it is `/`: the route's name in statistics and the access log.
    pub key: String,
    /// The app sees the path without the prefix.
    pub strip_prefix: bool,
    pub deployment_id: String,
    /// Healthy instances of the current release, by address (`ip:http_port`). Empty: the
    /// deployment exists but nothing can serve it (503).
    pub backends: Vec<SocketAddr>,
    /// Plain-HTTP requests are redirected to HTTPS (when a certificate covers the host).
    pub redirect_https: bool,
    /// The deployment's balancing strategy and limits (from its current release).
    pub settings: RouteSettings,
    next: AtomicUsize,
}

impl Route {
    /// Backends in round-robin order starting after the last pick; every backend once.
    pub fn rotation(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let n = self.backends.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| self.backends[(start + i) % n])
    }

    /// Whether `path` (of a request's URI) falls under this route's prefix: equal to it, or
    /// continuing with `/` (`/api` takes `/api` and `/api/users`, not `/apis`). Matched as
    /// sent, without percent-decoding.
    pub fn matches(&self, path: &str) -> bool {
        let p = self.path_prefix.as_str();
        p == "/"
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// For a path route with `strip_prefix`: the request's path without the prefix (see
    /// [`Route::rewrite`]) and the prefix in `X-Forwarded-Prefix`. Other routes: unchanged.
    pub fn strip_path(&self, parts: &mut http::request::Parts) {
        let Some(rewritten) = parts
            .uri
            .path_and_query()
            .and_then(|pq| self.rewrite(pq.as_str()))
        else {
            return;
        };
        if let (Ok(uri), Ok(prefix)) = (
            rewritten.parse(),
            http::HeaderValue::from_str(&self.path_prefix),
        ) {
            parts.uri = uri;
            parts.headers.insert("x-forwarded-prefix", prefix);
        }
    }

    /// `path_and_query` as the app sees it: without the prefix when `strip_prefix` (`/api`
    /// → `/`, `/api/users?x` → `/users?x`); `None` when unchanged.
    pub fn rewrite(&self, path_and_query: &str) -> Option<String> {
        if !self.strip_prefix || self.path_prefix == "/" {
            return None;
        }
        let rest = path_and_query.strip_prefix(self.path_prefix.as_str())?;
        Some(if rest.is_empty() || rest.starts_with('?') {
            format!("/{rest}")
        } else {
            rest.to_owned()
        })
    }
}

/// Every route by hostname, each host's routes longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_host: HashMap<String, Vec<Route>>,
    /// Whether any key is a wildcard (`*.example.com`): misses look one label up only then.
    has_wildcards: bool,
}

/// The generated hostname of a deployment: `<deployment>-<project>.<base domain>`, the first
/// label at most 61 characters (both names are DNS labels of at most 30).
pub fn generated_host(deployment: &str, project: &str, base_domain: &str) -> String {
    format!("{deployment}-{project}.{base_domain}").to_ascii_lowercase()
}

/// What a deployment's routes share: its serving instances and its route settings.
struct Target {
    backends: Vec<SocketAddr>,
    settings: RouteSettings,
}

impl RouteTable {
    /// Builds the table: one route per deployment with a current release, at its generated
    /// hostname and at each of its verified custom `domains`, to the running, healthy
    /// instances of that release (none while the user has it stopped: a 503, not a 404),
    /// with the route `settings` of that release (by deployment id; default when absent).
    /// Each path route in `paths` (on a verified domain) sends its prefix of the domain to
    /// its own deployment (no instance, or no release yet: a 503 for that prefix).
    pub fn build(
        base_domain: &str,
        projects: &[ProjectRecord],
        deployments: &[DeploymentRecord],
        locations: &[LocationRecord],
        domains: &[DomainRecord],
        paths: &[PathRouteRecord],
        settings: &HashMap<String, RouteSettings>,
    ) -> Self {
        let names: HashMap<&str, &str> = projects
            .iter()
            .map(|p| (p.id.as_str(), p.name.as_str()))
            .collect();
        let mut targets: HashMap<&str, Target> = HashMap::new();
        let mut by_host: HashMap<String, Vec<Route>> = HashMap::new();
        let mut add = |host: &str,
                       prefix: &str,
                       strip: bool,
                       deployment: &str,
                       t: &Target,
                       redirect: bool| {
            let key = if prefix == "/" {
                host.to_owned()
            } else {
                format!("{host}{prefix}")
            };
            by_host.entry(host.to_owned()).or_default().push(Route {
                path_prefix: prefix.to_owned(),
                key,
                strip_prefix: strip,
                deployment_id: deployment.to_owned(),
                backends: t.backends.clone(),
                redirect_https: redirect,
                settings: t.settings.clone(),
                next: AtomicUsize::new(0),
            });
        };
        for d in deployments {
            let Some(project) = names.get(d.project_id.as_str()) else {
                continue;
            };
            let Some(current) = d.current_release_id.as_deref() else {
                continue;
            };
            let backends = locations
                .iter()
                .filter(|l| {
                    d.desired_state == "running"
                        && l.deployment_id == d.id
                        && l.release_id == current
                        && l.status == "running"
                        && l.health == "healthy"
                })
                .filter_map(|l| {
                    let ip: IpAddr = l.ip_address.as_deref()?.parse().ok()?;
                    let port = u16::try_from(l.port?).ok()?;
                    Some(SocketAddr::new(ip, port))
                })
                .collect();
            let target = Target {
                backends,
                settings: settings.get(&d.id).cloned().unwrap_or_default(),
            };
            add(
                &generated_host(&d.name, project, base_domain),
                "/",
                false,
                &d.id,
                &target,
                false,
            );
            targets.insert(d.id.as_str(), target);
        }
        let unserved = Target {
            backends: Vec::new(),
            settings: RouteSettings::default(),
        };
        for domain in domains.iter().filter(|x| x.status == "verified") {
            let Some(target) = targets.get(domain.deployment_id.as_str()) else {
                continue;
            };
            add(
                &domain.hostname,
                "/",
                false,
                &domain.deployment_id,
                target,
                domain.redirect_https,
            );
            for p in paths.iter().filter(|p| p.domain_id == domain.id) {
                let target = targets.get(p.deployment_id.as_str()).unwrap_or(&unserved);
                add(
                    &domain.hostname,
                    &p.path_prefix,
                    p.strip_prefix,
                    &p.deployment_id,
                    target,
                    domain.redirect_https,
                );
            }
        }
        for routes in by_host.values_mut() {
            routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        }
        let has_wildcards = by_host.keys().any(|h| h.starts_with("*."));
        Self {
            by_host,
            has_wildcards,
        }
    }

    /// The route for `host` (any case, port ignored) and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        self.lookup_normalized(&normalize_host(host)?, path)
    }

    /// The route for a hostname already passed through [`normalize_host`] and `path`: the
    /// longest prefix of the exact name, else of a wildcard domain one label up
    /// (`*.example.com` serves `a.example.com`, not `a.b.example.com` nor `example.com`, as in
    /// RFC 6125 §6.4.3).
    pub fn lookup_normalized(&self, host: &str, path: &str) -> Option<&Route> {
        let routes = match self.by_host.get(host) {
            Some(r) => r,
            None if self.has_wildcards => {
                let (_, parent) = host.split_once('.')?;
                self.by_host.get(&format!("*.{parent}"))?
            }
            None => return None,
        };
        routes.iter().find(|r| r.matches(path))
    }

    /// Whether a route has this [`Route::key`] (`host` or `host/prefix`).
    pub fn has_route(&self, key: &str) -> bool {
        let (host, prefix) = match key.find('/') {
            Some(i) => (&key[..i], &key[i..]),
            None => (key, "/"),
        };
        self.by_host
            .get(host)
            .is_some_and(|routes| routes.iter().any(|r| r.path_prefix == prefix))
    }

    /// How many hostnames are routed.
    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    /// Whether no hostname is routed.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

/// `Host` header value → lower-case hostname without port or trailing dot; `None` when it is
/// not a hostname (empty, bad characters, an IPv6 literal, which no route uses).
pub fn normalize_host(value: &str) -> Option<String> {
    let host = match value.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => value,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, name: &str) -> ProjectRecord {
        ProjectRecord {
            id: id.into(),
            name: name.into(),
            member_count: 1,
            created_at_ms: 0,
        }
    }

    fn deployment(id: &str, name: &str, current: Option<&str>, desired: &str) -> DeploymentRecord {
        DeploymentRecord {
            id: id.into(),
            project_id: "p".into(),
            name: name.into(),
            replicas: 2,
            desired_state: desired.into(),
            status: "running".into(),
            status_message: String::new(),
            current_release_id: current.map(str::to_owned),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn instance(deployment: &str, release: &str, ip: &str, health: &str) -> LocationRecord {
        LocationRecord {
            deployment_id: deployment.into(),
            release_id: release.into(),
            status: "running".into(),
            health: health.into(),
            ip_address: Some(ip.into()),
            port: Some(8080),
            ..LocationRecord::default()
        }
    }

    fn domain(deployment: &str, hostname: &str, status: &str) -> DomainRecord {
        DomainRecord {
            id: hostname.into(),
            project_id: "p".into(),
            deployment_id: deployment.into(),
            hostname: hostname.into(),
            token: "t".into(),
            status: status.into(),
            last_result: String::new(),
            attempts: 0,
            last_check_at_ms: None,
            next_check_at_ms: None,
            verified_at_ms: None,
            created_at_ms: 0,
            redirect_https: false,
        }
    }

    /// A path route on the domain with id `domain` (the helper above uses the hostname).
    fn path(domain: &str, deployment: &str, prefix: &str, strip: bool) -> PathRouteRecord {
        PathRouteRecord {
            id: format!("{domain}{prefix}"),
            domain_id: domain.into(),
            hostname: domain.into(),
            deployment_id: deployment.into(),
            path_prefix: prefix.into(),
            strip_prefix: strip,
            created_at_ms: 0,
            domain_verified: true,
        }
    }

    #[test]
    fn routes_go_to_healthy_instances_of_the_current_release() {
        let table = RouteTable::build(
            "apps.example.com",
            &[project("p", "shop")],
            &[
                deployment("d1", "web", Some("r2"), "running"),
                deployment("d2", "idle", Some("r1"), "stopped"),
                deployment("d3", "new", None, "running"),
            ],
            &[
                instance("d1", "r2", "10.0.0.2", "healthy"),
                instance("d1", "r2", "10.0.0.3", "healthy"),
                instance("d1", "r2", "10.0.0.4", "unhealthy"),
                instance("d1", "r1", "10.0.0.5", "healthy"),
                instance("d2", "r1", "10.0.0.6", "healthy"),
            ],
            &[
                domain("d1", "shop.example.com", "verified"),
                domain("d1", "pending.example.com", "pending"),
                domain("d2", "*.wild.example.com", "verified"),
            ],
            &[
                path("shop.example.com", "d2", "/api", false),
                path("shop.example.com", "d3", "/docs", true),
                path("pending.example.com", "d2", "/api", false),
            ],
            &HashMap::from([(
                "d1".to_owned(),
                RouteSettings {
                    balance: app::model::BalanceStrategy::LeastConnections,
                    timeout_secs: Some(5),
                    max_body_bytes: None,
                },
            )]),
        );
        assert_eq!(table.len(), 4);
        // A wildcard domain serves exactly one label below it.
        assert_eq!(
            table
                .lookup("a.wild.example.com", "/")
                .unwrap()
                .deployment_id,
            "d2"
        );
        assert!(table.lookup("a.b.wild.example.com", "/").is_none());
        assert!(table.lookup("wild.example.com", "/").is_none());
        assert!(table.lookup("*.wild.example.com", "/").is_none());
        let settings = &table
            .lookup("web-shop.apps.example.com", "/")
            .unwrap()
            .settings;
        assert_eq!(
            settings.timeout_secs,
            Some(5),
            "the release's route settings"
        );
        assert_eq!(
            table
                .lookup("shop.example.com", "/")
                .unwrap()
                .settings
                .balance,
            app::model::BalanceStrategy::LeastConnections
        );
        let custom = table.lookup("SHOP.example.com", "/").unwrap();
        assert_eq!(
            (custom.deployment_id.as_str(), custom.backends.len()),
            ("d1", 2)
        );
        assert!(
            table.lookup("pending.example.com", "/").is_none(),
            "only verified domains"
        );
        let route = table.lookup("Web-Shop.apps.example.com:8000", "/").unwrap();
        assert_eq!(route.deployment_id, "d1");
        let mut seen: Vec<String> = route.backends.iter().map(|a| a.to_string()).collect();
        seen.sort();
        assert_eq!(seen, ["10.0.0.2:8080", "10.0.0.3:8080"]);
        let stopped = table.lookup("idle-shop.apps.example.com", "/").unwrap();
        assert!(
            stopped.backends.is_empty(),
            "a stopped deployment gets a 503"
        );
        assert!(table.lookup("nothing.example.com", "/").is_none());

        // Path routes: the longest prefix at a segment boundary, else the domain's own.
        let on = |path: &str| {
            let r = table.lookup("shop.example.com", path).unwrap();
            (r.deployment_id.as_str(), r.key.as_str())
        };
        assert_eq!(on("/api"), ("d2", "shop.example.com/api"));
        assert_eq!(on("/api/users?x=1"), ("d2", "shop.example.com/api"));
        assert_eq!(on("/apis"), ("d1", "shop.example.com"));
        assert_eq!(on("/"), ("d1", "shop.example.com"));
        assert_eq!(on("/docs/v2"), ("d3", "shop.example.com/docs"));
        let api = table.lookup("shop.example.com", "/api").unwrap();
        assert!(
            api.backends.is_empty(),
            "a stopped deployment: 503 for its prefix"
        );
        assert_eq!(api.rewrite("/api/users"), None, "not stripped");
        let docs = table.lookup("shop.example.com", "/docs").unwrap();
        assert!(
            docs.backends.is_empty(),
            "no release yet: 503, not the root's app"
        );
        assert_eq!(docs.rewrite("/docs").as_deref(), Some("/"));
        assert_eq!(docs.rewrite("/docs?x=1").as_deref(), Some("/?x=1"));
        assert_eq!(docs.rewrite("/docs/v2/a?b").as_deref(), Some("/v2/a?b"));
        assert!(table.has_route("shop.example.com/api"));
        assert!(table.has_route("shop.example.com"));
        assert!(table.has_route("*.wild.example.com"));
        assert!(!table.has_route("shop.example.com/nope"));
        assert!(!table.has_route("pending.example.com/api"));
    }

    #[test]
    fn round_robin_starts_one_further_each_time_and_covers_all() {
        let table = RouteTable::build(
            "localhost",
            &[project("p", "shop")],
            &[deployment("d1", "web", Some("r"), "running")],
            &[
                instance("d1", "r", "10.0.0.2", "healthy"),
                instance("d1", "r", "10.0.0.3", "healthy"),
            ],
            &[],
            &[],
            &HashMap::new(),
        );
        let route = table.lookup("web-shop.localhost", "/").unwrap();
        let first: Vec<_> = route.rotation().collect();
        let second: Vec<_> = route.rotation().collect();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], second[1]);
        assert_eq!(first[1], second[0]);
    }

    #[test]
    fn host_headers_are_normalised_or_refused() {
        assert_eq!(
            normalize_host("A-b.Example.COM.").as_deref(),
            Some("a-b.example.com")
        );
        assert_eq!(
            normalize_host("x.localhost:8000").as_deref(),
            Some("x.localhost")
        );
        for bad in ["", ":80", "a b", "[::1]:80", "évil.com", "a/b"] {
            assert_eq!(normalize_host(bad), None, "{bad}");
        }
    }
}
