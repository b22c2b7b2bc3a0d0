//! Backups of a deployment's named volumes, and restores from them.

use serde::{Deserialize, Serialize};

use super::{ApiError, DeploymentId, JobId, ReleaseId};

id_type!(
    /// A backup's id: a UUIDv7 string.
    BackupId
);
id_type!(
    /// A restore's id: a UUIDv7 string.
    RestoreId
);
id_type!(
    /// A repository check's id: a UUIDv7 string.
    BackupCheckId
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
    /// `manual` or `schedule`.
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
    /// While it runs: what it is doing (files and bytes read so far); empty otherwise.
    #[serde(default)]
    pub progress: String,
    pub job_id: Option<JobId>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// When retention removed its snapshot (it can no longer be restored).
    pub removed_at_ms: Option<i64>,
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

/// Request to restore a backup. Without a target the backup goes back into its own
/// deployment; with one, into that deployment of the same project (for example a new one made
/// to receive it), whose volumes are named in `volumes` unless each side has exactly one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RestoreRequest {
    #[serde(default)]
    pub target_deployment_id: Option<DeploymentId>,
    /// Backup volume name -> target volume name.
    #[serde(default)]
    pub volumes: std::collections::BTreeMap<String, String>,
}

/// A project's backup repository, and how to open it with stock `restic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupRepositoryView {
    /// `local` or `s3`.
    pub kind: String,
    /// `restic -r <location>`: the directory on the Berth host, or `s3:<endpoint>/<bucket>/<key
    /// prefix>`.
    pub location: String,
    /// Only in the answer of the explicit reveal call, never in listings.
    pub password: Option<String>,
    /// For `s3`, only in an admin's reveal answer: restic's `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// For `s3`, only in an admin's reveal answer: restic's `AWS_SECRET_ACCESS_KEY` (the
    /// region's key, good for every project's repository in the bucket).
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Whether the scheduled checks include a restore drill.
    #[serde(default)]
    pub restore_drill: bool,
    /// When the next scheduled check is due, milliseconds since the epoch.
    #[serde(default)]
    pub next_check_at_ms: i64,
    pub created_at_ms: i64,
}

/// One check of a project's repository: restic's `check` with a share of the pack files read
/// and verified, and, with `restore_drill`, each deployment's newest snapshot restored into a
/// scratch directory and compared with what the backup recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupCheckView {
    pub id: BackupCheckId,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub restore_drill: bool,
    /// Share of the pack files read, percent.
    pub read_data_percent: i64,
    pub status: BackupStatus,
    /// Snapshots whose trees were checked.
    pub snapshots: i64,
    /// Files and bytes the drill restored and found equal.
    pub drill_files: i64,
    pub drill_bytes: i64,
    /// What was wrong, one finding a line; empty when nothing was.
    pub findings: String,
    pub job_id: Option<JobId>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// Request to check a repository now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StartBackupCheck {
    /// Also restore each deployment's newest snapshot into a scratch directory and compare.
    #[serde(default)]
    pub restore_drill: bool,
}

/// A repository's settings its owners may change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RepositorySettings {
    /// Whether the scheduled checks include a restore drill.
    pub restore_drill: bool,
}

/// A deployment's backup schedule and retention, as set by its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupPolicy {
    /// Five-field cron expression, evaluated in UTC (`0 3 * * *`: daily at 03:00); runs at
    /// most every 15 minutes.
    pub cron: String,
    /// restic's forget rules: keep the newest N snapshots, and the newest of each of the last
    /// N hours, days, weeks and months. 0 turns a rule off; all 0 keeps every snapshot.
    /// Each 0..=1000.
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_hourly: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
}

/// The most a retention rule may keep.
pub const KEEP_MAX: u32 = 1000;

impl BackupPolicy {
    /// Checks the retention rules (the cron expression is checked by the server, which
    /// evaluates it).
    ///
    /// # Errors
    /// A 400 naming the first rule over [`KEEP_MAX`].
    pub fn validate_retention(&self) -> Result<(), ApiError> {
        for (field, value) in [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ] {
            if value > KEEP_MAX {
                return Err(ApiError::invalid_field(
                    field,
                    "invalid_retention",
                    format!("Keep at most {KEEP_MAX} snapshots by one rule."),
                ));
            }
        }
        Ok(())
    }
}

/// A deployment's backup schedule as stored, with its next run and missed runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupScheduleView {
    pub deployment_id: DeploymentId,
    pub policy: BackupPolicy,
    pub next_run_at_ms: i64,
    pub last_run_at_ms: Option<i64>,
    /// Runs that did not happen: Berth was down at the time, or the previous backup was
    /// still going.
    pub missed: i64,
}

/// The database servers whose dumps Berth takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DatabaseEngine {
    /// `pg_dump` to back up, `psql` to restore.
    Postgres,
    /// `mysqldump --single-transaction` to back up, `mysql` to restore.
    Mysql,
    /// As MySQL (MariaDB images ship `mysqldump` and `mysql`).
    Mariadb,
}

/// Marks a deployment as a database server: its backups are consistent dumps of one
/// database, taken by the engine's own tool run inside the instance (no shell), instead of
/// copies of its volumes; a restore loads the dump back into the running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DatabaseDump {
    pub engine: DatabaseEngine,
    /// The database to dump: 1–63 letters, digits, `_`, `-` or `.`, not starting with `-`.
    pub database: String,
    /// The user the tools connect as (same rules).
    pub user: String,
    /// The deployment's environment variable holding that user's password, handed to the
    /// tools as `PGPASSWORD` / `MYSQL_PWD`; none when the server trusts local connections.
    #[serde(default)]
    pub password_env: Option<String>,
}

fn is_db_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl DatabaseDump {
    /// Checks the names, and that `password_env` names one of `env`'s variables.
    ///
    /// # Errors
    /// A 400 on `database.database`, `database.user` or `database.password_env`.
    pub fn validate(&self, env: &[super::EnvVar]) -> Result<(), ApiError> {
        for (field, value) in [
            ("database.database", &self.database),
            ("database.user", &self.user),
        ] {
            if !is_db_identifier(value) {
                return Err(ApiError::invalid_field(
                    field,
                    "invalid_database",
                    format!("'{value}' is not accepted: use 1–63 letters, digits, '_', '-' or '.', not starting with '-'."),
                ));
            }
        }
        if let Some(name) = &self.password_env {
            if !env.iter().any(|v| &v.name == name) {
                return Err(ApiError::invalid_field(
                    "database.password_env",
                    "invalid_database",
                    format!("'{name}' is not one of the deployment's environment variables."),
                ));
            }
        }
        Ok(())
    }
}

/// One entry of a snapshot's directory, for browsing a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SnapshotEntry {
    pub name: String,
    /// The entry's path in the snapshot (`/volumes/data/a.txt`), to list or download it by.
    pub path: String,
    /// `dir`, `file`, `symlink` or `other` (devices, fifos, sockets).
    pub kind: String,
    /// Bytes, for files.
    pub size: u64,
    /// Last modification, milliseconds since the epoch, when recorded.
    pub mtime_ms: Option<i64>,
    /// A symlink's target.
    pub link_target: Option<String>,
}

/// `bytes` in binary units with one decimal (`1.5 MiB`; plain bytes below 1 KiB).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
