//! Orchestration: where instances go (placement), how a release rolls out (rollout), and the
//! loop that keeps what runs equal to what the store wants (reconciler).
//!
//! Every Docker object Berth creates carries the labels `berth.installation` (this
//! installation's id), `berth.project`, and for containers `berth.deployment`,
//! `berth.release` and `berth.instance` (the `deployment_locations` row), plus the extra
//! labels from config.

pub mod health;
mod instances;
pub mod monitor;
pub mod placement;
pub mod reconciler;
pub mod rollout;
pub mod topology;
mod volumes;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use app::model::DeploymentSpec;

use crate::{
    runtime::{Engine, RuntimeError},
    secrets::SecretBox,
    store::{ReleaseRecord, Store, StoreError},
};

/// Label keys.
pub mod labels {
    pub const INSTALLATION: &str = "berth.installation";
    pub const PROJECT: &str = "berth.project";
    pub const DEPLOYMENT: &str = "berth.deployment";
    pub const RELEASE: &str = "berth.release";
    pub const INSTANCE: &str = "berth.instance";
}

/// Why an orchestration step failed. `Display` is written for the people reading the job.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Placement(#[from] placement::PlacementError),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("internal error (the log has details)")]
    Store(#[from] StoreError),
    /// An instance did not become healthy; the message says what was seen.
    #[error("{0}")]
    Unhealthy(String),
    /// The record is not in a state the step can work with.
    #[error("{0}")]
    Invalid(String),
}

/// The orchestrator: shared by the job workers and the reconciler.
pub struct Orchestrator {
    pub(crate) store: Store,
    engines: Mutex<HashMap<String, Arc<Engine>>>,
    pub(crate) secrets: SecretBox,
    installation: String,
    extra_labels: BTreeMap<String, String>,
    cursors: Mutex<placement::Cursors>,
    pub(crate) http: reqwest::Client,
    /// Notified whenever routes may have changed (an instance became healthy or unhealthy,
    /// a release was switched); the ingress rebuilds its table on it.
    pub routes_changed: Arc<tokio::sync::Notify>,
    /// Where remote nodes' credentials are written for bollard and `ssh` (one 0700 directory
    /// per node, files 0600).
    pub(crate) credentials_dir: PathBuf,
}

impl Orchestrator {
    /// An orchestrator over `store`, labelling objects with `installation` and `extra_labels`;
    /// remote nodes' credentials go under `credentials_dir`.
    pub fn new(
        store: Store,
        secrets: SecretBox,
        installation: String,
        extra_labels: BTreeMap<String, String>,
        credentials_dir: PathBuf,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Self {
            store,
            engines: Mutex::new(HashMap::new()),
            secrets,
            installation,
            extra_labels,
            cursors: Mutex::new(placement::Cursors::new()),
            http,
            routes_changed: Arc::new(tokio::sync::Notify::new()),
            credentials_dir,
        }
    }

    /// Makes `engine` the connection used for node `node_id`.
    pub fn attach_engine(&self, node_id: &str, engine: Arc<Engine>) {
        self.engines
            .lock()
            .expect("engines lock")
            .insert(node_id.to_owned(), engine);
    }

    /// Whether Berth holds a connection to node `node_id`.
    pub fn is_attached(&self, node_id: &str) -> bool {
        self.engines
            .lock()
            .expect("engines lock")
            .contains_key(node_id)
    }

    /// The connection to node `node_id`.
    ///
    /// # Errors
    /// `Runtime(Engine)` when Berth has no connection to that node.
    pub fn engine(&self, node_id: &str) -> Result<Arc<Engine>, DeployError> {
        self.engines
            .lock()
            .expect("engines lock")
            .get(node_id)
            .cloned()
            .ok_or_else(|| {
                DeployError::Runtime(RuntimeError::Engine(format!(
                    "Berth has no connection to node {node_id}"
                )))
            })
    }

    /// Every connected node.
    pub fn engines(&self) -> Vec<(String, Arc<Engine>)> {
        self.engines
            .lock()
            .expect("engines lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// This installation's id (the `berth.installation` label value).
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// The operator's extra labels (`docker_labels`), which every object Berth makes carries.
    pub fn extra_labels(&self) -> HashMap<String, String> {
        self.extra_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The labels every object of `project_id` gets.
    pub fn project_labels(&self, project_id: &str) -> HashMap<String, String> {
        let mut l = self.extra_labels();
        l.insert(labels::INSTALLATION.into(), self.installation.clone());
        l.insert(labels::PROJECT.into(), project_id.to_owned());
        l
    }

    /// The `key=value` filter that selects this installation's containers.
    pub fn installation_filter(&self) -> String {
        format!("{}={}", labels::INSTALLATION, self.installation)
    }

    pub(crate) fn next_placement(
        &self,
        candidates: &[placement::Candidate],
        demand: &placement::Demand,
        count: usize,
    ) -> Result<Vec<String>, placement::PlacementError> {
        let mut cursors = self.cursors.lock().expect("cursors lock");
        placement::place(candidates, demand, count, &mut cursors)
    }
}

/// The Docker network of a project: one bridge network per project.
pub fn network_name(project_id: &str) -> String {
    format!("berth-{project_id}")
}

/// The Docker volume behind a project's named volume at `generation` (0 until a restore
/// replaced its contents with a new volume; see `backups`).
pub fn volume_name(project_id: &str, volume: &str, generation: i64) -> String {
    if generation == 0 {
        format!("berth-{project_id}-{volume}")
    } else {
        format!("berth-{project_id}-{volume}-g{generation}")
    }
}

/// Reads a release's spec.
///
/// # Errors
/// `Invalid` when the stored JSON does not parse (never expected).
pub fn release_spec(release: &ReleaseRecord) -> Result<DeploymentSpec, DeployError> {
    serde_json::from_str(&release.spec).map_err(|e| {
        DeployError::Invalid(format!(
            "release #{} has an unreadable spec: {e}",
            release.number
        ))
    })
}
