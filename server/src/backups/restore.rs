//! Restores: a snapshot of volumes is restored into a staging directory on this host,
//! checked, then streamed as tar into the volumes' next generation; only when those are
//! complete is the deployment stopped, switched to them and started (a failure before leaves
//! the live volumes untouched, and removes the new ones). A dump snapshot is loaded back into
//! the running database (`dump`).

use std::collections::HashMap;

use super::{human_bytes, pipe::ChannelWriter, repo, BackupError, BackupRunner, HELPER_ROOT};
use crate::{
    jobs::Progress,
    orchestrator::volume_name,
    runtime::{Engine, VolumeHelper},
    store::{DeploymentRecord, RestoreRecord},
};

/// One volume of a restore: the backup's volume `from` fills generation `new` of the
/// target's volume `into` (now at generation `old`).
struct Switch {
    from: String,
    into: String,
    old: i64,
    new: i64,
}

impl BackupRunner {
    /// Runs the restore `id` to its end and records the outcome.
    ///
    /// # Errors
    /// Why it failed, as recorded on the restore.
    pub async fn run_restore(&self, id: &str, progress: &Progress) -> Result<(), String> {
        let Some(restore) = self
            .store
            .backups()
            .restore(id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the restore no longer exists".into());
        };
        if restore.status == "succeeded" {
            return Ok(());
        }
        let _turn = self
            .repository_turn(&restore.project_id, progress)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .backups()
            .start_restore(id)
            .await
            .map_err(|e| e.to_string())?;
        let result = self.restore_volumes(&restore, progress).await;
        let recorded = match &result {
            Ok((files, bytes)) => Ok((*files as i64, *bytes as i64)),
            Err(e) => Err(e.to_string()),
        };
        self.store
            .backups()
            .finish_restore(id, recorded.as_ref().map(|x| *x).map_err(String::as_str))
            .await
            .map_err(|e| e.to_string())?;
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn restore_volumes(
        &self,
        restore: &RestoreRecord,
        progress: &Progress,
    ) -> Result<(u64, u64), BackupError> {
        let backup = self
            .store
            .backups()
            .backup(&restore.backup_id)
            .await?
            .ok_or_else(|| BackupError::Invalid("the backup no longer exists".into()))?;
        let snapshot_id = backup
            .snapshot_id
            .clone()
            .filter(|_| backup.status == "succeeded")
            .ok_or_else(|| BackupError::Invalid("the backup has no snapshot".into()))?;
        let deployment = self
            .store
            .deployments()
            .by_id(&restore.deployment_id)
            .await?
            .ok_or_else(|| BackupError::Invalid("the deployment no longer exists".into()))?;
        if backup.kind == "database" {
            return self
                .restore_dump(restore, &snapshot_id, &deployment, progress)
                .await;
        }
        let names: Vec<String> = serde_json::from_str(&backup.volumes)
            .map_err(|e| BackupError::Invalid(format!("unreadable volume list: {e}")))?;
        let mut pairs: Vec<(String, String)> = serde_json::from_str(&restore.volume_map)
            .map_err(|e| BackupError::Invalid(format!("unreadable volume map: {e}")))?;
        if pairs.is_empty() {
            pairs = names.iter().map(|n| (n.clone(), n.clone())).collect();
        }
        let generations: HashMap<String, i64> = self
            .store
            .deployments()
            .volume_generations(&deployment.id)
            .await?
            .into_iter()
            .collect();
        let mut switch = Vec::new();
        for (from, into) in pairs {
            let current = *generations.get(&into).ok_or_else(|| {
                BackupError::Invalid(format!(
                    "the deployment has no volume '{into}' (the backup holds {})",
                    names.join(", ")
                ))
            })?;
            switch.push(Switch {
                from,
                into,
                old: current,
                new: current + 1,
            });
        }

        progress
            .begin(
                "restore snapshot",
                format!("snapshot {}", &snapshot_id[..8]),
            )
            .await;
        let staging = self.fresh_staging(&format!("restore-{}", restore.id))?;
        let (node_id, engine) = self.volume_node(&deployment).await?;
        let filled = self
            .fill_new_volumes(
                &deployment,
                &snapshot_id,
                &staging,
                &switch,
                &engine,
                &restore.id,
                progress,
            )
            .await;
        let _ = std::fs::remove_dir_all(&staging);
        let counts = match filled {
            Ok(counts) => counts,
            Err(e) => {
                self.remove_volumes(
                    &engine,
                    &deployment,
                    switch.iter().map(|s| (&s.into, s.new)),
                )
                .await;
                return Err(e);
            }
        };

        let new_generations: Vec<(String, i64)> =
            switch.iter().map(|s| (s.into.clone(), s.new)).collect();
        self.orchestrator
            .replace_volumes(&deployment, &new_generations, progress)
            .await?;
        progress
            .begin("remove old volumes", format!("on node {node_id}"))
            .await;
        self.remove_volumes(
            &engine,
            &deployment,
            switch.iter().map(|s| (&s.into, s.old)),
        )
        .await;
        progress.done().await;
        Ok(counts)
    }

    /// Restores the snapshot into `staging`, then streams it into the next generation of
    /// each volume. Returns (files, bytes) restored.
    #[allow(clippy::too_many_arguments)]
    async fn fill_new_volumes(
        &self,
        deployment: &DeploymentRecord,
        snapshot_id: &str,
        staging: &std::path::Path,
        switch: &[Switch],
        engine: &Engine,
        restore_id: &str,
        progress: &Progress,
    ) -> Result<(u64, u64), BackupError> {
        let access = self.access(&deployment.project_id).await?;
        let (snap, dest) = (snapshot_id.to_owned(), staging.to_owned());
        let counts = tokio::task::spawn_blocking(move || {
            let repository = repo::open(&access.location, &access.password)?;
            repo::restore_to(repository, &snap, repo::SNAPSHOT_ROOT, &dest)
        })
        .await
        .map_err(|e| BackupError::Invalid(format!("the restore task failed: {e}")))??;
        for s in switch {
            if !staging.join(&s.from).is_dir() {
                return Err(BackupError::Invalid(format!(
                    "the snapshot has no volume '{}'",
                    s.from
                )));
            }
        }

        progress
            .begin(
                "fill new volumes",
                format!("{} files, {}", counts.0, human_bytes(counts.1)),
            )
            .await;
        let (release, spec) = self.orchestrator.current_release(deployment).await?;
        let labels = self.orchestrator.project_labels(&deployment.project_id);
        let mut helper_volumes = Vec::new();
        for s in switch {
            let volume = volume_name(&deployment.project_id, &s.into, s.new);
            // A run interrupted before may have left it half-filled.
            engine.remove_volume(&volume).await?;
            engine.ensure_volume(&volume, &labels).await?;
            helper_volumes.push((volume, format!("{HELPER_ROOT}/{}", s.into)));
        }
        let helper = VolumeHelper {
            name: format!("berth-restore-{restore_id}"),
            image: release.image_digest.clone().unwrap_or(spec.image.clone()),
            volumes: helper_volumes,
            read_only: false,
            agent: None,
            labels: self.helper_labels(&deployment.project_id),
        };
        let result = async {
            let container = engine.create_volume_helper(&helper).await?;
            let (writer, stream) = ChannelWriter::new();
            let pairs: Vec<(String, String)> = switch
                .iter()
                .map(|s| (s.from.clone(), s.into.clone()))
                .collect();
            let root = staging.to_owned();
            let tar = tokio::task::spawn_blocking(move || write_tar(writer, &root, &pairs));
            let uploaded = engine.upload_archive(&container, HELPER_ROOT, stream).await;
            let written = tar
                .await
                .map_err(|e| BackupError::Invalid(format!("the archive task failed: {e}")))?;
            written?;
            uploaded?;
            Ok::<_, BackupError>(())
        }
        .await;
        if let Err(e) = engine.remove_container(&helper.name).await {
            tracing::warn!(restore.id = %restore_id, error = %e, "cannot remove the restore helper");
        }
        result?;
        Ok(counts)
    }

    async fn remove_volumes<'a>(
        &self,
        engine: &Engine,
        deployment: &DeploymentRecord,
        volumes: impl Iterator<Item = (&'a String, i64)>,
    ) {
        for (name, generation) in volumes {
            let volume = volume_name(&deployment.project_id, name, generation);
            if let Err(e) = engine.remove_volume(&volume).await {
                tracing::warn!(volume = %volume, error = %e, "cannot remove a volume");
            }
        }
    }
}

/// Writes `root/<from>` as `<into>/…` for each pair, as one tar stream (with owners, modes
/// and times; symlinks stored as links, never followed).
fn write_tar(
    writer: ChannelWriter,
    root: &std::path::Path,
    pairs: &[(String, String)],
) -> Result<(), BackupError> {
    let mut builder = tar::Builder::new(writer);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);
    let mut result = Ok(());
    for (from, into) in pairs {
        if let Err(e) = builder.append_dir_all(into, root.join(from)) {
            result = Err(format!("cannot archive the restored '{from}': {e}"));
            break;
        }
    }
    if result.is_ok() {
        result = builder
            .finish()
            .map_err(|e| format!("cannot finish the archive: {e}"));
    }
    match (result, builder.into_inner()) {
        (Ok(()), Ok(mut writer)) => {
            use std::io::Write;
            writer
                .flush()
                .map_err(|e| BackupError::Invalid(format!("the upload stopped: {e}")))
        }
        (Err(why), Ok(writer)) => {
            writer.fail(why.clone());
            Err(BackupError::Invalid(why))
        }
        (_, Err(e)) => Err(BackupError::Invalid(format!("the upload stopped: {e}"))),
    }
}
