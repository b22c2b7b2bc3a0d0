//! Backups of a deployment's named volumes, and restores from them.

use serde::{Deserialize, Serialize};

use super::{DeploymentId, JobId, ReleaseId};

id_type!(
    /// A backup's id: a UUIDv7 string.
    BackupId
);
id_type!(
    /// A restore's id: a UUIDv7 string.
    RestoreId
);

/// Where a backup or restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl BackupStatus {
    /// The status of a stored string; unknown ones read as failed.
    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            _ => Self::Failed,
        }
    }

    /// Whether it has ended (succeeded or failed).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One backup: a snapshot of the deployment's named volumes in the project's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupView {
    pub id: BackupId,
    pub deployment_id: DeploymentId,
    /// The deployment's name when the backup was taken (it outlives the deployment).
    pub deployment_name: String,
    pub release_id: Option<ReleaseId>,
    /// `volumes`.
    pub kind: String,
    /// `manual`.
    pub trigger: String,
    pub status: BackupStatus,
    /// The volumes it holds.
    pub volumes: Vec<String>,
    /// The restic snapshot id (64 hex digits) once it succeeded.
    pub snapshot_id: Option<String>,
    /// Files in the snapshot as restic counts them (every entry that is not a directory).
    pub files: i64,
    /// Bytes of the regular files.
    pub bytes_total: i64,
    /// New data the repository stored for it, in bytes (before compression).
    pub bytes_added: i64,
    /// Why it failed, written for people; empty otherwise.
    pub failure: String,
    pub job_id: Option<JobId>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// One restore of a backup into a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RestoreView {
    pub id: RestoreId,
    pub deployment_id: DeploymentId,
    pub backup_id: BackupId,
    pub status: BackupStatus,
    /// Files restored (every entry that is not a directory).
    pub files: i64,
    /// Bytes of the regular files restored.
    pub bytes_total: i64,
    pub failure: String,
    pub job_id: Option<JobId>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A project's backup repository, and how to open it with stock `restic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupRepositoryView {
    /// `local`.
    pub kind: String,
    /// The repository's directory on the Berth host (`restic -r <location>`).
    pub location: String,
    /// Only in the answer of the explicit reveal call, never in listings.
    pub password: Option<String>,
    pub created_at_ms: i64,
}
