//! Registering engines as nodes: the local engine at start-up, remote engines when an admin
//! adds them, and the credentials Berth presents to them.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::Orchestrator;
use crate::{
    runtime::{Engine, EngineCredentials, EngineInfo, RuntimeError, TlsFiles},
    store::{NodeCapacity, NodeRecord, Store, StoreError},
};

/// Name of the node of the engine Berth runs beside, and of its default region and zone.
pub const LOCAL_NODE: &str = "local";
/// Region and availability zone the local node is registered in.
pub const DEFAULT_ZONE: (&str, &str) = ("default", "default");

/// Why a node could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registers (or refreshes) the local engine as node `local` in region `default`, zone
/// `default`, with the capacity the engine reports: `NCPU` × 1000 millicores and `MemTotal`
/// bytes.
///
/// # Errors
/// The engine does not answer, or the store fails.
pub async fn register_local_node(
    store: &Store,
    engine: &Engine,
    max_instances: i64,
) -> Result<NodeRecord, RegisterError> {
    let info = engine.info().await?;
    let zone = store
        .topology()
        .ensure_zone(DEFAULT_ZONE.0, DEFAULT_ZONE.1)
        .await?;
    let capacity = NodeCapacity {
        cpu_millicores: info.cpus * 1000,
        memory_bytes: info.memory_bytes,
        engine_version: info.version,
    };
    Ok(store
        .topology()
        .register_node(
            LOCAL_NODE,
            &zone,
            engine.endpoint(),
            &capacity,
            max_instances,
        )
        .await?)
}

/// Credentials as an admin gives them, in plain text (PEM or OpenSSH format).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainCredentials<'a> {
    pub tls_ca_pem: Option<&'a str>,
    pub tls_cert_pem: Option<&'a str>,
    pub private_key_pem: Option<&'a str>,
}

/// Writes `credentials` into `dir` (created 0700; files 0600, replaced if present) and returns
/// the files bollard and `ssh` are to read. A key alone is an SSH identity; a CA, certificate
/// and key are TLS files. `dir` also holds an `ssh://` node's forwarded socket and pinned host
/// key.
///
/// # Errors
/// The directory or a file cannot be written.
fn write_credentials(
    dir: &Path,
    credentials: PlainCredentials<'_>,
) -> std::io::Result<EngineCredentials> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let write = |name: &str, text: &str| -> std::io::Result<PathBuf> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(text.trim().as_bytes())?;
        file.write_all(b"\n")?;
        Ok(path)
    };
    let mut out = EngineCredentials {
        ssh_dir: Some(dir.to_owned()),
        ..EngineCredentials::default()
    };
    match credentials {
        PlainCredentials {
            tls_ca_pem: Some(ca),
            tls_cert_pem: Some(cert),
            private_key_pem: Some(key),
        } => {
            out.tls = Some(TlsFiles {
                ca: write("ca.pem", ca)?,
                cert: write("cert.pem", cert)?,
                key: write("key.pem", key)?,
            });
        }
        PlainCredentials {
            private_key_pem: Some(key),
            ..
        } => out.ssh_identity = Some(write("id_ssh", key)?),
        _ => {}
    }
    Ok(out)
}

impl Orchestrator {
    /// Connects to an engine that is not a node yet, with credentials written to a scratch
    /// directory that is removed afterwards, and reads its capacity.
    ///
    /// # Errors
    /// `UnsupportedEndpoint`, `Unreachable`, `Timeout`, `Engine`; `Engine` also when the
    /// scratch files cannot be written.
    pub async fn probe_engine(
        &self,
        endpoint: &str,
        credentials: PlainCredentials<'_>,
    ) -> Result<EngineInfo, RuntimeError> {
        let dir = self
            .credentials_dir
            .join(format!(".probe-{}", crate::store::new_id()));
        let result = async {
            let files = write_credentials(&dir, credentials)
                .map_err(|e| RuntimeError::Engine(format!("cannot write the credentials: {e}")))?;
            let engine = Engine::connect(endpoint, &files).await?;
            engine.info().await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// Connects to stored node `node` (its key decrypted into its credentials directory)
    /// and makes the connection the one used for it; containers it creates publish their
    /// HTTP port on the node's advertise address, when it has one.
    ///
    /// # Errors
    /// The engine cannot be reached, or the stored key cannot be decrypted.
    pub async fn connect_node(&self, node: &NodeRecord) -> Result<Arc<Engine>, RuntimeError> {
        let key = node
            .credentials
            .private_key_enc
            .as_deref()
            .map(|sealed| self.secrets.open(sealed))
            .transpose()
            .map_err(|e| RuntimeError::Engine(format!("cannot decrypt the node's key: {e}")))?;
        let plain = PlainCredentials {
            tls_ca_pem: node.credentials.tls_ca_pem.as_deref(),
            tls_cert_pem: node.credentials.tls_cert_pem.as_deref(),
            private_key_pem: key.as_deref(),
        };
        let files = write_credentials(&self.credentials_dir.join(&node.id), plain)
            .map_err(|e| RuntimeError::Engine(format!("cannot write the credentials: {e}")))?;
        let advertise = node
            .advertise_address
            .as_deref()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok());
        let engine = Arc::new(
            Engine::connect(&node.endpoint, &files)
                .await?
                .advertising(advertise),
        );
        self.attach_engine(&node.id, engine.clone());
        Ok(engine)
    }
}
