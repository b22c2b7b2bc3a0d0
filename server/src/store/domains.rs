//! The custom-domains repository.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{flag, new_id, now_ms, touched, StoreResult};

/// One custom domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecord {
    pub id: String,
    pub project_id: String,
    pub deployment_id: String,
    /// Lower-case, no trailing dot; unique across the installation.
    pub hostname: String,
    /// The value the `_berth-challenge` TXT record must hold.
    pub token: String,
    /// `pending` or `verified`.
    pub status: String,
    pub last_result: String,
    pub attempts: i64,
    pub last_check_at_ms: Option<i64>,
    pub next_check_at_ms: Option<i64>,
    pub verified_at_ms: Option<i64>,
    pub created_at_ms: i64,
    /// Plain-HTTP requests get a 308 to HTTPS once a certificate covers the hostname.
    pub redirect_https: bool,
}

const COLUMNS: &str = "id, project_id, deployment_id, hostname, token, status, last_result, \
     attempts, last_check_at_ms, next_check_at_ms, verified_at_ms, created_at_ms, redirect_https";

fn from_row(row: &AnyRow) -> Result<DomainRecord, sqlx::Error> {
    Ok(DomainRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        deployment_id: row.try_get("deployment_id")?,
        hostname: row.try_get("hostname")?,
        token: row.try_get("token")?,
        status: row.try_get("status")?,
        last_result: row.try_get("last_result")?,
        attempts: row.try_get("attempts")?,
        last_check_at_ms: row.try_get("last_check_at_ms")?,
        next_check_at_ms: row.try_get("next_check_at_ms")?,
        verified_at_ms: row.try_get("verified_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        redirect_https: flag(row.try_get("redirect_https")?),
    })
}

/// Reads and writes custom domains.
pub struct Domains<'a> {
    pool: &'a AnyPool,
}

impl<'a> Domains<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Adds a pending domain, due for its first check now.
    ///
    /// # Errors
    /// `Conflict` when the hostname is taken (by any project).
    pub async fn add(
        &self,
        project_id: &str,
        deployment_id: &str,
        hostname: &str,
        token: &str,
    ) -> StoreResult<DomainRecord> {
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO domains (id, project_id, deployment_id, hostname, token, status, \
             last_result, attempts, next_check_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'pending', '', 0, $6, $6)",
        )
        .bind(&id)
        .bind(project_id)
        .bind(deployment_id)
        .bind(hostname)
        .bind(token)
        .bind(now)
        .execute(self.pool)
        .await?;
        Ok(DomainRecord {
            id,
            project_id: project_id.into(),
            deployment_id: deployment_id.into(),
            hostname: hostname.into(),
            token: token.into(),
            status: "pending".into(),
            last_result: String::new(),
            attempts: 0,
            last_check_at_ms: None,
            next_check_at_ms: Some(now),
            verified_at_ms: None,
            created_at_ms: now,
            redirect_https: false,
        })
    }

    pub async fn by_id(&self, id: &str) -> StoreResult<Option<DomainRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM domains WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The domain `hostname` (lower-case), whichever project holds it.
    pub async fn by_hostname(&self, hostname: &str) -> StoreResult<Option<DomainRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM domains WHERE hostname = $1"
        ))
        .bind(hostname)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// A deployment's domains, by hostname.
    pub async fn for_deployment(&self, deployment_id: &str) -> StoreResult<Vec<DomainRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM domains WHERE deployment_id = $1 ORDER BY hostname"
        ))
        .bind(deployment_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Every verified domain (the ingress routes them).
    pub async fn verified(&self) -> StoreResult<Vec<DomainRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM domains WHERE status = 'verified'"
        ))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Pending domains whose next check is due at `now_ms`.
    pub async fn due(&self, now_ms: i64) -> StoreResult<Vec<DomainRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM domains WHERE status = 'pending' AND next_check_at_ms <= $1"
        ))
        .bind(now_ms)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Records a check: `verified` or still pending with the next check at `next_check_at_ms`.
    /// A failed check never demotes a domain that was verified meanwhile (by another
    /// scheduler, or a check that finished first): that write touches nothing and is
    /// `NotFound`, as for a domain removed meanwhile.
    pub async fn record_check(
        &self,
        id: &str,
        verified: bool,
        result: &str,
        next_check_at_ms: Option<i64>,
    ) -> StoreResult<()> {
        let now = now_ms();
        touched(
            sqlx::query(
                "UPDATE domains SET status = $1, last_result = $2, last_check_at_ms = $3, \
                 next_check_at_ms = $4, attempts = attempts + 1, \
                 verified_at_ms = CASE WHEN $1 = 'verified' THEN $3 ELSE verified_at_ms END \
                 WHERE id = $5 AND (status = 'pending' OR $1 = 'verified')",
            )
            .bind(if verified { "verified" } else { "pending" })
            .bind(result)
            .bind(now)
            .bind(next_check_at_ms)
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Makes a pending domain due now (the "Verify now" button) and resets its backoff.
    pub async fn check_now(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE domains SET next_check_at_ms = $1, attempts = 0 \
                 WHERE id = $2 AND status = 'pending'",
            )
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Turns the HTTP -> HTTPS redirect on or off.
    pub async fn set_redirect_https(&self, id: &str, on: bool) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE domains SET redirect_https = $1 WHERE id = $2")
                .bind(i64::from(on))
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }

    pub async fn delete(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM domains WHERE id = $1")
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }
}

/// A path route: `<domain><path_prefix>…` served by another deployment of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRouteRecord {
    pub id: String,
    pub domain_id: String,
    /// The domain's hostname (joined from `domains`).
    pub hostname: String,
    /// The deployment serving the prefix.
    pub deployment_id: String,
    /// `/` followed by segments, no trailing `/`, e.g. `/api`.
    pub path_prefix: String,
    /// The app sees the path without the prefix.
    pub strip_prefix: bool,
    pub created_at_ms: i64,
    /// Whether the domain is verified (joined from `domains`): only then is the path routed.
    pub domain_verified: bool,
}

const PATH_COLUMNS: &str = "p.id, p.domain_id, d.hostname, p.deployment_id, p.path_prefix, \
     p.strip_prefix, p.created_at_ms, d.status AS domain_status";

fn path_from_row(row: &AnyRow) -> Result<PathRouteRecord, sqlx::Error> {
    Ok(PathRouteRecord {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        hostname: row.try_get("hostname")?,
        deployment_id: row.try_get("deployment_id")?,
        path_prefix: row.try_get("path_prefix")?,
        strip_prefix: flag(row.try_get("strip_prefix")?),
        created_at_ms: row.try_get("created_at_ms")?,
        domain_verified: row.try_get::<String, _>("domain_status")? == "verified",
    })
}

impl Domains<'_> {
    /// Adds a path route on domain `domain_id` to `deployment_id`.
    ///
    /// # Errors
    /// `Conflict` when the domain already has a route for this prefix.
    pub async fn add_path(
        &self,
        domain_id: &str,
        deployment_id: &str,
        path_prefix: &str,
        strip_prefix: bool,
    ) -> StoreResult<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO path_routes (id, domain_id, deployment_id, path_prefix, strip_prefix, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(domain_id)
        .bind(deployment_id)
        .bind(path_prefix)
        .bind(i64::from(strip_prefix))
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(id)
    }

    pub async fn path_by_id(&self, id: &str) -> StoreResult<Option<PathRouteRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {PATH_COLUMNS} FROM path_routes p JOIN domains d ON d.id = p.domain_id \
             WHERE p.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(path_from_row).transpose()?)
    }

    /// The path routes served by a deployment, by hostname and prefix.
    pub async fn paths_for_deployment(
        &self,
        deployment_id: &str,
    ) -> StoreResult<Vec<PathRouteRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {PATH_COLUMNS} FROM path_routes p JOIN domains d ON d.id = p.domain_id \
             WHERE p.deployment_id = $1 ORDER BY d.hostname, p.path_prefix"
        ))
        .bind(deployment_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(path_from_row).collect::<Result<_, _>>()?)
    }

    /// Every path route on a verified domain (the ingress routes them).
    pub async fn verified_paths(&self) -> StoreResult<Vec<PathRouteRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {PATH_COLUMNS} FROM path_routes p JOIN domains d ON d.id = p.domain_id \
             WHERE d.status = 'verified'"
        ))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(path_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn delete_path(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM path_routes WHERE id = $1")
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }
}
