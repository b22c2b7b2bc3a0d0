//! The TLS certificates repository: certificates by hostname, HTTP-01 challenge answers and
//! ACME accounts.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, touched, StoreResult};

/// One certificate slot: the hostname it covers and, once issued, the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub id: String,
    /// Lower-case; `*.example.com` for a wildcard.
    pub hostname: String,
    /// The custom domain it serves (`None` for the self-signed fallback).
    pub domain_id: Option<String>,
    /// `acme` or `self_signed`.
    pub source: String,
    /// The chain, leaf first, PEM; `None` until first issued.
    pub cert_pem: Option<String>,
    /// The private key (PKCS#8 PEM) sealed by [`crate::secrets::SecretBox`].
    pub key_sealed: Option<String>,
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    /// Why the last issuance or renewal failed; empty after a success.
    pub last_error: String,
    /// Failed attempts since the last success (drives the backoff).
    pub attempts: i64,
    /// When the manager next tries to issue or renew.
    pub next_attempt_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "id, hostname, domain_id, source, cert_pem, key_sealed, not_before_ms, \
     not_after_ms, last_error, attempts, next_attempt_at_ms, updated_at_ms";

fn from_row(row: &AnyRow) -> Result<CertificateRecord, sqlx::Error> {
    Ok(CertificateRecord {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        domain_id: row.try_get("domain_id")?,
        source: row.try_get("source")?,
        cert_pem: row.try_get("cert_pem")?,
        key_sealed: row.try_get("key_sealed")?,
        not_before_ms: row.try_get("not_before_ms")?,
        not_after_ms: row.try_get("not_after_ms")?,
        last_error: row.try_get("last_error")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// A certificate just issued.
pub struct Issued<'a> {
    pub cert_pem: &'a str,
    pub key_sealed: &'a str,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// When renewal becomes due.
    pub renew_at_ms: i64,
}

/// Reads and writes certificates, challenge answers and ACME accounts.
pub struct Certificates<'a> {
    pool: &'a AnyPool,
}

impl<'a> Certificates<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Creates the slot for `hostname` unless one exists, due at `due_at_ms`.
    pub async fn ensure(
        &self,
        hostname: &str,
        domain_id: Option<&str>,
        source: &str,
        due_at_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO certificates (id, hostname, domain_id, source, last_error, attempts, \
             next_attempt_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, '', 0, $5, $6) \
             ON CONFLICT (hostname) DO NOTHING",
        )
        .bind(new_id())
        .bind(hostname)
        .bind(domain_id)
        .bind(source)
        .bind(due_at_ms)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn by_hostname(&self, hostname: &str) -> StoreResult<Option<CertificateRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM certificates WHERE hostname = $1"
        ))
        .bind(hostname)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Every slot (the ingress loads those with a certificate).
    pub async fn all(&self) -> StoreResult<Vec<CertificateRecord>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM certificates"))
            .fetch_all(self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The hostnames that have a slot.
    pub async fn hostnames(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT hostname FROM certificates")
            .fetch_all(self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("hostname"))
            .collect::<Result<_, _>>()?)
    }

    /// The hostnames of slots that belong to neither a custom domain nor a wildcard: the
    /// per-deployment certificates of generated hostnames.
    pub async fn generated_hostnames(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT hostname FROM certificates WHERE domain_id IS NULL AND hostname NOT LIKE '*.%'",
        )
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("hostname"))
            .collect::<Result<_, _>>()?)
    }

    /// Removes the slot of `hostname` (its certificate and key with it), if there is one.
    pub async fn remove(&self, hostname: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM certificates WHERE hostname = $1")
            .bind(hostname)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// ACME slots whose next attempt is due at `now_ms`.
    pub async fn due(&self, now_ms: i64) -> StoreResult<Vec<CertificateRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM certificates WHERE source = 'acme' AND next_attempt_at_ms <= $1 \
             ORDER BY next_attempt_at_ms"
        ))
        .bind(now_ms)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Stores a newly issued certificate and clears the error and the backoff.
    pub async fn record_issued(&self, id: &str, issued: &Issued<'_>) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE certificates SET cert_pem = $1, key_sealed = $2, not_before_ms = $3, \
                 not_after_ms = $4, next_attempt_at_ms = $5, last_error = '', attempts = 0, \
                 updated_at_ms = $6 WHERE id = $7",
            )
            .bind(issued.cert_pem)
            .bind(issued.key_sealed)
            .bind(issued.not_before_ms)
            .bind(issued.not_after_ms)
            .bind(issued.renew_at_ms)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Switches slot `id` to `source` (`acme` or `self_signed`), due at `due_at_ms`; the
    /// certificate held keeps being served until the next one is stored.
    pub async fn set_source(&self, id: &str, source: &str, due_at_ms: i64) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE certificates SET source = $1, next_attempt_at_ms = $2, attempts = 0, \
                 last_error = '', updated_at_ms = $3 WHERE id = $4",
            )
            .bind(source)
            .bind(due_at_ms)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Records a failed attempt; the certificate held (if any) is left as it is.
    pub async fn record_failure(
        &self,
        id: &str,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE certificates SET last_error = $1, attempts = attempts + 1, \
                 next_attempt_at_ms = $2, updated_at_ms = $3 WHERE id = $4",
            )
            .bind(error)
            .bind(next_attempt_at_ms)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Removes ACME slots of custom domains that are gone or no longer verified (the slot
    /// of `*.<base_domain>`, which has no domain, stays).
    pub async fn prune_orphans(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM certificates WHERE source = 'acme' AND domain_id IS NOT NULL AND \
             domain_id NOT IN (SELECT id FROM domains WHERE status = 'verified')",
        )
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Publishes an HTTP-01 answer until `expires_at_ms`.
    pub async fn put_challenge(
        &self,
        token: &str,
        key_authorization: &str,
        expires_at_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO acme_challenges (token, key_authorization, expires_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT (token) DO UPDATE SET \
             key_authorization = excluded.key_authorization, expires_at_ms = excluded.expires_at_ms",
        )
        .bind(token)
        .bind(key_authorization)
        .bind(expires_at_ms)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The answer for `token`, unless unknown or expired.
    pub async fn challenge(&self, token: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT key_authorization FROM acme_challenges WHERE token = $1 AND expires_at_ms > $2",
        )
        .bind(token)
        .bind(now_ms())
        .fetch_optional(self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("key_authorization")).transpose()?)
    }

    /// Removes an answer, and every expired one.
    pub async fn remove_challenge(&self, token: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM acme_challenges WHERE token = $1 OR expires_at_ms <= $2")
            .bind(token)
            .bind(now_ms())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// The sealed credentials of the account at `directory_url`.
    pub async fn account(&self, directory_url: &str) -> StoreResult<Option<String>> {
        let row =
            sqlx::query("SELECT credentials_sealed FROM acme_accounts WHERE directory_url = $1")
                .bind(directory_url)
                .fetch_optional(self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("credentials_sealed")).transpose()?)
    }

    /// Stores an account's sealed credentials (replacing any earlier ones).
    pub async fn save_account(&self, directory_url: &str, sealed: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory_url, credentials_sealed, created_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT (directory_url) DO UPDATE SET \
             credentials_sealed = excluded.credentials_sealed",
        )
        .bind(directory_url)
        .bind(sealed)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(())
    }
}
