//! The audit events repository: an append-only log of who changed what.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, StoreResult};

/// An event to record. `detail` is JSON text without secrets.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor_id: Option<String>,
    /// Email of the acting user, or `system`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub client_addr: Option<String>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventRecord {
    pub id: String,
    pub actor_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub client_addr: Option<String>,
    pub created_at_ms: i64,
}

fn from_row(row: &AnyRow) -> Result<AuditEventRecord, sqlx::Error> {
    Ok(AuditEventRecord {
        id: row.try_get("id")?,
        actor_id: row.try_get("actor_id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: row.try_get("detail")?,
        client_addr: row.try_get("client_addr")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Appends and lists audit events.
pub struct AuditEvents<'a> {
    pool: &'a AnyPool,
}

impl<'a> AuditEvents<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Appends an event stamped with the current time.
    pub async fn append(&self, event: NewAuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, actor_id, actor, action, target, detail, client_addr, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(event.actor_id)
        .bind(event.actor)
        .bind(event.action)
        .bind(event.target)
        .bind(event.detail)
        .bind(event.client_addr)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` events, newest first (ids are time-ordered UUIDv7, so they break
    /// ties within one millisecond).
    pub async fn latest(&self, limit: u32) -> StoreResult<Vec<AuditEventRecord>> {
        let rows = sqlx::query(
            "SELECT id, actor_id, actor, action, target, detail, client_addr, created_at_ms \
             FROM audit_events ORDER BY created_at_ms DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}
