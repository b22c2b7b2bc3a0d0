//! The sessions repository, and its adapter to tower-sessions' `SessionStore`.
//! Sessions live in the database so they survive a restart and are shared by controllers.

use async_trait::async_trait;
use sqlx::{AnyPool, Row};
use tower_sessions::{
    session::{Id, Record},
    session_store, SessionStore,
};

use super::{now_ms, StoreError, StoreResult};

/// The session key that holds the signed-in user's id.
pub const USER_ID_KEY: &str = "user_id";

/// Reads and writes sessions.
pub struct Sessions<'a> {
    pool: &'a AnyPool,
}

impl<'a> Sessions<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Deletes sessions whose expiry has passed; returns how many.
    pub async fn delete_expired(&self) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
            .bind(now_ms())
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes every session of a user (sign out everywhere, e.g. after a password reset).
    pub async fn delete_for_user(&self, user_id: &str) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Number of stored sessions, expired or not.
    pub async fn count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions")
            .fetch_one(self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// tower-sessions store backed by the `sessions` table. The session id is the row key; the
/// data is JSON text; the signed-in user's id is copied to a column so that all sessions of a
/// user can be revoked at once.
#[derive(Clone, Debug)]
pub struct SessionRepo {
    pool: AnyPool,
}

impl SessionRepo {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    async fn insert_or_update(&self, record: &Record, insert_only: bool) -> StoreResult<bool> {
        let data =
            serde_json::to_string(&record.data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let user_id = record
            .data
            .get(USER_ID_KEY)
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let expires_at_ms = i64::try_from(record.expiry_date.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        let sql = if insert_only {
            "INSERT INTO sessions (id, user_id, data, expires_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING"
        } else {
            "INSERT INTO sessions (id, user_id, data, expires_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, \
             expires_at_ms = excluded.expires_at_ms"
        };
        let done = sqlx::query(sql)
            .bind(record.id.to_string())
            .bind(user_id)
            .bind(data)
            .bind(expires_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn backend_error(e: StoreError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for SessionRepo {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A colliding 128-bit random id is improbable; pick a new one rather than overwrite.
        while !self
            .insert_or_update(record, true)
            .await
            .map_err(backend_error)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.insert_or_update(record, false)
            .await
            .map(|_| ())
            .map_err(backend_error)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = sqlx::query(
            "SELECT data, expires_at_ms FROM sessions WHERE id = $1 AND expires_at_ms > $2",
        )
        .bind(id.to_string())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend_error(e.into()))?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get("data").map_err(|e| backend_error(e.into()))?;
        let expires_at_ms: i64 = row
            .try_get("expires_at_ms")
            .map_err(|e| backend_error(e.into()))?;
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_at_ms) * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| backend_error(e.into()))?;
        Ok(())
    }
}
