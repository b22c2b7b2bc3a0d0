//! Repositories in S3-compatible storage: rustic_core's backend traits over Apache OpenDAL's
//! S3 service (AWS Signature Version 4, path-style requests). Objects are laid out as restic
//! lays out files (<https://restic.readthedocs.io/en/stable/100_references.html#repository-format>):
//! `config`, `keys/<id>`, `snapshots/<id>`, `index/<id>` and `data/<first two hex
//! digits>/<id>` (rustic writes no `locks/`), under the repository's key prefix, so stock
//! restic opens the same place as `s3:<endpoint>/<bucket>/<prefix>`. Requests that fail in a
//! way OpenDAL deems temporary (5xx, throttling, a dropped connection) are retried with
//! exponential backoff and jitter, up to 4 times.
//!
//! The calls block (rustic_core is synchronous): make them off the async worker threads, with
//! a tokio runtime current (OpenDAL runs each request on it and waits).

use std::{sync::Once, time::Duration};

use app::model::S3Destination;
use bytes::Bytes;
use opendal::{blocking, options::ReadOptions, services::S3, EntryMode, ErrorKind};
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use serde::{Deserialize, Serialize};

use super::BackupError;

/// A repository's S3 place: the region's destination when the repository was made, and the
/// key prefix of this repository (`<destination prefix>/<project id>`). Stored sealed, as
/// JSON, because it holds the secret key.
#[derive(Clone, Serialize, Deserialize)]
pub struct S3Repository {
    #[serde(flatten)]
    pub destination: S3Destination,
    /// Key prefix of the repository in the bucket, without outer slashes.
    pub root: String,
}

impl S3Repository {
    /// restic's name of it: `s3:<endpoint>/<bucket>/<root>`.
    pub fn location(&self) -> String {
        format!(
            "s3:{}/{}/{}",
            self.destination.endpoint, self.destination.bucket, self.root
        )
    }
}

/// OpenDAL's HTTP transport for the process: reqwest 0.13 with rustls (the process's ring
/// provider), set once.
fn install_transport() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::builds::git::install_tls_provider();
        let client = reqwest_gix::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .expect("a reqwest client with default settings builds");
        opendal::HttpTransporter::install_default(
            opendal_http_transport_reqwest::ReqwestTransport::new(client),
        );
    });
}

/// One-line text of an OpenDAL error, saying what failed in words a person can act on.
fn describe(e: &opendal::Error) -> String {
    let what = match e.kind() {
        ErrorKind::PermissionDenied => "access denied (check the access key and secret)",
        ErrorKind::NotFound => "not found (does the bucket exist?)",
        ErrorKind::ConfigInvalid => "the S3 settings are not valid",
        ErrorKind::RateLimited => "the server asks to slow down",
        _ => "the S3 request failed",
    };
    format!("{what}: {e}")
}

/// rustic_core's `Backend` error for a failed S3 call on `path`.
fn backend_error(action: &str, path: &str, e: opendal::Error) -> Box<RusticError> {
    RusticError::with_source(
        rustic_core::ErrorKind::Backend,
        format!("S3: cannot {action} {path}: {}", describe(&e)),
        e,
    )
}

/// A restic repository in an S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Backend {
    op: blocking::Operator,
    location: String,
}

impl S3Backend {
    /// The backend of `repo`; makes no request yet.
    ///
    /// # Errors
    /// `Repository` when OpenDAL refuses the settings, or no tokio runtime is current.
    pub fn new(repo: &S3Repository) -> Result<Self, BackupError> {
        install_transport();
        let d = &repo.destination;
        let builder = S3::default()
            .endpoint(&d.endpoint)
            .bucket(&d.bucket)
            .region(&d.region)
            .root(&format!("/{}", repo.root))
            .access_key_id(&d.access_key_id)
            .secret_access_key(&d.secret_access_key)
            // Only the settings given here: no ~/.aws files, environment or EC2 metadata.
            .disable_config_load()
            .disable_ec2_metadata();
        let op = opendal::Operator::new(builder)
            .map_err(|e| BackupError::Repository(format!("S3: {}", describe(&e))))?
            .layer(
                opendal::layers::RetryLayer::new()
                    .with_jitter()
                    .with_max_times(4)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10)),
            );
        let op = blocking::Operator::new(op)
            .map_err(|e| BackupError::Repository(format!("S3: {}", describe(&e))))?;
        Ok(Self {
            op,
            location: repo.location(),
        })
    }

    /// Lists the prefix, then writes and removes a small object in it: proves the endpoint
    /// answers, the bucket exists and the keys may read, write and delete there (what every
    /// backup and prune needs).
    ///
    /// # Errors
    /// `Repository` saying which of these failed.
    pub fn probe(&self) -> Result<(), BackupError> {
        let fail = |e: opendal::Error| {
            BackupError::Repository(format!("S3 {}: {}", self.location, describe(&e)))
        };
        self.op.list("/").map_err(fail)?;
        let probe = format!(".berth-probe-{}", crate::secrets::random_hex(8));
        self.op.write(&probe, b"berth".to_vec()).map_err(fail)?;
        self.op.delete(&probe).map_err(fail)
    }

    /// The object key of a repository file (relative to the root).
    fn path(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".into(),
            FileType::Pack => format!("data/{}/{}", &hex[..2], &*hex),
            _ => format!("{}/{}", tpe.dirname(), &*hex),
        }
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return match self.op.stat("config") {
                Ok(meta) => Ok(vec![(
                    Id::default(),
                    u32::try_from(meta.content_length()).unwrap_or(u32::MAX),
                )]),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(backend_error("read", "config", e)),
            };
        }
        let dir = format!("{}/", tpe.dirname());
        let entries = self
            .op
            .list_options(
                &dir,
                opendal::options::ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
            .map_err(|e| backend_error("list", &dir, e))?;
        let mut found = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.metadata().mode() != EntryMode::FILE {
                continue;
            }
            // Objects that are not restic's (no 64-hex-digit name) are left alone, as restic does.
            let Ok(id) = entry.name().parse::<Id>() else {
                continue;
            };
            let size = u32::try_from(entry.metadata().content_length()).map_err(|_| {
                RusticError::new(
                    rustic_core::ErrorKind::Backend,
                    format!(
                        "S3: {} is larger than a repository file can be",
                        entry.path()
                    ),
                )
            })?;
            found.push((id, size));
        }
        Ok(found)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        self.op
            .read(&path)
            .map(|b| b.to_bytes())
            .map_err(|e| backend_error("read", &path, e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let start = u64::from(offset);
        self.op
            .read_options(
                &path,
                ReadOptions {
                    range: (start..start + u64::from(length)).into(),
                    ..Default::default()
                },
            )
            .map(|b| b.to_bytes())
            .map_err(|e| backend_error("read", &path, e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        Self::path(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.op
            .write(&path, content.into_vec())
            .map(|_| ())
            .map_err(|e| backend_error("write", &path, e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.op
            .delete(&path)
            .map_err(|e| backend_error("remove", &path, e))
    }
}

/// Lists `destination`'s prefix once with its keys, off the async threads: the check made
/// before an admin's destination is saved.
///
/// # Errors
/// `Repository` with the reason (endpoint unreachable, bucket missing, access denied).
pub async fn probe_destination(destination: &S3Destination) -> Result<(), BackupError> {
    let repo = S3Repository {
        destination: destination.clone(),
        root: destination.prefix.clone(),
    };
    tokio::task::spawn_blocking(move || S3Backend::new(&repo)?.probe())
        .await
        .map_err(|e| BackupError::Repository(format!("the S3 check did not finish: {e}")))?
}
