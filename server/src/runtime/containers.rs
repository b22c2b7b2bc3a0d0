//! Containers, images, networks and volumes on one engine. Calls are idempotent where Docker
//! allows it: creating what exists returns the existing object, removing what is gone
//! succeeds, starting a running container (304) succeeds.

use std::collections::HashMap;

use bollard::{
    models::{
        ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig,
        Mount, MountType, NetworkingConfig, PortBinding, PortMap, PortSummaryTypeEnum,
        RestartPolicy, RestartPolicyNameEnum,
    },
    query_parameters::{
        CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions,
        LogsOptions, RemoveContainerOptions, StopContainerOptions,
    },
};
use futures_util::{Stream, StreamExt};

use super::{bounded, Engine, RuntimeError, CALL_TIMEOUT};

/// How long pulling a missing image may take.
pub const PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Capabilities removed from Docker's default set: none of them is needed to serve HTTP, and
/// raw sockets, device nodes, chroot, audit writes and file capabilities widen what a
/// compromised app can do.
pub const DROPPED_CAPABILITIES: [&str; 5] =
    ["NET_RAW", "MKNOD", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"];

/// A Docker health check run inside the container (`HEALTHCHECK CMD …`), times in
/// nanoseconds as the Engine API takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHealthcheck {
    pub command: Vec<String>,
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub retries: i64,
    pub start_period_ns: i64,
}

/// Everything needed to create one container. Resource limits are required; no field can
/// ask for privileged mode, host mounts, the host network or extra capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    /// Image id (`sha256:…`) or reference.
    pub image: String,
    /// Replaces the image's command; the image's entrypoint stays.
    pub command: Option<Vec<String>>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// The TCP port the app serves HTTP on; published on the node's advertise address when
    /// the engine has one ([`Engine::advertising`]).
    pub http_port: Option<u16>,
    /// The (project) network to join, with the names other containers reach this one by.
    pub network: String,
    pub network_aliases: Vec<String>,
    /// CPU limit in billionths of a core (`NanoCpus`).
    pub nano_cpus: i64,
    /// Memory limit in bytes; swap is not added on top.
    pub memory_bytes: i64,
    /// Most processes/threads (`PidsLimit`).
    pub pids_limit: i64,
    /// Named volumes: (volume name, absolute mount path).
    pub volumes: Vec<(String, String)>,
    pub healthcheck: Option<CommandHealthcheck>,
}

/// A container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Docker's state: `created`, `running`, `restarting`, `exited`, `dead`, ...
    pub state: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Docker health status (`starting`, `healthy`, `unhealthy`) when the container has a
    /// health check.
    pub health: Option<String>,
    /// The container's address on `network` (when asked for one that it joined).
    pub ip_address: Option<String>,
    /// The node's advertise address and the host port the engine published the HTTP port
    /// on, when the engine advertises one ([`Engine::advertising`]) and the port is bound.
    pub published: Option<(String, u16)>,
    /// Unix epoch milliseconds of the last start, when known.
    pub started_at_ms: Option<i64>,
    pub error: String,
}

impl ContainerStatus {
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// Where the ingress and health probes reach the app's `http_port`: the published
    /// binding when there is one, else the address on the network asked for and `http_port`
    /// itself. Either part is `None` while unknown.
    pub fn reached_at(&self, http_port: Option<u16>) -> (Option<String>, Option<u16>) {
        match &self.published {
            Some((ip, port)) => (Some(ip.clone()), Some(*port)),
            None => (self.ip_address.clone(), http_port),
        }
    }
}

/// The binding of a TCP port on `address` in an inspected container's port map, as
/// `(address, host port)`.
fn published_in(ports: &PortMap, address: std::net::IpAddr) -> Option<(String, u16)> {
    ports
        .iter()
        .filter(|(key, _)| key.ends_with("/tcp"))
        .flat_map(|(_, bindings)| bindings.iter().flatten())
        .find_map(|b| {
            let ip: std::net::IpAddr = b.host_ip.as_deref()?.parse().ok()?;
            let port = b.host_port.as_deref()?.parse().ok()?;
            (ip == address).then(|| (ip.to_string(), port))
        })
}

/// An image resolved on an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The local image id, `sha256:…` (what containers are created from).
    pub id: String,
    /// The registry digest (`name@sha256:…`) when the image came from a registry, else the id.
    pub digest: String,
}

/// One container event (`docker events --filter type=container`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    /// `start`, `die`, `destroy`, `health_status: healthy`, `oom`, ...
    pub action: String,
    pub labels: HashMap<String, String>,
}

/// One line of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// RFC 3339 timestamp as the engine recorded it.
    pub timestamp: String,
    pub text: String,
}

pub(super) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(super) fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    if t.year() < 2000 {
        return None; // "0001-01-01T00:00:00Z": never started
    }
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The exit code in a `docker ps` status text such as `Exited (137) 5 seconds ago`.
fn exit_code_in(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

/// The health in a `docker ps` status text such as `Up 3 seconds (healthy)`.
fn health_in(status: &str) -> Option<String> {
    ["(healthy)", "(unhealthy)", "(health: starting)"]
        .iter()
        .find(|h| status.ends_with(*h))
        .map(|h| match *h {
            "(healthy)" => "healthy".to_owned(),
            "(unhealthy)" => "unhealthy".to_owned(),
            _ => "starting".to_owned(),
        })
}

impl Engine {
    /// Finds `reference` on the engine, pulling it when missing.
    ///
    /// # Errors
    /// `ImageUnavailable` when it is neither present nor pullable (with the engine's reason).
    pub async fn resolve_image(&self, reference: &str) -> Result<ResolvedImage, RuntimeError> {
        if let Some(image) = self.inspect_image(reference).await? {
            return Ok(image);
        }
        let pull = async {
            let mut progress = self.docker.create_image(
                Some(CreateImageOptions {
                    from_image: Some(reference.to_owned()),
                    ..Default::default()
                }),
                None,
                None,
            );
            while let Some(item) = progress.next().await {
                item?;
            }
            Ok::<(), bollard::errors::Error>(())
        };
        match tokio::time::timeout(PULL_TIMEOUT, pull).await {
            Err(_) => {
                return Err(RuntimeError::ImageUnavailable {
                    image: reference.to_owned(),
                    reason: format!("pulling took longer than {} s", PULL_TIMEOUT.as_secs()),
                })
            }
            Ok(Err(e)) => {
                return Err(RuntimeError::ImageUnavailable {
                    image: reference.to_owned(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(())) => {}
        }
        self.inspect_image(reference)
            .await?
            .ok_or_else(|| RuntimeError::ImageUnavailable {
                image: reference.to_owned(),
                reason: "the pull finished but the image is not there".into(),
            })
    }

    /// Creates a container from `spec` and returns its id; when a container of that name
    /// exists already (a job running again), returns the existing one's id.
    ///
    /// # Errors
    /// `Timeout`, `Engine` (e.g. a limit the engine refuses).
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mounts = spec
            .volumes
            .iter()
            .map(|(volume, path)| Mount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.clone()),
                target: Some(path.clone()),
                read_only: Some(false),
                ..Default::default()
            })
            .collect();
        let host_config = HostConfig {
            nano_cpus: Some(spec.nano_cpus),
            memory: Some(spec.memory_bytes),
            memory_swap: Some(spec.memory_bytes),
            pids_limit: Some(spec.pids_limit),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            cap_drop: Some(
                DROPPED_CAPABILITIES
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
            ),
            network_mode: Some(spec.network.clone()),
            port_bindings: self.port_bindings(spec),
            mounts: Some(mounts),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "3".to_owned()),
                ])),
            }),
            ..Default::default()
        };
        let endpoint = EndpointSettings {
            aliases: Some(spec.network_aliases.clone()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            exposed_ports: self
                .port_bindings(spec)
                .map(|ports| ports.into_keys().collect()),
            cmd: spec.command.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
                test: Some(
                    std::iter::once("CMD".to_owned())
                        .chain(h.command.iter().cloned())
                        .collect(),
                ),
                interval: Some(h.interval_ns),
                timeout: Some(h.timeout_ns),
                retries: Some(h.retries),
                start_period: Some(h.start_period_ns),
                start_interval: None,
            }),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match bounded(self.docker.create_container(Some(options), body)).await {
            Ok(created) => Ok(created.id),
            Err(RuntimeError::Conflict(_)) => self
                .inspect_container(&spec.name, None)
                .await?
                .map(|c| c.id)
                .ok_or_else(|| RuntimeError::Engine(format!("container {} vanished", spec.name))),
            Err(e) => Err(e),
        }
    }

    /// `<http_port>/tcp` bound to the advertise address at a host port the engine picks
    /// (`HostPort` empty), when both are known.
    fn port_bindings(&self, spec: &ContainerSpec) -> Option<PortMap> {
        let (address, port) = (self.advertise_address?, spec.http_port?);
        let binding = PortBinding {
            host_ip: Some(address.to_string()),
            host_port: Some(String::new()),
        };
        Some(HashMap::from([(
            format!("{port}/tcp"),
            Some(vec![binding]),
        )]))
    }

    /// Starts a container; one already running is no error.
    ///
    /// # Errors
    /// `NotFound`, `Timeout`, `Engine`.
    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        bounded(self.docker.start_container(id, None)).await
    }

    /// Stops a container (SIGTERM, then SIGKILL after `grace_secs`); a stopped or missing one
    /// is no error.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn stop_container(&self, id: &str, grace_secs: i32) -> Result<(), RuntimeError> {
        let call = self.docker.stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(grace_secs),
                signal: None,
            }),
        );
        let limit =
            CALL_TIMEOUT + std::time::Duration::from_secs(grace_secs.max(0).unsigned_abs().into());
        match tokio::time::timeout(limit, call).await {
            Err(_) => Err(RuntimeError::Timeout),
            Ok(Err(e)) if status_of(&e) == Some(404) => Ok(()),
            Ok(r) => r.map_err(Into::into),
        }
    }

    /// Removes a container (forcibly, with its anonymous volumes); a missing one is no error.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match bounded(self.docker.remove_container(id, Some(options))).await {
            Err(RuntimeError::NotFound(_)) | Ok(()) => Ok(()),
            // Another caller is removing it already.
            Err(RuntimeError::Conflict(m)) if m.contains("already in progress") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The container's state, or `None` when it does not exist. `network` picks which
    /// network's address is reported.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn inspect_container(
        &self,
        id: &str,
        network: Option<&str>,
    ) -> Result<Option<ContainerStatus>, RuntimeError> {
        let c = match bounded(self.docker.inspect_container(id, None)).await {
            Err(RuntimeError::NotFound(_)) => return Ok(None),
            other => other?,
        };
        let state = c.state.unwrap_or_default();
        let settings = c.network_settings.unwrap_or_default();
        let published = self
            .advertise_address
            .zip(settings.ports.as_ref())
            .and_then(|(address, ports)| published_in(ports, address));
        let networks = settings.networks.unwrap_or_default();
        let ip_address = network
            .and_then(|n| networks.get(n))
            .or_else(|| networks.values().next())
            .and_then(|e| e.ip_address.clone())
            .filter(|ip| !ip.is_empty());
        Ok(Some(ContainerStatus {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            ip_address,
            published,
            started_at_ms: state.started_at.as_deref().and_then(parse_rfc3339_ms),
            error: state.error.unwrap_or_default(),
        }))
    }

    /// Every container (running or not) carrying all of `labels` (`key=value` filters), in
    /// one call.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn list_containers(
        &self,
        labels: &[String],
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
            ..Default::default()
        };
        let list = bounded(self.docker.list_containers(Some(options))).await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let status = c.status.unwrap_or_default();
                let published = self.advertise_address.and_then(|address| {
                    c.ports.iter().flatten().find_map(|p| {
                        let ip: std::net::IpAddr = p.ip.as_deref()?.parse().ok()?;
                        let tcp = p.typ == Some(PortSummaryTypeEnum::TCP);
                        (ip == address && tcp).then_some((ip.to_string(), p.public_port?))
                    })
                });
                ContainerStatus {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_owned(),
                    labels: c.labels.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    exit_code: exit_code_in(&status),
                    oom_killed: false,
                    health: health_in(&status),
                    ip_address: c
                        .network_settings
                        .and_then(|n| n.networks)
                        .and_then(|n| n.into_values().next())
                        .and_then(|e| e.ip_address)
                        .filter(|ip| !ip.is_empty()),
                    published,
                    started_at_ms: None,
                    error: String::new(),
                }
            })
            .collect())
    }

    /// Container events for containers carrying `label` (`key=value`), as they happen. The
    /// stream ends when the engine connection drops; callers reconnect and resync.
    pub fn container_events(
        &self,
        label: &str,
    ) -> impl Stream<Item = Result<ContainerEvent, RuntimeError>> + Send + 'static {
        let options = EventsOptions {
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("label".to_owned(), vec![label.to_owned()]),
            ])),
            ..Default::default()
        };
        self.docker.events(Some(options)).map(|item| {
            let event = item?;
            let actor = event.actor.unwrap_or_default();
            Ok(ContainerEvent {
                container_id: actor.id.unwrap_or_default(),
                action: event.action.unwrap_or_default(),
                labels: actor.attributes.unwrap_or_default(),
            })
        })
    }

    /// The container's output with timestamps: the last `tail` lines, then (with `follow`)
    /// new lines as they come.
    pub fn container_output(
        &self,
        id: &str,
        tail: u32,
        follow: bool,
    ) -> impl Stream<Item = Result<OutputLine, RuntimeError>> + Send + 'static {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        self.docker.logs(id, Some(options)).map(|item| {
            let (stream, bytes) = match item? {
                bollard::container::LogOutput::StdErr { message } => ("stderr", message),
                bollard::container::LogOutput::StdOut { message }
                | bollard::container::LogOutput::Console { message } => ("stdout", message),
                bollard::container::LogOutput::StdIn { message } => ("stdin", message),
            };
            let line = String::from_utf8_lossy(&bytes);
            let line = line.trim_end_matches(['\n', '\r']);
            let (timestamp, text) = line.split_once(' ').unwrap_or((line, ""));
            Ok(OutputLine {
                stream,
                timestamp: timestamp.to_owned(),
                text: text.to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_status_texts_are_read() {
        assert_eq!(exit_code_in("Exited (137) 5 seconds ago"), Some(137));
        assert_eq!(exit_code_in("Up 2 minutes"), None);
        assert_eq!(
            health_in("Up 3 seconds (healthy)").as_deref(),
            Some("healthy")
        );
        assert_eq!(
            health_in("Up 1 second (health: starting)").as_deref(),
            Some("starting")
        );
        assert_eq!(health_in("Up 1 second"), None);
        assert_eq!(parse_rfc3339_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_rfc3339_ms("2026-01-02T03:04:05.123456789Z"),
            Some(1_767_323_045_123)
        );
    }
}
