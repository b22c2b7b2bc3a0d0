//! The store: one sqlx pool (SQLite by default, PostgreSQL for HA), the migrations, and one
//! repository per aggregate (users, sessions, projects + members, audit events, API tokens,
//! topology, deployments + releases, instance locations, jobs, metrics history, git sources +
//! builds, webhook deliveries).
//!
//! Both backends go through sqlx's `Any` driver with one SQL text per query: `$N`
//! placeholders (SQLite accepts them too), text ids, `BIGINT`/`INTEGER` epoch milliseconds and
//! 0/1 flags, so the same repository code and the same contract tests cover both.

mod audit;
mod backup_checks;
mod backup_destinations;
mod backup_schedules;
mod backups;
mod builds;
mod certificates;
mod deliveries;
mod deployments;
mod domains;
mod jobs;
mod leases;
mod locations;
mod projects;
mod rollups;
mod sessions;
mod tokens;
mod topology;
mod users;

pub use audit::{AuditEventRecord, AuditEvents, NewAuditEvent};
pub use backup_checks::{BackupCheckRecord, BackupChecks, CheckOutcome, DueCheck};
pub use backup_destinations::{BackupDestinationRecord, BackupDestinations};
pub use backup_schedules::{BackupScheduleRecord, BackupSchedules};
pub use backups::{BackupOutcome, BackupRecord, BackupRepositoryRecord, Backups, RestoreRecord};
pub use builds::{BuildRecord, Builds, GitSourceRecord, NewBuild};
pub use certificates::{CertificateRecord, Certificates, Issued};
pub use deliveries::{Deliveries, DeliveryRecord};
pub use deployments::{DeploymentRecord, Deployments, NewRelease, ReleaseRecord, Taken};
pub use domains::{DomainRecord, Domains, PathRouteRecord};
pub use jobs::{JobRecord, Jobs, NewJob};
pub use leases::{Lease, Leases};
pub use locations::{LocationRecord, Locations, NodeAllocation, ObservedState};
pub use projects::{MemberRecord, ProjectRecord, Projects};
pub use rollups::{MinuteRollup, Rollups, UsageRecord, WriterLease};
pub use sessions::{SessionRepo, Sessions, USER_ID_KEY};
pub use tokens::{ApiTokenRecord, ApiTokens};
pub use topology::{NewNode, NodeCapacity, NodeCredentials, NodeRecord, PlanRecord, Topology};
pub use users::{NewUser, UserRecord, Users};

use std::{str::FromStr, time::Duration};

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
    AnyPool, ConnectOptions, Executor,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `sqlite:` or `postgres://` / `postgresql://` URL names.
    ///
    /// # Errors
    /// `StoreError::UnsupportedUrl` for any other scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; `0` is the constraint or column it names.
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// The row to update or delete does not exist.
    #[error("not found")]
    NotFound,
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                let which = db
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| db.message().to_owned());
                return Self::Conflict(which);
            }
        }
        Self::Database(e)
    }
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The connection pool and its repositories. Cheap to clone (the pool is reference counted).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens a pool of at most `max_connections` to `url` and applies the migrations of its
    /// backend. SQLite files are created if missing and run with WAL, foreign keys on,
    /// `synchronous=FULL` (every commit reaches the disk) and a 5 s busy timeout.
    ///
    /// # Errors
    /// `UnsupportedUrl`, `Database` when the server cannot be reached, `Migrate` when a
    /// migration fails (nothing of a failed migration is kept: each runs in a transaction).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `SELECT 1`; used by `/healthz`.
    ///
    /// # Errors
    /// `Database` when the database does not answer.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn users(&self) -> Users<'_> {
        Users::new(&self.pool)
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions::new(&self.pool)
    }

    /// The session repository as an owned value, for tower-sessions.
    pub fn session_repo(&self) -> SessionRepo {
        SessionRepo::new(self.pool.clone())
    }

    pub fn projects(&self) -> Projects<'_> {
        Projects::new(&self.pool)
    }

    pub fn audit_events(&self) -> AuditEvents<'_> {
        AuditEvents::new(&self.pool)
    }

    pub fn api_tokens(&self) -> ApiTokens<'_> {
        ApiTokens::new(&self.pool)
    }

    pub fn topology(&self) -> Topology<'_> {
        Topology::new(&self.pool)
    }

    pub fn deployments(&self) -> Deployments<'_> {
        Deployments::new(&self.pool)
    }

    pub fn locations(&self) -> Locations<'_> {
        Locations::new(&self.pool)
    }

    pub fn domains(&self) -> Domains<'_> {
        Domains::new(&self.pool)
    }

    pub fn certificates(&self) -> Certificates<'_> {
        Certificates::new(&self.pool)
    }

    pub fn jobs(&self) -> Jobs<'_> {
        Jobs::new(&self.pool)
    }

    pub fn rollups(&self) -> Rollups<'_> {
        Rollups::new(&self.pool)
    }

    pub fn leases(&self) -> Leases<'_> {
        Leases::new(&self.pool)
    }

    pub fn backup_schedules(&self) -> BackupSchedules<'_> {
        BackupSchedules::new(&self.pool)
    }

    pub fn backup_checks(&self) -> BackupChecks<'_> {
        BackupChecks::new(&self.pool)
    }

    pub fn backup_destinations(&self) -> BackupDestinations<'_> {
        BackupDestinations::new(&self.pool)
    }

    pub fn backups(&self) -> Backups<'_> {
        Backups::new(&self.pool)
    }

    pub fn builds(&self) -> Builds<'_> {
        Builds::new(&self.pool)
    }

    pub fn deliveries(&self) -> Deliveries<'_> {
        Deliveries::new(&self.pool)
    }
}

/// Milliseconds since the Unix epoch, the unit of every `*_at_ms` column.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A new time-ordered id (UUIDv7, RFC 9562 §5.7) as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Begins a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock
/// is taken at the start (waiting up to the busy timeout), because a deferred transaction
/// that reads first holds a read snapshot, and its first write fails at once with
/// `SQLITE_BUSY_SNAPSHOT`, without any wait, when another connection committed in between
/// (<https://www.sqlite.org/lang_transaction.html>, "Read transactions" and `BUSY`;
/// <https://www.sqlite.org/rescode.html#busy_snapshot>). On PostgreSQL it is a plain
/// `BEGIN` (read committed); code that numbers rows locks the parent row first.
///
/// # Errors
/// `Database` when no connection is free within the acquire timeout, or the lock is not
/// granted within the busy timeout.
async fn begin_write(pool: &AnyPool) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
    let sqlite = pool.connect_options().database_url.scheme() == "sqlite";
    Ok(if sqlite {
        pool.begin_with("BEGIN IMMEDIATE").await?
    } else {
        pool.begin().await?
    })
}

/// `Ok` when a write touched at least one row, `NotFound` when the row did not exist.
fn touched(done: sqlx::any::AnyQueryResult) -> StoreResult<()> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// 0/1 integer flag to bool (both backends store flags as integers).
fn flag(v: i64) -> bool {
    v != 0
}
