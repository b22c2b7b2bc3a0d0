//! `ssh://` engines: the system OpenSSH client forwards a local Unix socket to the node's
//! `/var/run/docker.sock` (`ssh -L local.sock:/var/run/docker.sock`, OpenSSH's
//! "StreamLocal" forwarding), and bollard speaks to the local end as to any Unix socket.
//!
//! The node needs only sshd (with `AllowStreamLocalForwarding`, on by default) and a user
//! that may use the Docker socket. Host keys are trusted on first use and pinned in a
//! `known_hosts` file of Berth's own, next to the socket, so a changed host key is refused.
//! `ssh` runs as an argument list, never through a shell.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{io::AsyncReadExt, process::Child};

use super::RuntimeError;

/// The Docker socket on the node.
const REMOTE_SOCKET: &str = "/var/run/docker.sock";

/// A running `ssh -N -L` forwarding; the process is killed when this is dropped.
#[derive(Debug)]
pub(super) struct SshTunnel {
    _child: Child,
    socket: PathBuf,
}

impl SshTunnel {
    /// Starts `ssh` to `[user@]host[:port]` with `identity` (else the client's own keys and
    /// agent) and waits until the local socket `dir/docker.sock` accepts connections.
    ///
    /// # Errors
    /// `Unreachable` with ssh's own message when it exits (refused, authentication failed,
    /// host key changed); `Timeout` when the socket does not appear within `wait`.
    pub(super) async fn open(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        identity: Option<&Path>,
        dir: &Path,
        wait: Duration,
    ) -> Result<Self, RuntimeError> {
        let socket = dir.join("docker.sock");
        let _ = std::fs::remove_file(&socket);
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.arg("-N")
            .arg("-T")
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ExitOnForwardFailure=yes"])
            .args(["-o", "StreamLocalBindUnlink=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                dir.join("known_hosts").display()
            ))
            .args(["-o", "ServerAliveInterval=10"])
            .args(["-o", "ServerAliveCountMax=3"])
            .arg("-o")
            .arg(format!("ConnectTimeout={}", wait.as_secs().max(1)));
        if let Some(identity) = identity {
            cmd.arg("-i")
                .arg(identity)
                .args(["-o", "IdentitiesOnly=yes"]);
        }
        if let Some(port) = port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(user) = user {
            cmd.arg("-l").arg(user);
        }
        cmd.arg("-L")
            .arg(format!("{}:{REMOTE_SOCKET}", socket.display()))
            .arg("--")
            .arg(host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Unreachable(format!("cannot run ssh: {e}")))?;
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                let mut message = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut message).await;
                }
                let message = message.trim();
                return Err(RuntimeError::Unreachable(if message.is_empty() {
                    format!("ssh exited with {status}")
                } else {
                    format!("ssh: {message}")
                }));
            }
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                return Ok(Self {
                    _child: child,
                    socket,
                });
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The local end of the forwarding.
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }
}
