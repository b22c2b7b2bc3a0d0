//! The topology repository: regions, availability zones, nodes and plans.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, touched, StoreError, StoreResult};

/// A node with its place in the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: String,
    pub name: String,
    pub region: String,
    pub availability_zone: String,
    /// `unix:///…`, `tcp://host:port` or `ssh://user@host`.
    pub endpoint: String,
    /// Thousandths of a CPU core.
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
    pub max_instances: i64,
    /// `active`, `draining` or `down`.
    pub state: String,
    pub engine_version: Option<String>,
    pub last_seen_at_ms: Option<i64>,
    /// Why the last contact failed; `None` after a successful one.
    pub last_error: Option<String>,
    /// The credentials Berth presents to a remote engine.
    pub credentials: NodeCredentials,
    /// The IP address the ingress reaches the node's published ports at; `None`: instances
    /// are reached at their bridge address (a node on the ingress's own host).
    pub advertise_address: Option<String>,
}

/// What Berth presents to a remote engine, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCredentials {
    /// PEM of the CA that signed the engine's certificate (`tcp://`).
    pub tls_ca_pem: Option<String>,
    /// PEM of Berth's client certificate (`tcp://`).
    pub tls_cert_pem: Option<String>,
    /// The TLS client key or SSH identity, encrypted (`enc:v1:…`).
    pub private_key_enc: Option<String>,
}

/// A node to add.
#[derive(Debug, Clone)]
pub struct NewNode<'a> {
    pub name: &'a str,
    pub zone_id: &'a str,
    pub endpoint: &'a str,
    pub capacity: &'a NodeCapacity,
    pub max_instances: i64,
    pub credentials: &'a NodeCredentials,
    pub advertise_address: Option<&'a str>,
}

/// A plan (resource package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub id: String,
    pub name: String,
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
    pub storage_bytes: i64,
}

/// Capacity read from an engine when a node registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
    pub engine_version: String,
}

const NODE_SELECT: &str = "SELECT n.id, n.name, r.name AS region, z.name AS availability_zone, \
     n.endpoint, n.cpu_millicores, n.memory_bytes, n.max_instances, n.state, n.engine_version, \
     n.last_seen_at_ms, n.last_error, n.tls_ca_pem, n.tls_cert_pem, n.private_key_enc, \
     n.advertise_address \
     FROM nodes n JOIN availability_zones z ON z.id = n.availability_zone_id \
     JOIN regions r ON r.id = z.region_id";

fn node_from_row(row: &AnyRow) -> Result<NodeRecord, sqlx::Error> {
    Ok(NodeRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        availability_zone: row.try_get("availability_zone")?,
        endpoint: row.try_get("endpoint")?,
        cpu_millicores: row.try_get("cpu_millicores")?,
        memory_bytes: row.try_get("memory_bytes")?,
        max_instances: row.try_get("max_instances")?,
        state: row.try_get("state")?,
        engine_version: row.try_get("engine_version")?,
        last_seen_at_ms: row.try_get("last_seen_at_ms")?,
        last_error: row.try_get("last_error")?,
        credentials: NodeCredentials {
            tls_ca_pem: row.try_get("tls_ca_pem")?,
            tls_cert_pem: row.try_get("tls_cert_pem")?,
            private_key_enc: row.try_get("private_key_enc")?,
        },
        advertise_address: row.try_get("advertise_address")?,
    })
}

fn plan_from_row(row: &AnyRow) -> Result<PlanRecord, sqlx::Error> {
    Ok(PlanRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        cpu_millicores: row.try_get("cpu_millicores")?,
        memory_bytes: row.try_get("memory_bytes")?,
        storage_bytes: row.try_get("storage_bytes")?,
    })
}

/// Reads and writes the topology and plans.
pub struct Topology<'a> {
    pool: &'a AnyPool,
}

impl<'a> Topology<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// The id of availability zone `zone` in region `region`, creating both if missing.
    pub async fn ensure_zone(&self, region: &str, zone: &str) -> StoreResult<String> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO regions (id, name, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(new_id())
        .bind(region)
        .bind(now)
        .execute(self.pool)
        .await?;
        let region_id: String = sqlx::query_scalar("SELECT id FROM regions WHERE name = $1")
            .bind(region)
            .fetch_one(self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO availability_zones (id, region_id, name, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (region_id, name) DO NOTHING",
        )
        .bind(new_id())
        .bind(&region_id)
        .bind(zone)
        .bind(now)
        .execute(self.pool)
        .await?;
        Ok(sqlx::query_scalar(
            "SELECT id FROM availability_zones WHERE region_id = $1 AND name = $2",
        )
        .bind(&region_id)
        .bind(zone)
        .fetch_one(self.pool)
        .await?)
    }

    /// Registers node `name` in the zone, or refreshes its endpoint, capacity and engine
    /// version if it exists. An existing node's state is kept (a drain survives restarts),
    /// except that a node marked `down` becomes `active` again now that it answered.
    pub async fn register_node(
        &self,
        name: &str,
        zone_id: &str,
        endpoint: &str,
        capacity: &NodeCapacity,
        max_instances: i64,
    ) -> StoreResult<NodeRecord> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO nodes (id, name, availability_zone_id, endpoint, cpu_millicores, \
             memory_bytes, max_instances, state, engine_version, last_seen_at_ms, created_at_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9, $9) \
             ON CONFLICT (name) DO UPDATE SET endpoint = excluded.endpoint, \
             cpu_millicores = excluded.cpu_millicores, memory_bytes = excluded.memory_bytes, \
             engine_version = excluded.engine_version, last_seen_at_ms = excluded.last_seen_at_ms, \
             updated_at_ms = excluded.updated_at_ms, \
             state = CASE WHEN nodes.state = 'down' THEN 'active' ELSE nodes.state END",
        )
        .bind(new_id())
        .bind(name)
        .bind(zone_id)
        .bind(endpoint)
        .bind(capacity.cpu_millicores)
        .bind(capacity.memory_bytes)
        .bind(max_instances)
        .bind(&capacity.engine_version)
        .bind(now)
        .execute(self.pool)
        .await?;
        self.node_by_name(name).await?.ok_or(StoreError::NotFound)
    }

    /// Adds a node in state `active`, seen now.
    ///
    /// # Errors
    /// `Conflict` when the name is taken.
    pub async fn add_node(&self, node: &NewNode<'_>) -> StoreResult<NodeRecord> {
        let now = now_ms();
        let id = new_id();
        sqlx::query(
            "INSERT INTO nodes (id, name, availability_zone_id, endpoint, cpu_millicores, \
             memory_bytes, max_instances, state, engine_version, last_seen_at_ms, created_at_ms, \
             updated_at_ms, tls_ca_pem, tls_cert_pem, private_key_enc, advertise_address) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(node.name)
        .bind(node.zone_id)
        .bind(node.endpoint)
        .bind(node.capacity.cpu_millicores)
        .bind(node.capacity.memory_bytes)
        .bind(node.max_instances)
        .bind(&node.capacity.engine_version)
        .bind(now)
        .bind(&node.credentials.tls_ca_pem)
        .bind(&node.credentials.tls_cert_pem)
        .bind(&node.credentials.private_key_enc)
        .bind(node.advertise_address)
        .execute(self.pool)
        .await?;
        self.node_by_id(&id).await?.ok_or(StoreError::NotFound)
    }

    /// Records the outcome of a contact with node `id`: `Ok` sets `last_seen_at_ms` to now and
    /// clears `last_error`; `Err(reason)` keeps `last_seen_at_ms` and stores the reason.
    pub async fn record_contact(&self, id: &str, outcome: Result<(), &str>) -> StoreResult<()> {
        match outcome {
            Ok(()) => {
                sqlx::query(
                    "UPDATE nodes SET last_seen_at_ms = $1, last_error = NULL WHERE id = $2",
                )
                .bind(now_ms())
                .bind(id)
                .execute(self.pool)
                .await?;
            }
            Err(reason) => {
                sqlx::query("UPDATE nodes SET last_error = $1 WHERE id = $2")
                    .bind(reason)
                    .bind(id)
                    .execute(self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The node called `name`, if any.
    pub async fn node_by_name(&self, name: &str) -> StoreResult<Option<NodeRecord>> {
        let row = sqlx::query(&format!("{NODE_SELECT} WHERE n.name = $1"))
            .bind(name)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(node_from_row).transpose()?)
    }

    /// The node with this id, if any.
    pub async fn node_by_id(&self, id: &str) -> StoreResult<Option<NodeRecord>> {
        let row = sqlx::query(&format!("{NODE_SELECT} WHERE n.id = $1"))
            .bind(id)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(node_from_row).transpose()?)
    }

    /// Every node, by region, zone and name.
    pub async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        let rows = sqlx::query(&format!("{NODE_SELECT} ORDER BY r.name, z.name, n.name"))
            .fetch_all(self.pool)
            .await?;
        Ok(rows.iter().map(node_from_row).collect::<Result<_, _>>()?)
    }

    /// Sets a node's state (`active`, `draining`, `down`).
    ///
    /// # Errors
    /// `NotFound` for an unknown node.
    pub async fn set_node_state(&self, id: &str, state: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE nodes SET state = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(state)
                .bind(now_ms())
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }

    /// Every plan, smallest first.
    pub async fn plans(&self) -> StoreResult<Vec<PlanRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, cpu_millicores, memory_bytes, storage_bytes FROM plans \
             ORDER BY cpu_millicores, memory_bytes, name",
        )
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(plan_from_row).collect::<Result<_, _>>()?)
    }

    /// Creates a plan.
    ///
    /// # Errors
    /// `Conflict` when the name is taken.
    pub async fn create_plan(&self, plan: &PlanRecord) -> StoreResult<PlanRecord> {
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO plans (id, name, cpu_millicores, memory_bytes, storage_bytes, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(&plan.name)
        .bind(plan.cpu_millicores)
        .bind(plan.memory_bytes)
        .bind(plan.storage_bytes)
        .bind(now)
        .execute(self.pool)
        .await?;
        Ok(PlanRecord { id, ..plan.clone() })
    }

    /// Replaces a plan's name and sizes (`plan.id` names it).
    ///
    /// # Errors
    /// `NotFound` for an unknown plan, `Conflict` when the new name is taken.
    pub async fn update_plan(&self, plan: &PlanRecord) -> StoreResult<()> {
        touched(
            sqlx::query(
                "UPDATE plans SET name = $1, cpu_millicores = $2, memory_bytes = $3, \
                 storage_bytes = $4, updated_at_ms = $5 WHERE id = $6",
            )
            .bind(&plan.name)
            .bind(plan.cpu_millicores)
            .bind(plan.memory_bytes)
            .bind(plan.storage_bytes)
            .bind(now_ms())
            .bind(&plan.id)
            .execute(self.pool)
            .await?,
        )
    }

    /// One plan.
    pub async fn plan_by_id(&self, id: &str) -> StoreResult<Option<PlanRecord>> {
        let row = sqlx::query(
            "SELECT id, name, cpu_millicores, memory_bytes, storage_bytes FROM plans WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(plan_from_row).transpose()?)
    }

    /// Each region's name and placement strategy.
    pub async fn region_strategies(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, placement_strategy FROM regions ORDER BY name")
            .fetch_all(self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("placement_strategy")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Sets a region's placement strategy (`least-loaded`, `round-robin`, `resource-based`).
    ///
    /// # Errors
    /// `NotFound` for an unknown region.
    pub async fn set_region_strategy(&self, region: &str, strategy: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE regions SET placement_strategy = $1 WHERE name = $2")
                .bind(strategy)
                .bind(region)
                .execute(self.pool)
                .await?,
        )
    }
}
