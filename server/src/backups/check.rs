//! Verification of a project's repository, as a job (`kind = "backup_check"`): restic's
//! `check` reading a sample of the pack files, then, when asked, a restore drill: each
//! deployment's newest restorable snapshot is restored into a scratch directory on this host
//! and compared with what the snapshot and the backup recorded (entries, and bytes on disk),
//! then removed. Checks are queued by people or by each repository's schedule
//! ([`fire_due_checks`]).

use std::path::Path;

use crate::{
    jobs::Progress,
    store::{BackupCheckRecord, BackupRecord, CheckOutcome, Store, StoreError},
};

use super::{human_bytes, repo, BackupError, BackupRunner};

/// Entries that are not directories, and bytes of the regular files, under `dir` as they are
/// on disk (symlinks are not followed).
fn tally(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                if kind.is_file() {
                    bytes += entry.metadata()?.len();
                }
            }
        }
    }
    Ok((files, bytes))
}

impl BackupRunner {
    /// Runs the check `id` to its end and records the outcome.
    ///
    /// # Errors
    /// What the check found wrong (as recorded on the check), or why it could not run.
    pub async fn run_check(&self, id: &str, progress: &Progress) -> Result<(), String> {
        let Some(check) = self
            .store
            .backup_checks()
            .get(id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the check no longer exists".into());
        };
        if matches!(check.status.as_str(), "succeeded" | "failed") {
            return Ok(());
        }
        let _turn = self
            .repository_turn(&check.project_id, progress)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .backup_checks()
            .start(id)
            .await
            .map_err(|e| e.to_string())?;
        let outcome = match self.verify(&check, progress).await {
            Ok(outcome) => outcome,
            Err(e) => CheckOutcome {
                ok: false,
                snapshots: 0,
                drill_files: 0,
                drill_bytes: 0,
                findings: e.to_string(),
            },
        };
        self.store
            .backup_checks()
            .finish(id, &outcome)
            .await
            .map_err(|e| e.to_string())?;
        if outcome.ok {
            Ok(())
        } else {
            Err(outcome.findings)
        }
    }

    async fn verify(
        &self,
        check: &BackupCheckRecord,
        progress: &Progress,
    ) -> Result<CheckOutcome, BackupError> {
        let percent = u8::try_from(check.read_data_percent.clamp(0, 100)).unwrap_or(100);
        progress
            .begin("check", format!("reading {percent}% of the pack files"))
            .await;
        let access = self.access(&check.project_id).await?;
        if access.may_init {
            progress
                .note("no backup of the project has succeeded yet: nothing to check")
                .await;
            return Ok(CheckOutcome {
                ok: true,
                snapshots: 0,
                drill_files: 0,
                drill_bytes: 0,
                findings: String::new(),
            });
        }
        let location = access.location.clone();
        let password = access.password.clone();
        let report = tokio::task::spawn_blocking(move || {
            repo::check(repo::open(&location, &password)?, percent)
        })
        .await
        .map_err(|e| BackupError::Invalid(format!("the check task failed: {e}")))??;
        let mut findings = report.errors.clone();
        progress
            .note(format!(
                "{} snapshot(s): {} error(s), {} warning(s)",
                report.snapshots,
                report.errors.len(),
                report.warnings.len()
            ))
            .await;
        let mut outcome = CheckOutcome {
            ok: true,
            snapshots: report.snapshots as i64,
            drill_files: 0,
            drill_bytes: 0,
            findings: String::new(),
        };
        if check.restore_drill {
            let backups = self
                .store
                .backup_checks()
                .latest_restorable(&check.project_id)
                .await?;
            progress
                .begin(
                    "restore drill",
                    format!("{} snapshot(s) to restore", backups.len()),
                )
                .await;
            for backup in backups {
                match self.drill(&check.id, &backup, &access).await {
                    Ok((files, bytes)) => {
                        outcome.drill_files += files as i64;
                        outcome.drill_bytes += bytes as i64;
                        progress
                            .note(format!(
                                "{} ({}): {files} files, {} restored and equal",
                                backup.deployment_name,
                                backup.kind,
                                human_bytes(bytes)
                            ))
                            .await;
                    }
                    Err(e) => findings.push(format!(
                        "restore drill of {} ({}): {e}",
                        backup.deployment_name, backup.kind
                    )),
                }
            }
        }
        outcome.ok = findings.is_empty();
        outcome.findings = findings.join("\n");
        Ok(outcome)
    }

    /// Restores `backup`'s snapshot into a scratch directory and compares it; returns the
    /// files and bytes found equal. The directory is removed either way.
    async fn drill(
        &self,
        check_id: &str,
        backup: &BackupRecord,
        access: &super::repository::RepositoryAccess,
    ) -> Result<(u64, u64), BackupError> {
        let snapshot = backup
            .snapshot_id
            .clone()
            .ok_or_else(|| BackupError::Invalid("the backup has no snapshot".into()))?;
        let subtree = if backup.kind == "database" {
            repo::DUMP_ROOT
        } else {
            repo::SNAPSHOT_ROOT
        };
        let scratch = self.fresh_staging(&format!("drill-{check_id}"))?;
        let dest = scratch.clone();
        let location = access.location.clone();
        let password = access.password.clone();
        let result = tokio::task::spawn_blocking(move || {
            let repository = repo::open(&location, &password)?;
            let (files, bytes) = repo::restore_to(repository, &snapshot, subtree, &dest)?;
            let (found_files, found_bytes) = tally(&dest).map_err(|e| {
                BackupError::Invalid(format!("cannot read the scratch directory: {e}"))
            })?;
            if (found_files, found_bytes) != (files, bytes) {
                return Err(BackupError::Invalid(format!(
                    "the snapshot lists {files} files of {bytes} bytes, the scratch directory \
                     holds {found_files} files of {found_bytes} bytes"
                )));
            }
            Ok((files, bytes))
        })
        .await
        .map_err(|e| BackupError::Invalid(format!("the drill task failed: {e}")))
        .and_then(|r| r);
        let _ = std::fs::remove_dir_all(&scratch);
        let (files, bytes) = result?;
        if (files as i64, bytes as i64) != (backup.files, backup.bytes_total) {
            return Err(BackupError::Invalid(format!(
                "restored {files} files of {bytes} bytes, the backup recorded {} files of {} \
                 bytes",
                backup.files, backup.bytes_total
            )));
        }
        Ok((files, bytes))
    }
}

/// Queues the check of every repository whose scheduled check is due at `now_ms` (the next
/// one `interval_ms` later); returns how many were queued. A check still queued or running
/// from before is not doubled.
///
/// # Errors
/// A store failure reading the due repositories (each one's own failure is logged and the
/// others go on).
pub async fn fire_due_checks(
    store: &Store,
    now_ms: i64,
    interval_ms: i64,
    read_data_percent: u8,
) -> Result<usize, StoreError> {
    let due = store.backup_checks().due(now_ms).await?;
    let mut queued = 0;
    for d in due {
        match store
            .backup_checks()
            .fire(&d, now_ms + interval_ms, i64::from(read_data_percent))
            .await
        {
            Ok(true) => queued += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(project.id = %d.project_id, error = %e, "cannot queue a repository check")
            }
        }
    }
    Ok(queued)
}
