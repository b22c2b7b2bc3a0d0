//! Health probes. Berth probes HTTP and TCP itself, from the controller, at the instance's
//! address on its project network (the Linux host reaches bridge networks); command checks
//! run inside the container as Docker health checks and are read from the engine.

use std::{net::SocketAddr, time::Duration};

use app::model::{DeploymentSpec, HealthProbe};

/// What decides that an instance is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET path` answers 2xx or 3xx.
    Http { port: u16, path: String },
    /// A TCP connection to the port succeeds (default when an HTTP port is set and no check).
    Tcp { port: u16 },
    /// Docker's health status is `healthy` (command checks).
    Docker,
    /// The container is still running after the start period (no port, no check).
    Running,
}

/// A probe with its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// Grace before failures count when the user set no check but an HTTP port.
pub const DEFAULT_START_PERIOD: Duration = Duration::from_secs(15);

impl Check {
    /// The check a spec asks for, or the default: a TCP connect to `http_port` (15 s start
    /// period, then 3 tries 1 s apart), or, with no port, "still running after 1 s".
    pub fn for_spec(spec: &DeploymentSpec) -> Self {
        if let Some(hc) = &spec.health_check {
            let kind = match (&hc.probe, spec.http_port) {
                (HealthProbe::Http { path }, Some(port)) => ProbeKind::Http {
                    port,
                    path: path.clone(),
                },
                (HealthProbe::Http { .. }, None) => ProbeKind::Running,
                (HealthProbe::Command { .. }, _) => ProbeKind::Docker,
            };
            return Self {
                kind,
                interval: Duration::from_millis(hc.interval_ms.into()),
                timeout: Duration::from_millis(hc.timeout_ms.into()),
                retries: hc.retries,
                start_period: Duration::from_millis(hc.start_period_ms.into()),
            };
        }
        match spec.http_port {
            Some(port) => Self {
                kind: ProbeKind::Tcp { port },
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                retries: 3,
                start_period: DEFAULT_START_PERIOD,
            },
            None => Self {
                kind: ProbeKind::Running,
                interval: Duration::from_millis(250),
                timeout: Duration::from_secs(1),
                retries: 1,
                start_period: Duration::from_secs(1),
            },
        }
    }

    /// Longest time a new instance may take: start period plus `retries` probes.
    pub fn deadline(&self) -> Duration {
        self.start_period + (self.interval + self.timeout) * self.retries
    }

    /// Time between probes: fast (at most 100 ms) until the first success during the start
    /// period, so a healthy rollout is not held back by a long interval.
    pub fn pace(&self, in_start_period: bool) -> Duration {
        if in_start_period {
            self.interval.min(Duration::from_millis(100))
        } else {
            self.interval
        }
    }

    /// What the probe checks, for messages: `GET :8080/healthz`, `TCP :8080`, ...
    pub fn describe(&self) -> String {
        match &self.kind {
            ProbeKind::Http { port, path } => format!("GET :{port}{path}"),
            ProbeKind::Tcp { port } => format!("a TCP connection to port {port}"),
            ProbeKind::Docker => "the health check command".into(),
            ProbeKind::Running => "the container to keep running".into(),
        }
    }
}

/// One HTTP probe: `GET http://ip:port/path` must answer 2xx/3xx within `timeout`.
///
/// # Errors
/// A sentence saying what failed (connection refused, status, timeout).
pub async fn probe_http(
    client: &reqwest::Client,
    ip: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let url = format!("http://{ip}:{port}{path}");
    match client.get(&url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!(
            "GET {path} did not answer within {} ms",
            timeout.as_millis()
        )),
        Err(e) if e.is_connect() => Err(format!("nothing accepts connections on port {port}")),
        Err(e) => Err(format!("GET {path} failed: {e}")),
    }
}

/// One TCP probe: a connection to `ip:port` within `timeout`.
///
/// # Errors
/// A sentence saying what failed.
pub async fn probe_tcp(ip: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addr: SocketAddr = format!("{ip}:{port}")
        .parse()
        .map_err(|_| format!("'{ip}' is not an address"))?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(format!("nothing accepts connections on port {port}")),
        Err(_) => Err(format!(
            "port {port} did not accept a connection within {} ms",
            timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::{HealthCheck, PlanId, RestartPolicy};

    fn spec(port: Option<u16>, hc: Option<HealthCheck>) -> DeploymentSpec {
        DeploymentSpec {
            image: "x".into(),
            env: vec![],
            http_port: port,
            command: None,
            volumes: vec![],
            plan_id: PlanId("plan-small".into()),
            restart_policy: RestartPolicy::Always,
            health_check: hc,
            routing: Default::default(),
            database: None,
        }
    }

    #[test]
    fn defaults_follow_the_port() {
        let tcp = Check::for_spec(&spec(Some(8080), None));
        assert_eq!(tcp.kind, ProbeKind::Tcp { port: 8080 });
        assert_eq!(tcp.deadline(), Duration::from_secs(21));
        assert_eq!(Check::for_spec(&spec(None, None)).kind, ProbeKind::Running);
        let http = Check::for_spec(&spec(
            Some(80),
            Some(HealthCheck {
                probe: HealthProbe::Http { path: "/up".into() },
                interval_ms: 2000,
                timeout_ms: 500,
                retries: 2,
                start_period_ms: 1000,
            }),
        ));
        assert_eq!(http.describe(), "GET :80/up");
        assert_eq!(http.deadline(), Duration::from_millis(6000));
        assert_eq!(http.pace(true), Duration::from_millis(100));
        assert_eq!(http.pace(false), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn tcp_probe_sees_a_listener_and_its_absence() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(probe_tcp("127.0.0.1", port, Duration::from_secs(1))
            .await
            .is_ok());
        drop(listener);
        let e = probe_tcp("127.0.0.1", port, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("nothing accepts connections"), "{e}");
    }
}
