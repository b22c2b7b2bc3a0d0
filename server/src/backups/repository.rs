//! A project's repository: its record (made, with the destination of the project's region,
//! at the first backup), how to open it, and the exclusive use of it. Repository operations
//! (backups, restores, checks, retention) take turns per project: inside one process through
//! a lock, and where several controllers share a PostgreSQL database also through the lease
//! `backup-repository:<project>` (see `store::leases`), renewed while it is held, so two
//! controllers never make the same repository or prune it while the other writes.

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{repo, s3, BackupError, BackupRunner};
use crate::{
    jobs::Progress,
    secrets::random_hex,
    store::{now_ms, BackupRepositoryRecord, Store},
};

/// How long a repository lease lasts unless renewed; it is renewed every third of that.
const LEASE_TTL_MS: i64 = 60_000;
/// How often a process waiting for another controller's turn asks again.
const LEASE_POLL: Duration = Duration::from_secs(2);
/// How long an operation waits for another controller's turn before it gives up.
const LEASE_WAIT: Duration = Duration::from_secs(30 * 60);

/// A repository's location and password, opened.
pub(super) struct RepositoryAccess {
    pub(super) location: repo::Location,
    pub(super) password: String,
    /// Whether a backup may create the repository: no backup of the project has succeeded
    /// yet (after one, a missing repository is a loss to report, not to paper over).
    pub(super) may_init: bool,
}

/// The exclusive use of a project's repository; given back when dropped.
pub(super) struct RepositoryTurn {
    _local: tokio::sync::OwnedMutexGuard<()>,
    /// With a shared database: the lease's renewal, and what to release.
    lease: Option<(tokio::task::JoinHandle<()>, Store, String, String)>,
}

impl Drop for RepositoryTurn {
    fn drop(&mut self) {
        if let Some((renewal, store, name, owner)) = self.lease.take() {
            renewal.abort();
            tokio::spawn(async move {
                if let Err(e) = store.leases().release(&name, &owner).await {
                    tracing::warn!(lease = %name, error = %e, "cannot release a repository lease");
                }
            });
        }
    }
}

impl BackupRunner {
    fn project_lock(&self, project_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.project_locks
            .lock()
            .expect("project locks")
            .entry(project_id.to_owned())
            .or_default()
            .clone()
    }

    /// Waits for the project's turn at its repository (noting on the job when another
    /// controller holds it), then holds it until the returned turn is dropped.
    ///
    /// # Errors
    /// `Store` when the lease cannot be read; `Invalid` when another controller kept the
    /// repository for [`LEASE_WAIT`].
    pub(super) async fn repository_turn(
        &self,
        project_id: &str,
        progress: &Progress,
    ) -> Result<RepositoryTurn, BackupError> {
        let local = self.project_lock(project_id).lock_owned().await;
        if self.sole_controller {
            return Ok(RepositoryTurn {
                _local: local,
                lease: None,
            });
        }
        let name = format!("backup-repository:{project_id}");
        let started = tokio::time::Instant::now();
        let mut noted = false;
        while self
            .store
            .leases()
            .claim(&name, &self.owner, now_ms(), LEASE_TTL_MS, false)
            .await?
            .is_none()
        {
            if started.elapsed() > LEASE_WAIT {
                return Err(BackupError::Invalid(
                    "another controller kept the project's repository for 30 minutes".into(),
                ));
            }
            if !noted {
                progress
                    .begin(
                        "wait for the repository",
                        "waiting for another controller using the project's repository",
                    )
                    .await;
                noted = true;
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        let (store, owner, lease) = (self.store.clone(), self.owner.clone(), name.clone());
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis((LEASE_TTL_MS / 3) as u64)).await;
                match store
                    .leases()
                    .claim(&lease, &owner, now_ms(), LEASE_TTL_MS, false)
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::error!(lease = %lease, "a repository lease was lost (this process paused past its deadline)");
                    }
                    Err(e) => {
                        tracing::warn!(lease = %lease, error = %e, "cannot renew a repository lease")
                    }
                }
            }
        });
        Ok(RepositoryTurn {
            _local: local,
            lease: Some((renewal, self.store.clone(), name, self.owner.clone())),
        })
    }

    /// The project's repository record, made (with a new random password) on first use:
    /// in the backup destination of the region the project's instances run in (the first
    /// by name, see [`crate::store::BackupDestinations::for_project`]), else in a local
    /// directory under the data directory.
    ///
    /// # Errors
    /// `Store` when it cannot be read or written.
    pub async fn repository_record(
        &self,
        project_id: &str,
    ) -> Result<BackupRepositoryRecord, BackupError> {
        if let Some(r) = self.store.backups().repository(project_id).await? {
            return Ok(r);
        }
        let password = self.secrets.seal(&random_hex(32));
        let created_at_ms = crate::store::now_ms();
        let next_check_at_ms = created_at_ms + self.settings.check_interval_ms;
        let record = match self
            .store
            .backup_destinations()
            .for_project(project_id)
            .await?
        {
            Some(d) => {
                let secret_access_key = self.secrets.open(&d.secret_access_key).map_err(|e| {
                    BackupError::Repository(format!(
                        "the secret key of region {}'s backup destination cannot be read: {e}",
                        d.region
                    ))
                })?;
                let destination = app::model::S3Destination {
                    endpoint: d.endpoint,
                    bucket: d.bucket,
                    region: d.s3_region,
                    prefix: d.prefix,
                    access_key_id: d.access_key_id,
                    secret_access_key,
                };
                let root = destination.repository_prefix(project_id);
                let s3 = s3::S3Repository { destination, root };
                let location = s3.location();
                let json = serde_json::to_string(&s3).map_err(|e| {
                    BackupError::Repository(format!("cannot record the S3 settings: {e}"))
                })?;
                BackupRepositoryRecord {
                    project_id: project_id.to_owned(),
                    kind: "s3".into(),
                    location,
                    password,
                    s3: Some(self.secrets.seal(&json)),
                    restore_drill: false,
                    next_check_at_ms,
                    created_at_ms,
                }
            }
            None => BackupRepositoryRecord {
                project_id: project_id.to_owned(),
                kind: "local".into(),
                location: self
                    .settings
                    .repository_root
                    .join(project_id)
                    .to_string_lossy()
                    .into_owned(),
                password,
                s3: None,
                restore_drill: false,
                next_check_at_ms,
                created_at_ms,
            },
        };
        Ok(self.store.backups().ensure_repository(&record).await?)
    }

    /// The S3 settings of a repository record (`None` for a local one).
    ///
    /// # Errors
    /// `Repository` when the sealed settings cannot be opened or read.
    pub fn s3_settings(
        &self,
        record: &BackupRepositoryRecord,
    ) -> Result<Option<s3::S3Repository>, BackupError> {
        let Some(sealed) = &record.s3 else {
            return Ok(None);
        };
        let json = self.secrets.open(sealed).map_err(|e| {
            BackupError::Repository(format!("the repository's S3 settings cannot be read: {e}"))
        })?;
        serde_json::from_str(&json).map(Some).map_err(|e| {
            BackupError::Repository(format!("the repository's S3 settings are damaged: {e}"))
        })
    }

    pub(super) async fn access(&self, project_id: &str) -> Result<RepositoryAccess, BackupError> {
        let record = self.repository_record(project_id).await?;
        let password = self.secrets.open(&record.password).map_err(|e| {
            BackupError::Repository(format!("the repository password cannot be read: {e}"))
        })?;
        let location = match self.s3_settings(&record)? {
            Some(s3) => repo::Location::S3(s3),
            None => repo::Location::Local(PathBuf::from(record.location)),
        };
        let may_init = !self.store.backups().any_succeeded(project_id).await?;
        Ok(RepositoryAccess {
            location,
            password,
            may_init,
        })
    }
}
