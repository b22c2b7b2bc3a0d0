//! Backups of a deployment's named volumes: listed by Berth's volume agent and only the
//! changed files fetched when a parent snapshot exists (`listing`), else (or when the agent
//! cannot run) read whole from the engine's archive stream (`tar_source`).

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc, Mutex},
};

use app::model::DeploymentSpec;

use super::pipe::StreamReader;
use super::tar_source::{self, SourceInput, SourceStats};
use super::{
    human_bytes, listing, repo, report_while, BackupError, BackupRunner, HELPER_ROOT, TAR_ROOT,
};
use crate::{
    jobs::Progress,
    runtime::{Engine, VolumeHelper},
    store::{BackupRecord, DeploymentRecord, ReleaseRecord},
};

impl BackupRunner {
    /// Backs up the named volumes of `deployment` (at `release`, whose spec is `spec`) into
    /// one snapshot.
    ///
    /// # Errors
    /// `Invalid` when the deployment has no named volumes; the engine's, the repository's
    /// and the source's failures otherwise (an incomplete snapshot is discarded).
    pub(super) async fn take_volume_backup(
        &self,
        backup: &BackupRecord,
        deployment: &DeploymentRecord,
        release: &ReleaseRecord,
        spec: &DeploymentSpec,
        progress: &Progress,
    ) -> Result<repo::BackupSummary, BackupError> {
        let mounts = self.orchestrator.volume_mounts(deployment, spec).await?;
        if mounts.is_empty() {
            return Err(BackupError::Invalid(
                "the deployment has no named volumes to back up".into(),
            ));
        }
        let names: Vec<String> = spec.volumes.iter().map(|v| v.name.clone()).collect();
        let (node_id, engine) = self.volume_node(deployment).await?;
        self.store
            .backups()
            .start_backup(
                &backup.id,
                &node_id,
                "volumes",
                &serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()),
            )
            .await?;
        progress
            .begin(
                "read volumes",
                format!("{} on node {node_id}", names.join(", ")),
            )
            .await;
        let volumes: Vec<(String, String)> = names
            .iter()
            .zip(&mounts)
            .map(|(name, (volume, _))| (volume.clone(), format!("{HELPER_ROOT}/{name}")))
            .collect();
        let access = self.access(&deployment.project_id).await?;
        let job = VolumeSnapshot {
            helper: agent_helper(
                format!("berth-backup-{}", backup.id),
                volumes,
                self.helper_labels(&deployment.project_id),
            ),
            fallback_image: release.image_digest.clone().unwrap_or(spec.image.clone()),
            location: access.location,
            password: access.password,
            may_init: access.may_init,
            tags: repo::SnapshotTags {
                label: deployment.id.clone(),
                tags: vec![
                    format!("project:{}", deployment.project_id),
                    format!("deployment:{}", deployment.id),
                    format!("release:{}", release.id),
                    "kind:volumes".into(),
                ],
            },
            spill_dir: self
                .settings
                .staging_root
                .join(format!("backup-{}", backup.id)),
        };
        let stats: Arc<Mutex<Option<Arc<SourceStats>>>> = Arc::default();
        let work = tokio::spawn(snapshot_volumes(engine, job, stats.clone()));
        let done = report_while(work, progress, || {
            stats
                .lock()
                .expect("stats slot")
                .as_ref()
                .map(|s| s.progress())
        })
        .await?;
        if let Some(why) = &done.agent_failure {
            tracing::warn!(backup.id = %backup.id, error = %why, "the volume agent did not list the volumes");
        }
        let summary = done.summary;
        let how = match (done.fetched, done.agent_failure) {
            (Some((files, bytes)), _) => format!(
                "; listed by the volume agent, fetched {files} changed {} ({}), the others \
                 matched the previous snapshot",
                if files == 1 { "file" } else { "files" },
                human_bytes(bytes)
            ),
            (None, Some(why)) => format!(
                "; the volume agent could not list the volumes ({why}), so they were read whole"
            ),
            (None, None) => String::new(),
        };
        progress
            .note(format!(
                "snapshot {}: {} files, {}, {} new{how}",
                &summary.snapshot_id[..8],
                summary.files,
                human_bytes(summary.bytes_total),
                human_bytes(summary.bytes_added)
            ))
            .await;
        Ok(summary)
    }
}

/// The helper that lists `volumes` ((Docker volume, mount path under `/berth-volumes`)
/// pairs) with Berth's volume agent.
pub fn agent_helper(
    name: String,
    volumes: Vec<(String, String)>,
    labels: std::collections::HashMap<String, String>,
) -> VolumeHelper {
    VolumeHelper {
        name,
        image: listing::agent_image(),
        agent: Some(vec![listing::AGENT_PATH.into(), HELPER_ROOT.into()]),
        volumes,
        read_only: true,
        labels,
    }
}

/// One snapshot of the volumes a helper mounts.
pub struct VolumeSnapshot {
    /// The helper, from [`agent_helper`].
    pub helper: VolumeHelper,
    /// The image of a never-started helper for when the agent cannot run (the deployment's).
    pub fallback_image: String,
    pub location: repo::Location,
    pub password: String,
    /// Whether the repository may be created (its first backup).
    pub may_init: bool,
    pub tags: repo::SnapshotTags,
    /// Where files too large for memory wait for the archiver; made and removed here.
    pub spill_dir: PathBuf,
}

/// What [`snapshot_volumes`] did.
pub struct VolumeSnapshotted {
    pub summary: repo::BackupSummary,
    /// With a listing: the files fetched and their bytes (the rest matched the parent).
    pub fetched: Option<(u64, u64)>,
    /// Why the agent could not list the volumes, when it could not (they were read whole).
    pub agent_failure: Option<String>,
}

/// Takes the snapshot: lists the volumes with the agent; with a parent snapshot and few
/// possibly changed files (`listing::fetch_one_by_one`) fetches only what changed, else reads
/// everything from one archive stream (of a never-started helper of `fallback_image` when
/// the agent could not run). `stats` receives the source's counters once it exists. The
/// helper and the spill directory are removed before it returns.
///
/// # Errors
/// The engine's, the repository's and the source's failures (an incomplete snapshot is
/// discarded).
pub async fn snapshot_volumes(
    engine: Arc<Engine>,
    job: VolumeSnapshot,
    stats: Arc<Mutex<Option<Arc<SourceStats>>>>,
) -> Result<VolumeSnapshotted, BackupError> {
    let VolumeSnapshot {
        mut helper,
        fallback_image,
        location,
        password,
        may_init,
        tags,
        spill_dir,
    } = job;
    let (listed, agent_failure) = match listing::list_volumes(&engine, &helper).await {
        Ok(listed) => (Some(listed), None),
        Err(why) => {
            let _ = engine.remove_container(&helper.name).await;
            (None, Some(why))
        }
    };
    let result = async {
        std::fs::create_dir_all(&spill_dir).map_err(|e| {
            BackupError::Invalid(format!("cannot create {}: {e}", spill_dir.display()))
        })?;
        let (container, entries) = match listed {
            Some((container, entries)) => (container, Some(entries)),
            None => {
                helper.image = fallback_image;
                helper.agent = None;
                (engine.create_volume_helper(&helper).await?, None)
            }
        };
        let spill = spill_dir.clone();
        let engine = engine.clone();
        let stats_slot = stats.clone();
        tokio::task::spawn_blocking(move || {
            let repository = repo::open_or_init(&location, &password, may_init)?;
            let parent = match &entries {
                Some(_) => listing::parent_time(&repository, &tags.label, repo::SNAPSHOT_ROOT)?,
                None => None,
            };
            let input = match (entries, parent) {
                (Some(entries), Some(parent)) if listing::fetch_one_by_one(&entries, parent) => {
                    SourceInput::Listing(listing::ListingInput {
                        entries,
                        root: HELPER_ROOT.into(),
                        fetcher: file_fetcher(engine, container),
                    })
                }
                _ => SourceInput::Tar {
                    reader: Box::new(StreamReader::spawn(
                        engine.download_archive(&container, HELPER_ROOT),
                    )),
                    tar_root: TAR_ROOT.into(),
                    links: Some(link_fetcher(engine, container)),
                },
            };
            let listing = matches!(input, SourceInput::Listing(_));
            let summary = repo::backup(
                repository,
                input,
                repo::SNAPSHOT_ROOT,
                &spill,
                &tags,
                &|s| {
                    *stats_slot.lock().expect("stats slot") = Some(s);
                },
            )?;
            Ok::<_, BackupError>((summary, listing))
        })
        .await
        .map_err(|e| BackupError::Invalid(format!("the backup task failed: {e}")))?
    }
    .await;
    if let Err(e) = engine.remove_container(&helper.name).await {
        tracing::warn!(helper = %helper.name, error = %e, "cannot remove the backup helper");
    }
    let _ = std::fs::remove_dir_all(&spill_dir);
    let (summary, listing) = result?;
    let fetched = stats.lock().expect("stats slot").as_ref().map(|s| {
        (
            s.fetched_files.load(Ordering::Relaxed),
            s.fetched_bytes.load(Ordering::Relaxed),
        )
    });
    Ok(VolumeSnapshotted {
        summary,
        fetched: listing.then_some(fetched.unwrap_or_default()),
        agent_failure,
    })
}

/// Reads one file of the helper `container` (its absolute path there) through the engine's
/// archive endpoint, bridged to a blocking reader on this runtime.
fn file_fetcher(engine: Arc<Engine>, container: String) -> listing::FileFetcher {
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |path: &std::path::Path| {
        let _runtime = handle.enter();
        let path = path.to_string_lossy();
        let reader = StreamReader::spawn(engine.download_archive(&container, &path));
        Ok(Box::new(reader) as Box<dyn std::io::Read + Send>)
    })
}

/// Reads a hard link's target again from the helper `container`: the engine's archive of
/// that one path (`/<archive path>`), bridged to a blocking reader on this runtime. The path
/// is resolved inside the helper, whose only writable contents are the project's own
/// volumes (mounted read-only), so a path changed between the two reads can only name the
/// project's own files or the image's.
fn link_fetcher(engine: Arc<Engine>, container: String) -> tar_source::LinkFetcher {
    let handle = tokio::runtime::Handle::current();
    Box::new(move |target: &std::path::Path| {
        let _runtime = handle.enter();
        let path = format!("/{}", target.display());
        let reader = StreamReader::spawn(engine.download_archive(&container, &path));
        Ok(Box::new(reader) as Box<dyn std::io::Read + Send>)
    })
}
