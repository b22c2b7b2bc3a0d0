//! Volume contents through the engine, never through host paths: a helper container is
//! created (and never started, so nothing of the image runs) with the volumes mounted, and
//! the Engine API's archive endpoints read and write them as tar streams
//! (`GET`/`PUT /containers/{id}/archive`, the calls behind `docker cp`). This works the same
//! on the local and on remote engines.

use std::{collections::HashMap, time::Duration};

use bollard::{
    body_try_stream,
    container::LogOutput,
    models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType},
    query_parameters::{
        CreateContainerOptions, DownloadFromContainerOptions, LogsOptions,
        UploadToContainerOptions, WaitContainerOptions,
    },
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{bounded, Engine, RuntimeError};

/// How long a tar stream may go without a chunk before it counts as failed.
pub const ARCHIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one upload of a tar stream may take in all.
pub const ARCHIVE_UPLOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// A container that only holds volume mounts for the archive endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHelper {
    /// Container name (deterministic per backup or restore, so a re-run finds it).
    pub name: String,
    /// Any image the engine has when `agent` is `None` (the container is never started; the
    /// deployment's own image is used, so no other image needs to exist on the node), else
    /// the agent's image.
    pub image: String,
    /// The command of a Berth agent to run in the container (see
    /// [`Engine::run_volume_agent`]); `None`: the container is never started.
    pub agent: Option<Vec<String>>,
    /// (Docker volume, absolute mount path) pairs.
    pub volumes: Vec<(String, String)>,
    /// Mount the volumes read-only (backups) or writable (restores).
    pub read_only: bool,
    pub labels: HashMap<String, String>,
}

impl Engine {
    /// Creates the helper container (or finds the one of that name) and returns its id. It
    /// has no network and, without an agent, a command that is never run. An agent runs as
    /// root on a read-only root filesystem with every capability dropped but
    /// `CAP_DAC_READ_SEARCH` (it lists files of any owner, and can change nothing).
    ///
    /// # Errors
    /// `NotFound` when the image is not on the node; `Timeout`, `Engine`.
    pub async fn create_volume_helper(
        &self,
        helper: &VolumeHelper,
    ) -> Result<String, RuntimeError> {
        let mounts = helper
            .volumes
            .iter()
            .map(|(volume, path)| Mount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.clone()),
                target: Some(path.clone()),
                read_only: Some(helper.read_only),
                ..Default::default()
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(helper.image.clone()),
            // Without an agent never started; a command is given only because images without
            // one (FROM scratch) cannot be created otherwise.
            entrypoint: Some(
                helper
                    .agent
                    .clone()
                    .unwrap_or_else(|| vec!["/berth-volume-helper-is-never-started".into()]),
            ),
            cmd: Some(vec![]),
            user: helper.agent.as_ref().map(|_| "0:0".to_owned()),
            labels: Some(helper.labels.clone()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: Some("none".into()),
                privileged: Some(false),
                readonly_rootfs: helper.agent.as_ref().map(|_| true),
                // The agent's output is read from its log (`run_volume_agent`).
                log_config: helper.agent.as_ref().map(|_| HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: None,
                }),
                cap_drop: helper.agent.as_ref().map(|_| vec!["ALL".to_owned()]),
                cap_add: helper
                    .agent
                    .as_ref()
                    .map(|_| vec!["DAC_READ_SEARCH".to_owned()]),
                security_opt: helper
                    .agent
                    .as_ref()
                    .map(|_| vec!["no-new-privileges".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(helper.name.clone()),
            platform: String::new(),
        };
        match bounded(self.docker.create_container(Some(options), body)).await {
            Ok(created) => Ok(created.id),
            Err(RuntimeError::Conflict(_)) => {
                let existing = bounded(self.docker.inspect_container(&helper.name, None)).await?;
                existing
                    .id
                    .ok_or_else(|| RuntimeError::Engine("container without an id".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Runs the agent of the helper container `container` (made by
    /// [`Self::create_volume_helper`] with `agent` set) to its end and returns its standard
    /// output, its exit code and its standard error. The output is read from the container's
    /// log once it has exited (the helper logs to `json-file` whatever the engine's default):
    /// an attach made before the start can miss or, with the log replayed, repeat the first
    /// lines. The container stays (exited), so its volumes can still be read through the
    /// archive endpoint.
    ///
    /// # Errors
    /// `Timeout` after `limit` (the container is then killed); `CommandFailed` when the
    /// output is longer than `max_output` bytes; `NotFound`, `Engine`.
    pub async fn run_volume_agent(
        &self,
        container: &str,
        limit: Duration,
        max_output: usize,
    ) -> Result<(Vec<u8>, i64, String), RuntimeError> {
        self.start_container(container).await?;
        let mut wait = self
            .docker
            .wait_container(container, None::<WaitContainerOptions>);
        let code = match tokio::time::timeout(limit, wait.next()).await {
            Err(_) => {
                let _ = self.stop_container(container, 0).await;
                return Err(RuntimeError::Timeout);
            }
            Ok(Some(Ok(done))) => done.status_code,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => {
                return Err(RuntimeError::Engine(format!(
                    "the engine did not say how {container} ended"
                )))
            }
        };
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut logs = self.docker.logs(container, Some(options));
        let (mut stdout, mut stderr) = (Vec::new(), String::new());
        while let Some(frame) = tokio::time::timeout(ARCHIVE_IDLE_TIMEOUT, logs.next())
            .await
            .map_err(|_| RuntimeError::Timeout)?
        {
            match frame.map_err(RuntimeError::from)? {
                LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                LogOutput::StdErr { message } => {
                    stderr.push_str(&String::from_utf8_lossy(&message));
                }
                _ => {}
            }
            if stdout.len() > max_output {
                return Err(RuntimeError::CommandFailed(format!(
                    "the volume agent printed more than {max_output} bytes"
                )));
            }
        }
        Ok((stdout, code, stderr))
    }

    /// The tar stream of `path` in `container` (its last component is the archive's root
    /// entry). Each chunk must arrive within [`ARCHIVE_IDLE_TIMEOUT`].
    pub fn download_archive(
        &self,
        container: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes, RuntimeError>> + Send + 'static {
        let options = DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        let stream = self
            .docker
            .download_from_container(container, Some(options))
            .boxed();
        futures_util::stream::unfold(Some(stream), |stream| async move {
            let mut stream = stream?;
            match tokio::time::timeout(ARCHIVE_IDLE_TIMEOUT, stream.next()).await {
                Err(_) => Some((Err(RuntimeError::Timeout), None)),
                Ok(None) => None,
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
                Ok(Some(Err(e))) => Some((Err(RuntimeError::from(e)), None)),
            }
        })
    }

    /// Extracts the tar stream `tar` into `path` of `container` (which must exist). Entries
    /// keep the owner, mode and times their headers give.
    ///
    /// # Errors
    /// `NotFound` when the path or container does not exist; `Engine` when the engine
    /// refuses the archive (e.g. a full disk) or the stream failed; `Timeout` after
    /// [`ARCHIVE_UPLOAD_TIMEOUT`].
    pub async fn upload_archive<S>(
        &self,
        container: &str,
        path: &str,
        tar: S,
    ) -> Result<(), RuntimeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let options = UploadToContainerOptions {
            path: path.to_owned(),
            no_overwrite_dir_non_dir: Some("true".into()),
            copy_uidgid: None,
        };
        let call = self
            .docker
            .upload_to_container(container, Some(options), body_try_stream(tar));
        tokio::time::timeout(ARCHIVE_UPLOAD_TIMEOUT, call)
            .await
            .map_err(|_| RuntimeError::Timeout)?
            .map_err(RuntimeError::from)
    }
}
