//! Deployments, releases, instances and jobs as the API shows them, and the requests that
//! change them. A deployment's [`DeploymentSpec`] is what every release freezes.

use serde::{Deserialize, Serialize};

use super::{DatabaseDump, NodeId, PlanId, ProjectId};

id_type!(
    /// A deployment's id: a UUIDv7 string.
    DeploymentId
);
id_type!(
    /// A release's id: a UUIDv7 string.
    ReleaseId
);
id_type!(
    /// An instance's id (one row of `deployment_locations`): a UUIDv7 string.
    InstanceId
);
id_type!(
    /// A job's id: a UUIDv7 string.
    JobId
);

/// One environment variable. A `secret` value is encrypted at rest and never returned: in
/// answers its `value` is `None`; in an update, a secret with `value: None` keeps the value it
/// had in the current release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EnvVar {
    /// POSIX-style name: `[A-Za-z_][A-Za-z0-9_]*`, at most 255 characters.
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

/// A named volume mounted into every instance; it outlives releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VolumeMount {
    /// A DNS label (1–30 of `a-z0-9-`), unique in the project.
    pub name: String,
    /// Absolute path inside the container, e.g. `/data`.
    pub mount_path: String,
}

/// What a container's exit leads to. Berth (not Docker) restarts instances, with exponential
/// backoff, so a crash loop is seen and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after any exit.
    #[default]
    Always,
    /// Restart after a non-zero exit code only.
    OnFailure,
    /// Leave a stopped instance stopped.
    Never,
}

impl RestartPolicy {
    /// Whether an instance that exited with `exit_code` is to be started again.
    pub fn restarts(self, exit_code: i64) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// How an instance proves it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthProbe {
    /// `GET http://<instance>:<http_port><path>` answers 2xx or 3xx.
    Http { path: String },
    /// The command (an argument list, run inside the container by Docker's health check)
    /// exits 0.
    Command { command: Vec<String> },
}

/// A health check with Docker's timing fields (`docker run --health-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// Time between probes, 100–300000 ms.
    pub interval_ms: u32,
    /// How long one probe may take, 100–60000 ms.
    pub timeout_ms: u32,
    /// Consecutive failures (after the start period) that make an instance unhealthy, 1–20.
    pub retries: u32,
    /// Grace time after start during which failures do not count, 0–600000 ms.
    pub start_period_ms: u32,
}

impl HealthCheck {
    /// The longest a new instance may take to become healthy before a rollout gives up:
    /// start period plus `retries` probes of interval + timeout.
    pub fn deadline_ms(&self) -> u64 {
        u64::from(self.start_period_ms)
            + u64::from(self.retries) * (u64::from(self.interval_ms) + u64::from(self.timeout_ms))
    }
}

/// Everything a release freezes: image, configuration and resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentSpec {
    /// Image reference, e.g. `berth-demo/httpd:latest` or `name@sha256:…`.
    pub image: String,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// The TCP port the app listens on for HTTP (1–65535); the ingress routes to it and, with
    /// no health check configured, a rollout waits until it accepts connections.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Replaces the image's command (argument list, no shell).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    pub plan_id: PlanId,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// How the ingress serves this deployment's hostnames.
    #[serde(default)]
    pub routing: RouteSettings,
    /// Set for database servers: backups are dumps of this database (see [`DatabaseDump`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseDump>,
}

/// How requests are spread over a deployment's healthy instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BalanceStrategy {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// The instance with the fewest requests in flight (ties: in turn).
    LeastConnections,
}

/// The ingress's settings for one deployment's routes; unset limits use the installation's
/// defaults (`ingress_upstream_timeout_secs`, `ingress_max_body_bytes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RouteSettings {
    #[serde(default)]
    pub balance: BalanceStrategy,
    /// Seconds the app has to start answering a request (1–3600); then 504.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// Largest request body passed to the app, bytes (1024 – 10 GiB); larger ones get 413.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

/// Request to create a deployment; its first release rolls out at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreateDeployment {
    /// A DNS label of 1–30 characters, unique in the project.
    pub name: String,
    /// 1–20 instances.
    pub replicas: u32,
    pub spec: DeploymentSpec,
}

/// What a lifecycle request asks for. Each one becomes a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
// The lint fires on 64-bit targets only (wasm32's pointers are half the size).
#[cfg_attr(
    not(target_arch = "wasm32"),
    expect(
        clippy::large_enum_variant,
        reason = "one request body, made once per request; boxing the spec would only add noise"
    )
)]
pub enum DeploymentAction {
    /// A new release with this spec (a config change), rolled out health-gated.
    Update {
        spec: DeploymentSpec,
    },
    /// A new release of the current spec with the image resolved again.
    Redeploy,
    /// A new release that copies an earlier one (image digest, env and config).
    Rollback {
        release_id: ReleaseId,
    },
    /// Sets the number of instances, 0–20.
    Scale {
        replicas: u32,
    },
    Stop,
    Start,
    /// Restarts the instances one after another.
    Restart,
    /// Removes instances and records; named volumes too when `remove_volumes`.
    Delete {
        remove_volumes: bool,
    },
}

impl DeploymentAction {
    /// The job kind this action runs as (`deploy`, `scale`, `stop`, ...).
    pub fn job_kind(&self) -> &'static str {
        match self {
            Self::Update { .. } | Self::Redeploy => "deploy",
            Self::Rollback { .. } => "rollback",
            Self::Scale { .. } => "scale",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Restart => "restart",
            Self::Delete { .. } => "delete",
        }
    }
}

/// A deployment's overall state, derived from its instances and its last job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// A rollout is in progress.
    Deploying,
    /// Every wanted instance runs and is healthy.
    Running,
    /// Some instances are missing, starting again or unhealthy.
    Degraded,
    /// Instances keep exiting; Berth restarts them with growing delays.
    CrashLoop,
    Stopped,
    /// Nothing runs because the first release never became healthy.
    Failed,
    Deleting,
}

impl DeploymentStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploying => "deploying",
            Self::Running => "running",
            Self::Degraded => "degraded",
            Self::CrashLoop => "crash_loop",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Deleting => "deleting",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "deploying" => Self::Deploying,
            "running" => Self::Running,
            "degraded" => Self::Degraded,
            "crash_loop" => Self::CrashLoop,
            "stopped" => Self::Stopped,
            "failed" => Self::Failed,
            "deleting" => Self::Deleting,
            _ => return None,
        })
    }
}

/// A deployment as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    pub id: DeploymentId,
    pub project_id: ProjectId,
    pub name: String,
    pub replicas: u32,
    /// `running` or `stopped`: what the user asked for.
    pub desired_state: String,
    pub status: DeploymentStatus,
    /// Why the status is what it is (last failure, crash-loop exit code), empty when fine.
    pub status_message: String,
    /// The spec of the current release (secret values are `None`); `None` before any release
    /// became healthy.
    pub spec: Option<DeploymentSpec>,
    pub current_release: Option<u32>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One immutable release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ReleaseView {
    pub id: ReleaseId,
    /// 1, 2, 3… per deployment.
    pub number: u32,
    pub image: String,
    /// The image's registry digest, or its local id (`sha256:…`) for a locally built image.
    pub image_digest: Option<String>,
    /// `pending`, `active`, `failed` or `superseded`.
    pub status: String,
    pub failure_reason: String,
    /// What made it: `create`, `update`, `redeploy`, `rollback to #n`.
    pub cause: String,
    pub created_at_ms: i64,
}

/// One instance (container) of a deployment and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct InstanceView {
    pub id: InstanceId,
    pub release_number: u32,
    /// 0-based replica index.
    pub slot: u32,
    pub node_id: NodeId,
    pub node_name: String,
    pub container_name: String,
    pub container_id: Option<String>,
    /// `creating`, `running`, `exited`, `restarting`, `missing`, `stopped`.
    pub status: String,
    /// `starting`, `healthy`, `unhealthy` or `none`.
    pub health: String,
    /// `ip:port` on the project network, when known.
    pub address: Option<String>,
    pub restart_count: u32,
    pub last_exit_code: Option<i64>,
    /// The last failure seen (exit, failed probe), empty when none.
    pub last_error: String,
    /// Unix epoch milliseconds of the current container start.
    pub started_at_ms: Option<i64>,
}

/// One step of a job's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct JobStep {
    pub name: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub message: String,
    pub at_ms: i64,
}

/// A persisted unit of background work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: JobId,
    /// `deploy`, `rollback`, `scale`, `stop`, `start`, `restart`, `delete`.
    pub kind: String,
    pub deployment_id: Option<DeploymentId>,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    pub steps: Vec<JobStep>,
    /// Why it failed, written for people; empty otherwise.
    pub error: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// Everything the deployment page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentDetail {
    pub deployment: DeploymentView,
    /// Where the ingress serves the app (`http://<deployment>-<project>.<base domain>:port/`);
    /// `None` when no ingress runs.
    #[serde(default)]
    pub url: Option<String>,
    /// The same over HTTPS (`https://<deployment>-<project>.<base domain>:port/`), once a
    /// CA-issued certificate covers the generated hostname (its own, or `*.<base domain>`
    /// by DNS-01) and unexpired; `None` with only the self-signed fallback or no HTTPS.
    #[serde(default)]
    pub https_url: Option<String>,
    pub project_name: String,
    /// Newest first.
    pub releases: Vec<ReleaseView>,
    pub instances: Vec<InstanceView>,
    /// The latest jobs, newest first (at most 10).
    pub jobs: Vec<JobView>,
}

/// One line of an instance's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub instance_id: InstanceId,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 timestamp as the engine recorded it.
    pub timestamp: String,
    pub text: String,
}
