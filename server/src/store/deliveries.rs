//! Webhook deliveries: every call a git provider made, what it carried and what came of it.
//! A delivery id seen for the same webhook within the replay window marks a replay.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, StoreResult};

/// One recorded delivery. `outcome`: `build_queued`, `ignored`, `rejected`, `duplicate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: String,
    pub deployment_id: String,
    pub provider: String,
    pub event: String,
    pub delivery_id: Option<String>,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub outcome: String,
    pub reason: String,
    pub build_id: Option<String>,
    pub received_at_ms: i64,
}

const COLUMNS: &str = "id, deployment_id, provider, event, delivery_id, branch, commit_sha, \
     outcome, reason, build_id, received_at_ms";

fn from_row(row: &AnyRow) -> Result<DeliveryRecord, sqlx::Error> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        deployment_id: row.try_get("deployment_id")?,
        provider: row.try_get("provider")?,
        event: row.try_get("event")?,
        delivery_id: row.try_get("delivery_id")?,
        branch: row.try_get("branch")?,
        commit_sha: row.try_get("commit_sha")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        build_id: row.try_get("build_id")?,
        received_at_ms: row.try_get("received_at_ms")?,
    })
}

/// The deliveries repository.
pub struct Deliveries<'a> {
    pool: &'a AnyPool,
}

impl<'a> Deliveries<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Records a delivery; `id` and `received_at_ms` are set here.
    pub async fn record(&self, mut d: DeliveryRecord) -> StoreResult<DeliveryRecord> {
        d.id = new_id();
        d.received_at_ms = now_ms();
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&d.id)
        .bind(&d.deployment_id)
        .bind(&d.provider)
        .bind(&d.event)
        .bind(&d.delivery_id)
        .bind(&d.branch)
        .bind(&d.commit_sha)
        .bind(&d.outcome)
        .bind(&d.reason)
        .bind(&d.build_id)
        .bind(d.received_at_ms)
        .execute(self.pool)
        .await?;
        Ok(d)
    }

    /// Whether a delivery with this id reached this deployment's webhook from `provider`
    /// since `since_ms` and was accepted (not rejected: a forged call must not block the
    /// genuine one that reuses its id).
    pub async fn seen(
        &self,
        deployment_id: &str,
        provider: &str,
        delivery_id: &str,
        since_ms: i64,
    ) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE deployment_id = $1 AND provider = $2 \
             AND delivery_id = $3 AND received_at_ms >= $4 AND outcome <> 'rejected'",
        )
        .bind(deployment_id)
        .bind(provider)
        .bind(delivery_id)
        .bind(since_ms)
        .fetch_one(self.pool)
        .await?;
        Ok(n > 0)
    }

    /// The deployment's deliveries, newest first, at most `limit`.
    pub async fn for_deployment(
        &self,
        deployment_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries WHERE deployment_id = $1 \
             ORDER BY received_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(deployment_id)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Removes deliveries older than `before_ms` (housekeeping).
    pub async fn prune(&self, before_ms: i64) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM webhook_deliveries WHERE received_at_ms < $1")
                .bind(before_ms)
                .execute(self.pool)
                .await?
                .rows_affected(),
        )
    }
}
