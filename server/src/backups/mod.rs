//! Backups of deployments' named volumes into one restic-format repository per project, and
//! restores from them. Both run as jobs (`kind = "backup"` / `"restore"`), one at a time per
//! deployment like every job, and one at a time per project repository.
//!
//! - Backup: a helper container (created, never started) mounts the volumes read-only at
//!   `/berth-volumes/<name>`; the engine's archive endpoint streams them as tar, which
//!   rustic_core stores as one snapshot (`/volumes/<name>/…`), tagged with the project,
//!   deployment, release and kind.
//! - Restore: the snapshot is restored into a staging directory on this host, checked, then
//!   streamed as tar into new volumes (the next generation, see
//!   `orchestrator::volume_name`); only when they are complete are the instances stopped,
//!   switched to them and started. A failure before the switch removes the new volumes and
//!   leaves the live data as it was (`restore`).
//! - Database servers (`DeploymentSpec::database`) are backed up as dumps taken inside a
//!   running instance, and restored by loading the dump back (`dump`).

mod browse;
mod check;
mod dump;
mod keys;
pub mod listing;
pub mod pipe;
pub mod repo;
mod repository;
mod restore;
pub mod s3;
pub mod schedule;
pub mod tar_source;
pub mod volumes;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use app::model::human_bytes;
pub use check::fire_due_checks;
use rustic_core::KeepOptions;
use serde::Deserialize;

use crate::{
    jobs::Progress,
    orchestrator::Orchestrator,
    runtime::{Engine, RuntimeError},
    secrets::SecretBox,
    store::{BackupOutcome, BackupRecord, DeploymentRecord, JobRecord, Store, StoreError},
};

/// Where the helper container mounts the volumes, and the archive's root entry.
const HELPER_ROOT: &str = "/berth-volumes";
const TAR_ROOT: &str = "berth-volumes";
/// The label that marks Berth's helper containers (never the installation label, so the
/// reconciler leaves them alone).
pub const HELPER_LABEL: &str = "berth.helper";

/// Errors of backups and restores; the text is what people read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The repository cannot be opened, read or written.
    #[error("backup repository: {0}")]
    Repository(String),
    /// The volumes could not be read completely (the engine's stream failed, or an entry
    /// cannot be backed up).
    #[error("reading the volumes failed: {0}")]
    Source(String),
    /// A snapshot's entries would be written outside the restore's target, or a path asked
    /// for is not one in a snapshot.
    #[error("the snapshot is refused: {0}")]
    Unsafe(String),
    /// A path asked for is of the wrong kind (a file where a directory was asked, or back).
    #[error("{0}")]
    WrongKind(String),
    #[error("{0}")]
    Engine(#[from] RuntimeError),
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::orchestrator::DeployError> for BackupError {
    fn from(e: crate::orchestrator::DeployError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// Where repositories and staging directories live.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// Local repositories are made under it, one directory per project.
    pub repository_root: PathBuf,
    /// Restores are staged, and large files of a backup wait, under it.
    pub staging_root: PathBuf,
    /// Time between the scheduled checks of a repository, milliseconds.
    pub check_interval_ms: i64,
    /// Share of the pack files a check reads, percent (0–100).
    pub check_read_data_percent: u8,
}

#[derive(Deserialize)]
struct Payload {
    backup_id: Option<String>,
    restore_id: Option<String>,
    check_id: Option<String>,
}

/// Runs backup and restore jobs.
pub struct BackupRunner {
    store: Store,
    secrets: SecretBox,
    orchestrator: Arc<Orchestrator>,
    settings: BackupSettings,
    /// One repository operation at a time per project (in this process; see `repository`).
    project_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// This process in repository leases.
    owner: String,
    /// Whether this is the only controller (SQLite): then no lease is needed.
    sole_controller: bool,
}

impl crate::jobs::JobHandler for BackupRunner {
    fn run<'a>(
        &'a self,
        job: &'a JobRecord,
        progress: &'a Progress,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let payload: Payload = serde_json::from_str(&job.payload)
                .map_err(|e| format!("unreadable job payload: {e}"))?;
            match (job.kind.as_str(), payload) {
                (
                    "backup",
                    Payload {
                        backup_id: Some(id),
                        ..
                    },
                ) => self.run_backup(&id, progress).await,
                (
                    "restore",
                    Payload {
                        restore_id: Some(id),
                        ..
                    },
                ) => self.run_restore(&id, progress).await,
                (
                    "backup_check",
                    Payload {
                        check_id: Some(id), ..
                    },
                ) => self.run_check(&id, progress).await,
                (kind, _) => Err(format!(
                    "job kind '{kind}' lacks its backup, restore or check"
                )),
            }
        })
    }
}

impl BackupRunner {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        orchestrator: Arc<Orchestrator>,
        settings: BackupSettings,
    ) -> Self {
        let sole_controller = store.backend() == crate::store::Backend::Sqlite;
        sweep_staging(&settings.staging_root, STALE_STAGING);
        Self {
            store,
            secrets,
            orchestrator,
            settings,
            project_locks: Mutex::new(HashMap::new()),
            owner: crate::store::new_id(),
            sole_controller,
        }
    }

    /// The entries of directory `dir` of the backup's snapshot (see `repo::snapshot_path`).
    ///
    /// # Errors
    /// `Unsafe` for a path outside the snapshot's roots; `Invalid` when the backup has no
    /// snapshot (any more) or `dir` is not a directory; `Repository` when it does not exist.
    pub async fn list_files(
        &self,
        backup: &BackupRecord,
        dir: &str,
    ) -> Result<Vec<app::model::SnapshotEntry>, BackupError> {
        let dir = repo::snapshot_path(dir)?;
        let snapshot = restorable_snapshot(backup)?;
        let access = self.access(&backup.project_id).await?;
        tokio::task::spawn_blocking(move || {
            let repository = repo::open(&access.location, &access.password)?;
            repo::list_dir(repository, &snapshot, &dir)
        })
        .await
        .map_err(|e| BackupError::Invalid(format!("the listing task failed: {e}")))?
    }

    /// The file `path` of the backup's snapshot as (size in bytes, a stream of its bytes).
    /// The size is known before the first byte; a failure after it ends the stream with
    /// an error.
    ///
    /// # Errors
    /// As [`Self::list_files`], and `Invalid` when `path` is not a regular file.
    pub async fn open_file(
        &self,
        backup: &BackupRecord,
        path: &str,
    ) -> Result<
        (
            u64,
            impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
        ),
        BackupError,
    > {
        let path = repo::snapshot_path(path)?;
        let snapshot = restorable_snapshot(backup)?;
        let access = self.access(&backup.project_id).await?;
        let (size_tx, size_rx) = tokio::sync::oneshot::channel();
        let (writer, stream) = pipe::ChannelWriter::new();
        tokio::task::spawn_blocking(move || {
            let size_tx = Mutex::new(Some(size_tx));
            let mut writer = writer;
            let result = repo::open(&access.location, &access.password).and_then(|r| {
                repo::dump_file(
                    r,
                    &snapshot,
                    &path,
                    &|size| {
                        if let Some(tx) = size_tx.lock().expect("size slot").take() {
                            let _ = tx.send(Ok(size));
                        }
                    },
                    &mut writer,
                )
            });
            match result {
                Ok(()) => {
                    use std::io::Write;
                    let _ = writer.flush();
                }
                Err(e) => match size_tx.lock().expect("size slot").take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => writer.fail(e.to_string()),
                },
            }
        });
        let size = size_rx
            .await
            .map_err(|_| BackupError::Invalid("the download task ended early".into()))??;
        Ok((size, stream))
    }

    /// An empty staging directory `<staging_root>/<name>` (anything an interrupted run left
    /// there is removed first).
    fn fresh_staging(&self, name: &str) -> Result<PathBuf, BackupError> {
        let dir = self.settings.staging_root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackupError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// The node whose volumes are read or written: where the deployment runs (its first
    /// instance), else the local node.
    async fn volume_node(
        &self,
        deployment: &DeploymentRecord,
    ) -> Result<(String, Arc<Engine>), BackupError> {
        let locations = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?;
        let node_id = locations
            .iter()
            .min_by_key(|l| l.slot)
            .map_or_else(|| "local".to_owned(), |l| l.node_id.clone());
        let engine = self.orchestrator.engine(&node_id)?;
        Ok((node_id, engine))
    }

    fn helper_labels(&self, project_id: &str) -> HashMap<String, String> {
        let mut labels = self.orchestrator.extra_labels();
        labels.insert(HELPER_LABEL.into(), "volumes".into());
        labels.insert(
            crate::orchestrator::labels::PROJECT.into(),
            project_id.to_owned(),
        );
        labels
    }

    /// Runs the backup `id` to its end and records the outcome; a finished one is left as
    /// it is (a job run again after a crash).
    ///
    /// # Errors
    /// Why it failed, as recorded on the backup.
    pub async fn run_backup(&self, id: &str, progress: &Progress) -> Result<(), String> {
        let Some(backup) = self
            .store
            .backups()
            .backup(id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the backup no longer exists".into());
        };
        if backup.status == "succeeded" {
            return Ok(());
        }
        let _turn = self
            .repository_turn(&backup.project_id, progress)
            .await
            .map_err(|e| e.to_string())?;
        let outcome = match self.take_backup(&backup, progress).await {
            Ok(summary) => BackupOutcome::Succeeded {
                snapshot_id: summary.snapshot_id,
                files: summary.files as i64,
                bytes_total: summary.bytes_total as i64,
                bytes_added: summary.bytes_added as i64,
            },
            Err(e) => BackupOutcome::Failed(e.to_string()),
        };
        self.store
            .backups()
            .finish_backup(id, &outcome)
            .await
            .map_err(|e| e.to_string())?;
        match outcome {
            BackupOutcome::Succeeded { .. } => {
                self.retain(&backup, progress).await;
                Ok(())
            }
            BackupOutcome::Failed(why) => Err(why),
        }
    }

    /// Applies the deployment's retention rules (its schedule's `keep_*`), if it has any. A
    /// failure is logged and noted on the job; the backup itself stays good.
    async fn retain(&self, backup: &BackupRecord, progress: &Progress) {
        let schedule = match self
            .store
            .backup_schedules()
            .get(&backup.deployment_id)
            .await
        {
            Ok(Some(s)) if s.has_retention() => s,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(deployment.id = %backup.deployment_id, error = %e, "cannot read the backup schedule");
                return;
            }
        };
        progress.begin("retention", "").await;
        let keep = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
        let rules = KeepOptions::default()
            .keep_last(keep(schedule.keep_last))
            .keep_hourly(keep(schedule.keep_hourly))
            .keep_daily(keep(schedule.keep_daily))
            .keep_weekly(keep(schedule.keep_weekly))
            .keep_monthly(keep(schedule.keep_monthly));
        let label = backup.deployment_id.clone();
        let result = match self.access(&backup.project_id).await {
            Ok(access) => tokio::task::spawn_blocking(move || {
                let repository = repo::open(&access.location, &access.password)?;
                repo::apply_retention(repository, &label, &rules)
            })
            .await
            .unwrap_or_else(|e| {
                Err(BackupError::Invalid(format!(
                    "the retention task failed: {e}"
                )))
            }),
            Err(e) => Err(e),
        };
        match result {
            Ok(removed) => {
                if let Err(e) = self.store.backups().mark_removed(&removed).await {
                    tracing::warn!(error = %e, "cannot mark backups removed by retention");
                }
                progress
                    .note(format!("{} older snapshot(s) removed", removed.len()))
                    .await;
            }
            Err(e) => {
                tracing::warn!(deployment.id = %backup.deployment_id, error = %e, "retention failed");
                progress.note(format!("retention failed: {e}")).await;
            }
        }
    }

    async fn take_backup(
        &self,
        backup: &BackupRecord,
        progress: &Progress,
    ) -> Result<repo::BackupSummary, BackupError> {
        let deployment = self
            .store
            .deployments()
            .by_id(&backup.deployment_id)
            .await?
            .ok_or_else(|| BackupError::Invalid("the deployment no longer exists".into()))?;
        let (release, spec) = self.orchestrator.current_release(&deployment).await?;
        if let Some(database) = &spec.database {
            return self
                .take_dump(backup, &deployment, &release, &spec, database, progress)
                .await;
        }
        self.take_volume_backup(backup, &deployment, &release, &spec, progress)
            .await
    }
}

/// How long a staging directory may go unchanged before it counts as left by a run that
/// died (a running backup, restore or drill writes into its directory all along).
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);

/// Removes the directories under `root` that a backup (`backup-*`, spilled files), restore
/// (`restore-*`) or restore drill (`drill-*`) left when its process died, once unchanged
/// for `older_than`; younger ones may belong to a run of another process sharing the data
/// directory. Failures are logged, not returned: a leftover wastes space, nothing more.
fn sweep_staging(root: &std::path::Path, older_than: Duration) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = ["backup-", "restore-", "drill-"]
            .iter()
            .any(|p| name.to_string_lossy().starts_with(p));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= older_than));
        if ours && stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed a stale backup staging directory")
                }
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a stale backup staging directory")
                }
            }
        }
    }
}

/// The snapshot of a backup that can still be read.
fn restorable_snapshot(backup: &BackupRecord) -> Result<String, BackupError> {
    match (&backup.snapshot_id, backup.removed_at_ms) {
        (Some(id), None) if backup.status == "succeeded" => Ok(id.clone()),
        (_, Some(_)) => Err(BackupError::Invalid(
            "retention removed this backup's snapshot".into(),
        )),
        _ => Err(BackupError::Invalid("the backup has no snapshot".into())),
    }
}

/// Waits for `work`, noting `status()` on the job every second meanwhile.
async fn report_while<T>(
    work: tokio::task::JoinHandle<Result<T, BackupError>>,
    progress: &Progress,
    status: impl Fn() -> Option<String>,
) -> Result<T, BackupError> {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            done = &mut work => {
                return done.map_err(|e| BackupError::Invalid(format!("the backup task failed: {e}")))?;
            }
            _ = tick.tick() => {
                if let Some(text) = status() {
                    progress.note(text).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_staging_directories_are_swept_and_others_kept() {
        let root = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
        for name in ["drill-a", "backup-b", "restore-c", "other-d", "drill-young"] {
            std::fs::create_dir(root.path().join(name)).unwrap();
            std::fs::write(root.path().join(name).join("f"), "x").unwrap();
            if name != "drill-young" {
                let dir = std::fs::File::open(root.path().join(name)).unwrap();
                dir.set_modified(old).unwrap();
            }
        }
        sweep_staging(root.path(), STALE_STAGING);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["drill-young", "other-d"]);
        // A root that does not exist yet is no error.
        sweep_staging(&root.path().join("missing"), STALE_STAGING);
    }
}
