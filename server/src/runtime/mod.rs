//! The container engine adapter: the only module that talks to Docker (through bollard).
//! Every call is bounded by a timeout; errors are mapped to [`RuntimeError`] (404 →
//! `NotFound`, 409 → `Conflict`, 304 on start/stop → success).

mod archive;
mod build;
mod containers;
mod exec;
mod networks;
mod ssh;
mod stats;

pub use archive::{VolumeHelper, ARCHIVE_IDLE_TIMEOUT, ARCHIVE_UPLOAD_TIMEOUT};
pub use build::ImageBuild;
pub use containers::{
    CommandHealthcheck, ContainerEvent, ContainerSpec, ContainerStatus, OutputLine, ResolvedImage,
    DROPPED_CAPABILITIES, PULL_TIMEOUT,
};
pub use exec::ExecCommand;

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use bollard::Docker;

/// How long one Docker API call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection-level limit (seconds) bollard applies to every request, streams included.
const STREAM_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// Errors of the engine adapter.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The endpoint URL is not one Berth can connect to; the message says what is accepted.
    #[error("{0}")]
    UnsupportedEndpoint(String),
    /// No connection could be made (refused, no route, TLS or SSH handshake failed).
    #[error("cannot reach the Docker engine: {0}")]
    Unreachable(String),
    /// The engine did not answer within [`CALL_TIMEOUT`].
    #[error("the Docker engine did not answer within {} s", CALL_TIMEOUT.as_secs())]
    Timeout,
    /// The object does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object exists already or is in use (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The image is not on the engine and could not be pulled.
    #[error("the image '{image}' is not on the node and cannot be pulled: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// The engine refused or failed the call.
    #[error("Docker engine error: {0}")]
    Engine(String),
    /// A command run in a container (exec) failed; the message names it, its exit code and
    /// the end of its standard error.
    #[error("{0}")]
    CommandFailed(String),
    /// An image build failed; the message is the builder's (e.g. the failing step's error).
    #[error("the build failed: {0}")]
    BuildFailed(String),
}

impl RuntimeError {
    /// Whether the engine itself failed (unreachable, too slow, a server error), as opposed
    /// to answering about an object (not found, conflict, no image): what a circuit breaker
    /// counts.
    pub fn is_engine_failure(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Timeout | Self::Engine(_))
    }
}

impl From<bollard::errors::Error> for RuntimeError {
    fn from(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            } => Self::NotFound(message),
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            } => Self::Conflict(message),
            bollard::errors::Error::HyperLegacyError { err } if err.is_connect() => {
                Self::Unreachable(error_chain(&err))
            }
            // bollard already counts 304 (already started / stopped) as success.
            other => Self::Engine(error_chain(&other)),
        }
    }
}

/// `err` and its sources joined with ": ", so the root cause (e.g. "Connection refused") shows.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

async fn bounded<T, F>(call: F) -> Result<T, RuntimeError>
where
    F: Future<Output = Result<T, bollard::errors::Error>>,
{
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| RuntimeError::Timeout)?
        .map_err(RuntimeError::from)
}

/// What an engine reports about its host (`GET /info`, `GET /version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// Logical CPUs (`NCPU`).
    pub cpus: i64,
    /// Total memory in bytes (`MemTotal`).
    pub memory_bytes: i64,
    /// Server version, e.g. `20.10.24+dfsg1`.
    pub version: String,
}

/// A Docker Engine API endpoint, as accepted in a node's `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path/to/docker.sock`: the engine beside Berth.
    Unix(PathBuf),
    /// `tcp://host:port`: a remote engine over TLS with a client certificate (Docker's
    /// `--tlsverify` mode, usually port 2376). Plain-text TCP is refused.
    Tcp { host: String, port: u16 },
    /// `ssh://[user@]host[:port]`: a remote engine reached through the system `ssh` client,
    /// which forwards a local socket to the node's `/var/run/docker.sock` (see `ssh.rs`).
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
}

const ACCEPTED_ENDPOINTS: &str =
    "use unix:///path/to/docker.sock, tcp://host:port (TLS) or ssh://user@host[:port]";

impl Endpoint {
    /// Parses an endpoint URL.
    ///
    /// # Errors
    /// `UnsupportedEndpoint` naming what is wrong and the accepted forms.
    pub fn parse(url: &str) -> Result<Self, RuntimeError> {
        let bad = |why: &str| {
            RuntimeError::UnsupportedEndpoint(format!("'{url}' {why}: {ACCEPTED_ENDPOINTS}"))
        };
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("needs an absolute socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        if rest.contains(['/', '?', '#', ' ']) {
            return Err(bad("may not carry a path, query or spaces"));
        }
        let (user, host_port) = match rest.rsplit_once('@') {
            Some((u, hp)) => (Some(u), hp),
            None => (None, rest),
        };
        let (host, port) =
            split_host_port(host_port).ok_or_else(|| bad("has a bad host or port"))?;
        match scheme {
            "tcp" => {
                if user.is_some() {
                    return Err(bad("may not carry a user name"));
                }
                let port =
                    port.ok_or_else(|| bad("needs a port (the engine's TLS port, usually 2376)"))?;
                Ok(Self::Tcp { host, port })
            }
            "ssh" => {
                if let Some(u) = user {
                    let valid = !u.is_empty()
                        && u.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                        && !u.starts_with('-');
                    if !valid {
                        return Err(bad("has a bad user name"));
                    }
                }
                Ok(Self::Ssh {
                    user: user.map(str::to_owned),
                    host,
                    port,
                })
            }
            _ => Err(bad("has an unsupported scheme")),
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the host is a DNS name or an IP address and
/// never starts with `-` (it ends up as an `ssh` argument).
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h.to_owned(), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    Some((host, port))
}

/// What Berth presents to a remote engine, as files (bollard and `ssh` read them from disk).
#[derive(Debug, Clone, Default)]
pub struct EngineCredentials {
    /// For `tcp://`: PEM files of the CA that signed the engine's certificate, the client
    /// certificate and its private key.
    pub tls: Option<TlsFiles>,
    /// For `ssh://`: the private key; `None` leaves it to the `ssh` client's own configuration
    /// and agent.
    pub ssh_identity: Option<PathBuf>,
    /// For `ssh://`: where the forwarded socket and the pinned host key (`known_hosts`) live.
    pub ssh_dir: Option<PathBuf>,
}

/// PEM files for a TLS connection to an engine.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A connection to one Docker engine (one node).
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
    /// The `ssh` forwarding of an `ssh://` engine; it ends with the last clone.
    _tunnel: Option<Arc<ssh::SshTunnel>>,
    /// The node's advertise address: containers publish their HTTP port on it (see
    /// [`Engine::advertising`]).
    advertise_address: Option<std::net::IpAddr>,
}

impl Engine {
    /// Connects to `endpoint` (see [`Endpoint`]) and negotiates the API version with the
    /// engine, so older engines (API 1.41 here) are spoken to in their version.
    ///
    /// # Errors
    /// `UnsupportedEndpoint` for a malformed URL or a `tcp://` endpoint without TLS files;
    /// `Unreachable` when no connection can be made (refused, TLS or SSH handshake failed);
    /// `Timeout`/`Engine` when the engine does not answer.
    pub async fn connect(
        endpoint: &str,
        credentials: &EngineCredentials,
    ) -> Result<Self, RuntimeError> {
        // bollard's own timeout covers whole streams (events, followed logs), so it is set far
        // out; every call is bounded by `bounded` / its own deadline instead.
        let version = bollard::API_DEFAULT_VERSION;
        let mut tunnel = None;
        let docker = match Endpoint::parse(endpoint)? {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), STREAM_TIMEOUT_SECS, version)?
            }
            Endpoint::Tcp { .. } => {
                let tls = credentials.tls.as_ref().ok_or_else(|| {
                    RuntimeError::UnsupportedEndpoint(format!(
                        "'{endpoint}' needs the CA certificate, client certificate and client \
                         key: Berth speaks to remote engines over TLS only"
                    ))
                })?;
                Docker::connect_with_ssl(
                    endpoint,
                    &tls.key,
                    &tls.cert,
                    &tls.ca,
                    STREAM_TIMEOUT_SECS,
                    version,
                )?
            }
            Endpoint::Ssh { user, host, port } => {
                let dir = credentials.ssh_dir.as_deref().ok_or_else(|| {
                    RuntimeError::Engine("no directory for the ssh forwarding".into())
                })?;
                let t = ssh::SshTunnel::open(
                    user.as_deref(),
                    &host,
                    port,
                    credentials.ssh_identity.as_deref(),
                    dir,
                    CALL_TIMEOUT,
                )
                .await?;
                let docker = Docker::connect_with_unix(
                    &t.socket().to_string_lossy(),
                    STREAM_TIMEOUT_SECS,
                    version,
                )?;
                tunnel = Some(Arc::new(t));
                docker
            }
        };
        let docker = bounded(docker.negotiate_version()).await?;
        Ok(Self {
            docker,
            endpoint: endpoint.to_owned(),
            _tunnel: tunnel,
            advertise_address: None,
        })
    }

    /// The same engine, with containers created from now on publishing their HTTP port
    /// ([`ContainerSpec::http_port`]) on `address` at a host port the engine picks, and
    /// [`ContainerStatus::published`] reporting that binding. For a node that another host's
    /// ingress must reach: a container's bridge address is reachable only on its own host.
    /// `None`: nothing is published.
    pub fn advertising(mut self, address: Option<std::net::IpAddr>) -> Self {
        self.advertise_address = address;
        self
    }

    /// The endpoint this engine was reached at.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// CPUs, memory and version of the engine's host.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        let info = bounded(self.docker.info()).await?;
        Ok(EngineInfo {
            cpus: info.ncpu.unwrap_or(0),
            memory_bytes: info.mem_total.unwrap_or(0),
            version: info.server_version.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_into_their_parts() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.5:2376").unwrap(),
            Endpoint::Tcp {
                host: "10.0.0.5".into(),
                port: 2376
            }
        );
        assert_eq!(
            Endpoint::parse("ssh://deploy@node-2.example.com:2222").unwrap(),
            Endpoint::Ssh {
                user: Some("deploy".into()),
                host: "node-2.example.com".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            Endpoint::parse("ssh://[::1]").unwrap(),
            Endpoint::Ssh {
                user: None,
                host: "::1".into(),
                port: None
            }
        );
    }

    #[test]
    fn bad_endpoints_say_what_is_accepted() {
        for bad in [
            "http://host:2375",
            "tcp://host",
            "tcp://user@host:2376",
            "tcp://host:0",
            "tcp://host:99999",
            "unix://relative.sock",
            "ssh://-oProxyCommand=x@host",
            "ssh://user@-host",
            "ssh://host/path",
            "docker.sock",
            "ssh://us er@host",
        ] {
            let e = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(e.contains(ACCEPTED_ENDPOINTS), "{bad}: {e}");
        }
    }
}
