//! The API tokens repository. Only a SHA-256 of each secret is stored.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, touched, StoreResult};

/// A stored token (without its secret, which is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, user_id, name, prefix, expires_at_ms, last_used_at_ms, created_at_ms";

fn from_row(row: &AnyRow) -> Result<ApiTokenRecord, sqlx::Error> {
    Ok(ApiTokenRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Reads and writes API tokens.
pub struct ApiTokens<'a> {
    pool: &'a AnyPool,
}

impl<'a> ApiTokens<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Stores a token given the hex SHA-256 of its secret.
    pub async fn create(
        &self,
        user_id: &str,
        name: &str,
        prefix: &str,
        secret_sha256: &str,
        expires_at_ms: Option<i64>,
    ) -> StoreResult<ApiTokenRecord> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, prefix, secret_sha256, expires_at_ms, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(prefix)
        .bind(secret_sha256)
        .bind(expires_at_ms)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
            .bind(&id)
            .fetch_one(self.pool)
            .await?;
        Ok(from_row(&row)?)
    }

    /// The unexpired token whose secret hashes to `secret_sha256`; records its use.
    pub async fn authenticate(&self, secret_sha256: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE secret_sha256 = $1 \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)"
        ))
        .bind(secret_sha256)
        .bind(now)
        .fetch_optional(self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token = from_row(&row)?;
        sqlx::query("UPDATE api_tokens SET last_used_at_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&token.id)
            .execute(self.pool)
            .await?;
        Ok(Some(token))
    }

    /// A user's tokens, newest first.
    pub async fn list_for_user(&self, user_id: &str) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at_ms DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes a token of `user_id`.
    ///
    /// # Errors
    /// `NotFound` when the user has no such token.
    pub async fn revoke(&self, user_id: &str, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(self.pool)
                .await?,
        )
    }
}
