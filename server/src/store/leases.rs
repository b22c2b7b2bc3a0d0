//! Leases (`leases`): which process runs a loop that must run once per installation when
//! several processes share the database (HA and scaled modes).
//!
//! A process claims a lease by name until a deadline and renews it before then; another
//! process takes it over only once it has run out, so a crashed holder is replaced after at
//! most one time-to-live. Each lease carries a mark, the loop's own progress, which the
//! holder advances in the same transaction as its work ([`advance_in`]): a process that lost
//! the lease (paused past its deadline) finds the update refused and rolls its work back, and
//! the next holder starts where the mark says. Times are the processes' clocks (Unix epoch
//! milliseconds); they are assumed to agree within a small fraction of the time-to-live.

use sqlx::{AnyPool, Row};

use super::StoreResult;

/// A lease this process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Until when, Unix epoch milliseconds.
    pub expires_at_ms: i64,
    /// The loop's progress, as it last recorded it (0 at first).
    pub mark_ms: i64,
}

pub struct Leases<'a> {
    pool: &'a AnyPool,
}

impl<'a> Leases<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Takes or renews lease `name` for `owner` until `now_ms + ttl_ms`, when it is new, has
    /// run out (`expires_at_ms < now_ms`) or is `owner`'s already; with `force`, whatever its
    /// state (a sole controller: no other process can be holding it). `Some` with the mark
    /// when `owner` holds it now, `None` when another process does.
    pub async fn claim(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
        force: bool,
    ) -> StoreResult<Option<Lease>> {
        let taken_over_before = if force { i64::MAX } else { now_ms };
        sqlx::query(
            "INSERT INTO leases (name, owner, expires_at_ms, mark_ms) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.owner = excluded.owner OR leases.expires_at_ms < $4",
        )
        .bind(name)
        .bind(owner)
        .bind(now_ms + ttl_ms)
        .bind(taken_over_before)
        .execute(self.pool)
        .await?;
        let row = sqlx::query("SELECT owner, expires_at_ms, mark_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool)
            .await?;
        let holder: String = row.try_get("owner")?;
        Ok((holder == owner).then(|| Lease {
            expires_at_ms: row.try_get("expires_at_ms").unwrap_or_default(),
            mark_ms: row.try_get("mark_ms").unwrap_or_default(),
        }))
    }

    /// Gives lease `name` up if `owner` holds it, so that another process may take it at once
    /// (at shutdown). The mark stays.
    pub async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        sqlx::query("UPDATE leases SET expires_at_ms = 0 WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(self.pool)
            .await?;
        Ok(())
    }
}

/// Inside the holder's transaction: advances lease `name`'s mark to at least `mark_ms` if
/// `owner` still holds it at `now_ms`. `false` when it does not: the caller must roll its
/// work back.
pub(super) async fn advance_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    owner: &str,
    now_ms: i64,
    mark_ms: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE leases SET mark_ms = CASE WHEN mark_ms < $1 THEN $1 ELSE mark_ms END \
         WHERE name = $2 AND owner = $3 AND expires_at_ms >= $4",
    )
    .bind(mark_ms)
    .bind(name)
    .bind(owner)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
