//! The container engine adapter: the only module that talks to Docker (through bollard).
//! Every call is bounded by a timeout; errors are mapped to [`RuntimeError`] (404 →
//! `NotFound`, 409 → `Conflict`, 304 on start/stop → success).

mod containers;

pub use containers::{
    CommandHealthcheck, ContainerEvent, ContainerSpec, ContainerStatus, OutputLine, ResolvedImage,
    DROPPED_CAPABILITIES, PULL_TIMEOUT,
};

use std::{future::Future, time::Duration};

use bollard::Docker;

/// How long one Docker API call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection-level limit (seconds) bollard applies to every request, streams included.
const STREAM_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// Errors of the engine adapter.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The endpoint URL is not one Berth can connect to (yet).
    #[error("unsupported engine endpoint '{0}': use unix:///path/to/docker.sock")]
    UnsupportedEndpoint(String),
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
            // bollard already counts 304 (already started / stopped) as success.
            other => Self::Engine(other.to_string()),
        }
    }
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

/// A connection to one Docker engine (one node).
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

impl Engine {
    /// Connects to `endpoint` (`unix:///var/run/docker.sock`) and negotiates the API version
    /// with the engine, so older engines (API 1.41 here) are spoken to in their version.
    ///
    /// # Errors
    /// `UnsupportedEndpoint` for other schemes (tcp:// and ssh:// are accepted in the store but
    /// not connected to yet); `Timeout`/`Engine` when the engine does not answer.
    pub async fn connect(endpoint: &str) -> Result<Self, RuntimeError> {
        let Some(path) = endpoint.strip_prefix("unix://") else {
            return Err(RuntimeError::UnsupportedEndpoint(endpoint.to_owned()));
        };
        // bollard's own timeout covers whole streams (events, followed logs), so it is set far
        // out; every call is bounded by `bounded` / its own deadline instead.
        let docker =
            Docker::connect_with_unix(path, STREAM_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)?;
        let docker = bounded(docker.negotiate_version()).await?;
        Ok(Self {
            docker,
            endpoint: endpoint.to_owned(),
        })
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
