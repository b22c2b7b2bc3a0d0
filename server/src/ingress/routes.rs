//! The route table: which backends serve which hostname. Built from the store as a whole and
//! swapped in one step, so a request sees either the old table or the new one.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering},
};

use app::model::RouteSettings;

use crate::store::{DeploymentRecord, DomainRecord, LocationRecord, ProjectRecord};

/// Where requests for one hostname go.
#[derive(Debug)]
pub struct Route {
    /// The hostname, lower-case, without a port.
    pub host: String,
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
}

/// Every route by hostname.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_host: HashMap<String, Route>,
}

/// The generated hostname of a deployment: `<deployment>-<project>.<base domain>`, the first
/// label at most 61 characters (both names are DNS labels of at most 30).
pub fn generated_host(deployment: &str, project: &str, base_domain: &str) -> String {
    format!("{deployment}-{project}.{base_domain}").to_ascii_lowercase()
}

impl RouteTable {
    /// Builds the table: one route per deployment with a current release, at its generated
    /// hostname and at each of its verified custom `domains`, to the running, healthy
    /// instances of that release (none while the user has it stopped: a 503, not a 404),
    /// with the route `settings` of that release (by deployment id; default when absent).
    pub fn build(
        base_domain: &str,
        projects: &[ProjectRecord],
        deployments: &[DeploymentRecord],
        locations: &[LocationRecord],
        domains: &[DomainRecord],
        settings: &HashMap<String, RouteSettings>,
    ) -> Self {
        let names: HashMap<&str, &str> = projects
            .iter()
            .map(|p| (p.id.as_str(), p.name.as_str()))
            .collect();
        let mut by_host = HashMap::new();
        for d in deployments {
            let Some(project) = names.get(d.project_id.as_str()) else {
                continue;
            };
            let Some(current) = d.current_release_id.as_deref() else {
                continue;
            };
            let backends: Vec<SocketAddr> = locations
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
            let route_settings = settings.get(&d.id).cloned().unwrap_or_default();
            for domain in domains
                .iter()
                .filter(|x| x.deployment_id == d.id && x.status == "verified")
            {
                by_host.insert(
                    domain.hostname.clone(),
                    Route {
                        host: domain.hostname.clone(),
                        deployment_id: d.id.clone(),
                        backends: backends.clone(),
                        redirect_https: domain.redirect_https,
                        settings: route_settings.clone(),
                        next: AtomicUsize::new(0),
                    },
                );
            }
            let host = generated_host(&d.name, project, base_domain);
            by_host.insert(
                host.clone(),
                Route {
                    host,
                    deployment_id: d.id.clone(),
                    backends,
                    redirect_https: false,
                    settings: route_settings,
                    next: AtomicUsize::new(0),
                },
            );
        }
        Self { by_host }
    }

    /// The route for `host` (any case, port ignored).
    pub fn lookup(&self, host: &str) -> Option<&Route> {
        self.by_host.get(&normalize_host(host)?)
    }

    /// The route for a hostname already passed through [`normalize_host`].
    pub fn lookup_normalized(&self, host: &str) -> Option<&Route> {
        self.by_host.get(host)
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
        assert_eq!(table.len(), 3);
        let settings = &table.lookup("web-shop.apps.example.com").unwrap().settings;
        assert_eq!(
            settings.timeout_secs,
            Some(5),
            "the release's route settings"
        );
        assert_eq!(
            table.lookup("shop.example.com").unwrap().settings.balance,
            app::model::BalanceStrategy::LeastConnections
        );
        let custom = table.lookup("SHOP.example.com").unwrap();
        assert_eq!(
            (custom.deployment_id.as_str(), custom.backends.len()),
            ("d1", 2)
        );
        assert!(
            table.lookup("pending.example.com").is_none(),
            "only verified domains"
        );
        let route = table.lookup("Web-Shop.apps.example.com:8000").unwrap();
        assert_eq!(route.deployment_id, "d1");
        let mut seen: Vec<String> = route.backends.iter().map(|a| a.to_string()).collect();
        seen.sort();
        assert_eq!(seen, ["10.0.0.2:8080", "10.0.0.3:8080"]);
        let stopped = table.lookup("idle-shop.apps.example.com").unwrap();
        assert!(
            stopped.backends.is_empty(),
            "a stopped deployment gets a 503"
        );
        assert!(table.lookup("nothing.example.com").is_none());
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
            &HashMap::new(),
        );
        let route = table.lookup("web-shop.localhost").unwrap();
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
