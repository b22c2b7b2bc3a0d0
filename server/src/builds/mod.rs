//! Builds: a deployment's git source → a commit fetched into a per-build workspace → its
//! tree sent to the engine as the build context → an image tagged with the commit → a new
//! release and its health-gated rollout. A build is a job (`kind = "build"`), so it survives
//! restarts (it runs again from the start; the release is written once, with the build's end,
//! in one transaction).
//!
//! The engine's classic builder is used, not BuildKit: bollard speaks BuildKit only through
//! its gRPC session feature (tonic and prost, a large build for two cores), and the classic
//! builder handles the Dockerfiles a PaaS sees (multi-stage included). Base images are never
//! pulled during a build: they must be on the node.
//!
//! Builds run on one node: where the deployment's instances run, else any connected node.
//! Instances on other nodes need the image there too; Berth does not yet copy it (no registry).

pub mod address;
pub mod git;
pub mod live;
pub mod ssh;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use app::model::{dockerfile_in_context, BuildArg, GitSource};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::{
    jobs::Progress,
    orchestrator::{labels, release_spec, Orchestrator},
    runtime::{Engine, ImageBuild, RuntimeError},
    secrets::SecretBox,
    store::{BuildRecord, GitSourceRecord, JobRecord, NewJob, NewRelease, Store, StoreError},
};

pub use live::{BuildLogs, LiveLog};

/// Largest log kept per build, bytes; older output is cut from the front.
pub const LOG_MAX_BYTES: usize = 1 << 20;

/// Why a build did not produce a release. `Display` is what people read.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The repository could not be cloned or fetched.
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The branch or commit does not exist.
    #[error("{0}")]
    Commit(String),
    /// The context or Dockerfile is missing or too large.
    #[error("{0}")]
    Context(String),
    /// The repository URL is refused (scheme, or an address that is not public).
    #[error("{0}")]
    Refused(String),
    /// The Dockerfile failed; the failing step is the last lines of the log.
    #[error("the image build failed: {0}")]
    Image(String),
    #[error("the build took longer than {0} s (build_timeout_secs)")]
    Timeout(u64),
    #[error("the build was cancelled")]
    Cancelled,
    #[error("{0}")]
    Engine(#[from] RuntimeError),
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// Build limits and where workspaces go.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// Per-build workspaces are created under it and removed after.
    pub workspace_root: PathBuf,
    pub concurrency_per_node: u32,
    pub timeout: Duration,
    pub context_max_bytes: u64,
    pub images_kept: u32,
    pub allow_private_repositories: bool,
}

/// Runs build jobs.
pub struct Builder {
    store: Store,
    secrets: SecretBox,
    orchestrator: Arc<Orchestrator>,
    settings: BuildSettings,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Live logs of the builds running in this process (websocket subscribers read them).
    pub logs: BuildLogs,
}

#[derive(Deserialize)]
struct Payload {
    build_id: String,
}

/// The image tag of a build: `berth-build/<deployment id>:<commit>`.
pub fn image_tag(deployment_id: &str, commit: &str) -> String {
    format!("berth-build/{deployment_id}:{commit}")
}

impl Builder {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        orchestrator: Arc<Orchestrator>,
        settings: BuildSettings,
    ) -> Self {
        Self {
            store,
            secrets,
            orchestrator,
            settings,
            slots: Mutex::new(HashMap::new()),
            logs: BuildLogs::default(),
        }
    }

    /// Runs the build of `job` to its end. A build already ended (cancelled while queued, or
    /// finished before a crash) is left as it is.
    ///
    /// # Errors
    /// The reason, written for people; the build row records it too.
    pub async fn run_job(&self, job: &JobRecord, progress: &Progress) -> Result<(), String> {
        let payload: Payload = serde_json::from_str(&job.payload)
            .map_err(|_| "the build job has no build id".to_owned())?;
        let builds = self.store.builds();
        let Some(build) = builds
            .by_id(&payload.build_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the build no longer exists".into());
        };
        if matches!(build.status.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok(());
        }
        builds.start(&build.id).await.map_err(|e| e.to_string())?;
        let live = self.logs.open(&build.id);
        let interrupt = Arc::new(AtomicBool::new(false));
        let outcome = {
            let work = self.build(&build, progress, &live, interrupt.clone());
            let watch = self.watch_cancel(&build.id);
            tokio::select! {
                r = work => r,
                e = watch => Err(e),
                () = tokio::time::sleep(self.settings.timeout) => {
                    Err(BuildError::Timeout(self.settings.timeout.as_secs()))
                }
            }
        };
        // Stops a fetch still running on its blocking thread.
        interrupt.store(true, Ordering::Relaxed);
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(e) => {
                let status = if matches!(e, BuildError::Cancelled) {
                    "cancelled"
                } else {
                    "failed"
                };
                live.line(&format!("error: {e}"));
                if let Err(store_err) = builds
                    .finish(&build.id, status, &e.to_string(), &live.text())
                    .await
                {
                    tracing::error!(build.id = %build.id, error = %store_err, "cannot record the end of a build");
                }
                Err(e.to_string())
            }
        };
        self.logs.close(&build.id);
        self.remove_workspace(&build.id).await;
        result
    }

    async fn watch_cancel(&self, build_id: &str) -> BuildError {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.store.builds().cancel_requested(build_id).await {
                Ok(true) => return BuildError::Cancelled,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(build.id = %build_id, error = %e, "cannot read a build's cancel flag")
                }
            }
        }
    }

    fn workspace(&self, build_id: &str) -> PathBuf {
        self.settings.workspace_root.join(build_id)
    }

    async fn remove_workspace(&self, build_id: &str) {
        let dir = self.workspace(build_id);
        let _ = tokio::task::spawn_blocking(move || {
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a build workspace");
                }
            }
        })
        .await;
    }

    /// The engine a build of `deployment_id` runs on: a node running its instances, else any
    /// connected node (the local one first).
    async fn build_node(&self, deployment_id: &str) -> Result<(String, Arc<Engine>), BuildError> {
        let engines = self.orchestrator.engines();
        let running = self.store.locations().for_deployment(deployment_id).await?;
        let pick = running
            .iter()
            .find_map(|l| engines.iter().find(|(id, _)| *id == l.node_id))
            .or_else(|| engines.iter().find(|(id, _)| id == "local"))
            .or_else(|| engines.first())
            .cloned();
        pick.ok_or_else(|| BuildError::Invalid("no node is connected to build on".into()))
    }

    fn slot(&self, node_id: &str) -> Arc<Semaphore> {
        self.slots
            .lock()
            .expect("build slots lock")
            .entry(node_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.settings.concurrency_per_node as usize))
            })
            .clone()
    }

    async fn build(
        &self,
        build: &BuildRecord,
        progress: &Progress,
        live: &LiveLog,
        interrupt: Arc<AtomicBool>,
    ) -> Result<(), BuildError> {
        let deployment = self
            .store
            .deployments()
            .by_id(&build.deployment_id)
            .await?
            .ok_or_else(|| BuildError::Invalid("the deployment no longer exists".into()))?;
        let source = self
            .store
            .builds()
            .source(&deployment.id)
            .await?
            .ok_or_else(|| {
                BuildError::Invalid("the deployment has no git source any more".into())
            })?;
        let spec_source = source_spec(&source)?;
        progress
            .begin(
                "fetch",
                format!("{} ({})", source.repository_url, build.branch),
            )
            .await;
        live.line(&format!(
            "fetching {} {}",
            source.repository_url,
            build.requested_commit.as_deref().unwrap_or(&build.branch)
        ));
        address::check_repository_url(
            &source.repository_url,
            self.settings.allow_private_repositories,
        )
        .await?;
        let token = match &source.https_token {
            Some(sealed) => Some(
                self.secrets
                    .open(sealed)
                    .map_err(|e| BuildError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        live.mask(
            spec_source
                .build_args
                .iter()
                .map(|a| a.value.clone())
                .chain(token.clone()),
        );
        let ssh_key = match &source.ssh_private_key {
            Some(sealed) => Some(zeroize::Zeroizing::new(
                self.secrets
                    .open(sealed)
                    .map_err(|e| BuildError::Invalid(e.to_string()))?,
            )),
            None => None,
        };
        let mut request = git::FetchRequest {
            url: source.repository_url.clone(),
            branch: build.branch.clone(),
            commit: build.requested_commit.clone(),
            token,
            ssh_command: None,
        };
        let known_hosts = source.ssh_known_hosts.clone();
        let dockerfile = dockerfile_in_context(&spec_source).ok_or_else(|| {
            BuildError::Context("the Dockerfile is outside the build context".into())
        })?;
        let dir = self.workspace(&build.id);
        let context_dir = source.context_dir.clone();
        let max = self.settings.context_max_bytes;
        let dockerfile_in = dockerfile.clone();
        let flag = interrupt.clone();
        let (commit, context, seen_hosts) = tokio::task::spawn_blocking(move || {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| BuildError::Invalid(e.to_string()))?;
            }
            std::fs::create_dir_all(&dir).map_err(|e| BuildError::Invalid(e.to_string()))?;
            // The deploy key (if any) lives beside the clone, for this fetch only.
            let ssh_files = match &ssh_key {
                Some(key) => Some(ssh::SshFiles::write(&dir.join("ssh"), key, &known_hosts)?),
                None => None,
            };
            request.ssh_command = ssh_files.as_ref().map(ssh::SshFiles::command);
            let (repo, commit) =
                git::fetch(&request, &dir.join("repo"), &flag).map_err(|e| match &ssh_files {
                    Some(files) => files.explain(e),
                    None => e,
                })?;
            let tar = git::context_tar(&repo, &commit, &context_dir, &dockerfile_in, max)?;
            let seen_hosts = ssh_files.map(|f| f.known_hosts());
            Ok::<_, BuildError>((commit, tar, seen_hosts))
        })
        .await
        .map_err(|e| BuildError::Invalid(format!("the fetch stopped: {e}")))??;
        if let Some(hosts) = seen_hosts.filter(|h| *h != source.ssh_known_hosts) {
            // A host's key seen for the first time is pinned for the next fetches.
            live.line("pinned the ssh host key of the repository's host");
            self.store
                .builds()
                .set_known_hosts(&deployment.id, &hosts)
                .await?;
        }
        let tag = image_tag(&deployment.id, &commit);
        self.store
            .builds()
            .set_commit(&build.id, &commit, &tag)
            .await?;
        live.line(&format!(
            "commit {commit}; build context {} bytes",
            context.len()
        ));

        let (node_id, engine) = self.build_node(&deployment.id).await?;
        let slot = self.slot(&node_id);
        if slot.available_permits() == 0 {
            progress
                .begin("queue", format!("waiting for a build slot on {node_id}"))
                .await;
        }
        let _permit = slot
            .acquire_owned()
            .await
            .map_err(|_| BuildError::Invalid("build slots closed".into()))?;
        progress
            .begin("build", format!("building {tag} on {node_id}"))
            .await;
        // Not the installation label: the builder's intermediate containers inherit the
        // image's labels, and the reconciler removes labelled containers it has no record of.
        let mut labels = self.orchestrator.extra_labels();
        labels.insert(labels::DEPLOYMENT.into(), deployment.id.clone());
        labels.insert("berth.build".into(), build.id.clone());
        let image = ImageBuild {
            tag: tag.clone(),
            dockerfile,
            build_args: spec_source
                .build_args
                .iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect(),
            labels,
        };
        let flusher = self.flush_log(&build.id, live);
        let image_id = tokio::select! {
            r = engine.build_image(context, &image, |line| live.line(line)) => r,
            () = flusher => unreachable!("the log flusher never ends"),
        }
        .map_err(|e| match e {
            RuntimeError::BuildFailed(m) => BuildError::Image(m),
            other => BuildError::Engine(other),
        })?;
        live.line(&format!("built {tag} ({image_id})"));

        progress.begin("release", "recording the release").await;
        let current = match &deployment.current_release_id {
            Some(id) => self.store.deployments().release_by_id(id).await?,
            None => None,
        };
        let current = match current {
            Some(r) => r,
            None => self
                .store
                .deployments()
                .releases(&deployment.id)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| BuildError::Invalid("the deployment has no release".into()))?,
        };
        let mut spec = release_spec(&current).map_err(|e| BuildError::Invalid(e.to_string()))?;
        spec.image = tag.clone();
        let short = &commit[..12];
        let (release, _job) = self
            .store
            .builds()
            .succeed(
                &build.id,
                &live.text(),
                NewRelease {
                    spec: serde_json::to_string(&spec)
                        .map_err(|e| BuildError::Invalid(e.to_string()))?,
                    image_digest: Some(image_id),
                    cause: format!("build #{} ({short})", build.number),
                    created_by: build.created_by.clone(),
                },
                NewJob {
                    kind: "deploy".into(),
                    project_id: Some(deployment.project_id.clone()),
                    deployment_id: Some(deployment.id.clone()),
                    payload: serde_json::json!({"release_id": "{release_id}"}).to_string(),
                    created_by: build.created_by.clone(),
                },
            )
            .await?;
        progress
            .note(format!("release #{} queued for rollout", release.number))
            .await;
        // The worker wakes its peers when this job ends, and the rollout runs next.
        self.prune_images(&engine, &deployment.id).await;
        Ok(())
    }

    /// Writes the live log to the store every second, so other processes and later readers
    /// see it while the build runs.
    async fn flush_log(&self, build_id: &str, live: &LiveLog) {
        let mut written = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let version = live.version();
            if version != written {
                written = version;
                if let Err(e) = self.store.builds().set_log(build_id, &live.text()).await {
                    tracing::warn!(build.id = %build_id, error = %e, "cannot store a build log");
                }
            }
        }
    }

    /// Removes images of this deployment's older builds beyond `images_kept`, keeping any a
    /// release still runs (the engine refuses to remove an image a container uses).
    async fn prune_images(&self, engine: &Engine, deployment_id: &str) {
        let keep = self.settings.images_kept as usize;
        let builds = match self.store.builds().for_deployment(deployment_id, 200).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(deployment.id = %deployment_id, error = %e, "cannot list builds to prune");
                return;
            }
        };
        let mut seen = std::collections::HashSet::new();
        let images: Vec<String> = builds
            .into_iter()
            .filter(|b| b.status == "succeeded")
            .filter_map(|b| b.image)
            .filter(|i| seen.insert(i.clone()))
            .collect();
        for old in images.iter().skip(keep) {
            match engine.remove_image(old).await {
                Ok(()) => {
                    tracing::info!(deployment.id = %deployment_id, image = %old, "removed an old build image")
                }
                Err(RuntimeError::Conflict(_)) => {}
                Err(e) => {
                    tracing::warn!(image = %old, error = %e, "cannot remove an old build image")
                }
            }
        }
    }
}

/// The stored source as the model type (build args parsed).
///
/// # Errors
/// `Invalid` when the stored build args are not JSON (never expected).
pub fn source_spec(s: &GitSourceRecord) -> Result<GitSource, BuildError> {
    let build_args: Vec<BuildArg> = serde_json::from_str(&s.build_args)
        .map_err(|e| BuildError::Invalid(format!("stored build args are unreadable: {e}")))?;
    Ok(GitSource {
        repository_url: s.repository_url.clone(),
        branch: s.branch.clone(),
        dockerfile_path: s.dockerfile_path.clone(),
        context_dir: s.context_dir.clone(),
        build_args,
    })
}

impl crate::jobs::JobHandler for Builder {
    fn run<'a>(
        &'a self,
        job: &'a JobRecord,
        progress: &'a Progress,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.run_job(job, progress))
    }
}
