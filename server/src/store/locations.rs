//! `deployment_locations`: one row per instance, written before its container is created
//! (so a container with Berth's labels and no row is known to be an orphan) and kept in step
//! with what the engine reports. Node allocation counters are sums over these rows.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{now_ms, touched, StoreResult};

/// One instance and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocationRecord {
    pub id: String,
    pub deployment_id: String,
    pub release_id: String,
    pub node_id: String,
    pub slot: i64,
    pub container_name: String,
    pub container_id: Option<String>,
    /// `creating`, `running`, `exited`, `restarting`, `missing`, `stopped`.
    pub status: String,
    /// `starting`, `healthy`, `unhealthy`, `none`.
    pub health: String,
    /// Where the ingress and the health probes reach the instance: its address on the
    /// project network, or its node's advertise address when the node has one.
    pub ip_address: Option<String>,
    /// The TCP port at `ip_address`: the deployment's HTTP port, or the host port the engine
    /// published it on.
    pub port: Option<i64>,
    /// The plan's CPU (thousandths of a core) reserved on the node.
    pub cpu_millicores: i64,
    /// The plan's memory reserved on the node.
    pub memory_bytes: i64,
    pub restart_count: i64,
    pub last_exit_code: Option<i64>,
    pub last_error: String,
    pub started_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

/// What the engine says about an instance's container, written back by the rollout and the
/// reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedState {
    pub container_id: Option<String>,
    pub status: String,
    pub health: String,
    pub ip_address: Option<String>,
    /// The port at `ip_address` (see [`LocationRecord::port`]); `None` keeps the stored one.
    pub port: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub last_exit_code: Option<i64>,
    pub last_error: String,
}

/// Reserved resources on one node (the `node_metadata` counters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeAllocation {
    pub node_id: String,
    pub instances: i64,
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
}

const COLUMNS: &str = "id, deployment_id, release_id, node_id, slot, container_name, \
     container_id, status, health, ip_address, port, cpu_millicores, memory_bytes, \
     restart_count, last_exit_code, last_error, started_at_ms, updated_at_ms";

fn from_row(row: &AnyRow) -> Result<LocationRecord, sqlx::Error> {
    Ok(LocationRecord {
        id: row.try_get("id")?,
        deployment_id: row.try_get("deployment_id")?,
        release_id: row.try_get("release_id")?,
        node_id: row.try_get("node_id")?,
        slot: row.try_get("slot")?,
        container_name: row.try_get("container_name")?,
        container_id: row.try_get("container_id")?,
        status: row.try_get("status")?,
        health: row.try_get("health")?,
        ip_address: row.try_get("ip_address")?,
        port: row.try_get("port")?,
        cpu_millicores: row.try_get("cpu_millicores")?,
        memory_bytes: row.try_get("memory_bytes")?,
        restart_count: row.try_get("restart_count")?,
        last_exit_code: row.try_get("last_exit_code")?,
        last_error: row.try_get("last_error")?,
        started_at_ms: row.try_get("started_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Reads and writes instance locations.
pub struct Locations<'a> {
    pool: &'a AnyPool,
}

impl<'a> Locations<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Inserts the row for a new instance (status `creating`), or returns the existing row for
    /// the same release and slot (a job that runs again after a crash finds its own rows).
    ///
    /// # Errors
    /// `Database`.
    pub async fn insert_or_get(&self, new: &LocationRecord) -> StoreResult<LocationRecord> {
        if let Some(existing) = self.by_release_slot(&new.release_id, new.slot).await? {
            return Ok(existing);
        }
        sqlx::query(&format!(
            "INSERT INTO deployment_locations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(&new.id)
        .bind(&new.deployment_id)
        .bind(&new.release_id)
        .bind(&new.node_id)
        .bind(new.slot)
        .bind(&new.container_name)
        .bind(&new.container_id)
        .bind(&new.status)
        .bind(&new.health)
        .bind(&new.ip_address)
        .bind(new.port)
        .bind(new.cpu_millicores)
        .bind(new.memory_bytes)
        .bind(new.restart_count)
        .bind(new.last_exit_code)
        .bind(&new.last_error)
        .bind(new.started_at_ms)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(new.clone())
    }

    pub async fn by_id(&self, id: &str) -> StoreResult<Option<LocationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployment_locations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    async fn by_release_slot(
        &self,
        release_id: &str,
        slot: i64,
    ) -> StoreResult<Option<LocationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployment_locations WHERE release_id = $1 AND slot = $2"
        ))
        .bind(release_id)
        .bind(slot)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// A deployment's instances, by release number then slot.
    pub async fn for_deployment(&self, deployment_id: &str) -> StoreResult<Vec<LocationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployment_locations WHERE deployment_id = $1 \
             ORDER BY release_id, slot"
        ))
        .bind(deployment_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// `(rows, newest updated_at_ms)` of all instances: changes when a row is added, removed
    /// or written (every write here sets `updated_at_ms` to now), unless two writes share a
    /// millisecond around the read. One aggregate, no row decoded: the streamer's check
    /// before it lists every instance again.
    pub async fn fingerprint(&self) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(updated_at_ms), 0) AS newest \
             FROM deployment_locations",
        )
        .fetch_one(self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("newest")?))
    }

    /// Every instance (the reconciler's resync).
    pub async fn all(&self) -> StoreResult<Vec<LocationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployment_locations ORDER BY deployment_id, slot"
        ))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Writes what the engine reported.
    pub async fn record(&self, id: &str, seen: &ObservedState) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployment_locations SET container_id = COALESCE($1, container_id), \
                 status = $2, health = $3, ip_address = COALESCE($4, ip_address), \
                 started_at_ms = COALESCE($5, started_at_ms), \
                 last_exit_code = COALESCE($6, last_exit_code), last_error = $7, \
                 updated_at_ms = $8, port = COALESCE($10, port) WHERE id = $9",
            )
            .bind(&seen.container_id)
            .bind(&seen.status)
            .bind(&seen.health)
            .bind(&seen.ip_address)
            .bind(seen.started_at_ms)
            .bind(seen.last_exit_code)
            .bind(&seen.last_error)
            .bind(now_ms())
            .bind(id)
            .bind(seen.port)
            .execute(self.pool)
            .await?,
        )
    }

    /// Records a running container and where it is reached (`None` keeps the stored
    /// address or port), without touching the health, which the probes own.
    pub async fn mark_running(
        &self,
        id: &str,
        container_id: &str,
        ip: Option<&str>,
        port: Option<i64>,
    ) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployment_locations SET container_id = $1, status = 'running', \
                 ip_address = COALESCE($2, ip_address), port = COALESCE($5, port), \
                 updated_at_ms = $3 WHERE id = $4",
            )
            .bind(container_id)
            .bind(ip)
            .bind(now_ms())
            .bind(id)
            .bind(port)
            .execute(self.pool)
            .await?,
        )
    }

    /// Sets the health only.
    pub async fn set_health(&self, id: &str, health: &str, last_error: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployment_locations SET health = $1, last_error = $2, updated_at_ms = $3 \
                 WHERE id = $4",
            )
            .bind(health)
            .bind(last_error)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Counts one more restart of the instance.
    pub async fn count_restart(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployment_locations SET restart_count = restart_count + 1, \
                 updated_at_ms = $1 WHERE id = $2",
            )
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    /// Forgets the container (after it was removed to be recreated).
    pub async fn clear_container(&self, id: &str, status: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE deployment_locations SET container_id = NULL, ip_address = NULL, \
                 status = $1, health = 'none', updated_at_ms = $2 WHERE id = $3",
            )
            .bind(status)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool)
            .await?,
        )
    }

    pub async fn delete(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM deployment_locations WHERE id = $1")
            .bind(id)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Instances and reserved CPU/memory per node, for placement and the admin console.
    pub async fn allocations(&self) -> StoreResult<Vec<NodeAllocation>> {
        let rows = sqlx::query(
            "SELECT node_id, COUNT(*) AS instances, CAST(SUM(cpu_millicores) AS BIGINT) AS cpu, \
             CAST(SUM(memory_bytes) AS BIGINT) AS memory FROM deployment_locations \
             GROUP BY node_id",
        )
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeAllocation {
                    node_id: r.try_get("node_id")?,
                    instances: r.try_get("instances")?,
                    cpu_millicores: r.try_get::<Option<i64>, _>("cpu")?.unwrap_or(0),
                    memory_bytes: r.try_get::<Option<i64>, _>("memory")?.unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
