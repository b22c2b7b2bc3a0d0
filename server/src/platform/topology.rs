//! `TopologyService`: nodes and plans.

use app::{
    model::*,
    services::{RequestContext, TopologyService},
};
use async_trait::async_trait;
use serde_json::json;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use super::{
    audit, internal,
    node_checks::{checked_advertise_address, checked_node, given},
};
use crate::{
    metrics::MetricsHub,
    orchestrator::{topology::PlainCredentials, Orchestrator},
    runtime::RuntimeError,
    store::{
        now_ms, LocationRecord, NewNode, NodeCapacity, NodeCredentials, NodeRecord, PlanRecord,
        Store, StoreError,
    },
};

/// Most instances on an added node unless the admin says otherwise.
const DEFAULT_MAX_INSTANCES: i64 = 100;

/// The topology service.
pub struct TopologyConsole {
    store: Store,
    orchestrator: Arc<Orchestrator>,
    /// The live cache, for what each node's instances use now (`None`: this process does not
    /// run the `metrics` role).
    live_metrics: Option<Arc<MetricsHub>>,
}

impl TopologyConsole {
    pub fn new(store: Store, orchestrator: Arc<Orchestrator>) -> Self {
        Self {
            store,
            orchestrator,
            live_metrics: None,
        }
    }

    /// Lets the node list show used CPU and memory from this process's live cache.
    pub fn with_live_metrics(mut self, hub: Option<Arc<MetricsHub>>) -> Self {
        self.live_metrics = hub;
        self
    }

    /// `(CPU millicores, memory bytes)` used right now per node id: the instances' newest
    /// samples that are at most [`DeploymentNow::FRESH_MS`] old, placed on nodes by
    /// `locations`. `None` without a live cache.
    fn used_by_node(&self, locations: &[LocationRecord]) -> Option<HashMap<String, (i64, i64)>> {
        let hub = self.live_metrics.as_ref()?;
        let node_of: HashMap<&str, &str> = locations
            .iter()
            .map(|l| (l.id.as_str(), l.node_id.as_str()))
            .collect();
        let now = now_ms();
        let mut used: HashMap<String, (i64, i64)> = HashMap::new();
        for s in hub.newest() {
            if now - s.at_ms > DeploymentNow::FRESH_MS {
                continue;
            }
            if let Some(node) = node_of.get(s.instance_id.0.as_str()) {
                let entry = used.entry((*node).to_owned()).or_default();
                // cpu_percent is in percent of one core: 100 % = 1000 millicores.
                entry.0 += (s.cpu_percent * 10.0).round() as i64;
                entry.1 += i64::try_from(s.memory_bytes).unwrap_or(i64::MAX);
            }
        }
        Some(used)
    }
}

impl TopologyConsole {
    /// Per node id: the deployments with instances there (from `locations`), by project and
    /// deployment name.
    async fn workloads(
        &self,
        locations: &[LocationRecord],
    ) -> Result<BTreeMap<String, Vec<NodeWorkload>>, ApiError> {
        let store = &self.store;
        let projects: BTreeMap<String, String> = store
            .projects()
            .list_all()
            .await
            .map_err(internal("list projects"))?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        let deployments: BTreeMap<String, (String, String)> = store
            .deployments()
            .all()
            .await
            .map_err(internal("list deployments"))?
            .into_iter()
            .map(|d| {
                let project = projects.get(&d.project_id).cloned().unwrap_or_default();
                (d.id, (project, d.name))
            })
            .collect();
        let mut counts: BTreeMap<(String, (String, String), String), i64> = BTreeMap::new();
        for loc in locations {
            if let Some(names) = deployments.get(&loc.deployment_id) {
                *counts
                    .entry((
                        loc.node_id.clone(),
                        names.clone(),
                        loc.deployment_id.clone(),
                    ))
                    .or_default() += 1;
            }
        }
        let mut out: BTreeMap<String, Vec<NodeWorkload>> = BTreeMap::new();
        for ((node, (project_name, deployment_name), id), instances) in counts {
            out.entry(node).or_default().push(NodeWorkload {
                deployment_id: DeploymentId(id),
                project_name,
                deployment_name,
                instances,
            });
        }
        Ok(out)
    }
}

fn node_view(n: NodeRecord) -> NodeView {
    NodeView {
        id: NodeId(n.id),
        name: n.name,
        region: n.region,
        availability_zone: n.availability_zone,
        endpoint: n.endpoint,
        cpu_millicores: n.cpu_millicores,
        memory_bytes: n.memory_bytes,
        max_instances: n.max_instances,
        state: NodeState::parse(&n.state).unwrap_or(NodeState::Down),
        engine_version: n.engine_version,
        last_seen_at_ms: n.last_seen_at_ms,
        last_error: n.last_error,
        has_credentials: n.credentials.private_key_enc.is_some(),
        advertise_address: n.advertise_address,
        instances: 0,
        cpu_allocated_millicores: 0,
        memory_allocated_bytes: 0,
        cpu_used_millicores: None,
        memory_used_bytes: None,
        workloads: Vec::new(),
    }
}

fn plan_view(p: PlanRecord) -> PlanView {
    PlanView {
        id: PlanId(p.id),
        name: p.name,
        cpu_millicores: p.cpu_millicores,
        memory_bytes: p.memory_bytes,
        storage_bytes: p.storage_bytes,
    }
}

/// Trims the name and validates the sizes; the record carries `id` (empty for a new plan).
fn checked_plan(id: String, spec: PlanSpec) -> Result<PlanRecord, ApiError> {
    let spec = PlanSpec {
        name: spec.name.trim().to_owned(),
        ..spec
    };
    validate_plan(&spec)?;
    Ok(PlanRecord {
        id,
        name: spec.name,
        cpu_millicores: spec.cpu_millicores,
        memory_bytes: spec.memory_bytes,
        storage_bytes: spec.storage_bytes,
    })
}

/// The audit detail of a plan change: its name and sizes.
fn plan_detail(p: &PlanRecord) -> serde_json::Value {
    json!({"name": p.name, "cpu_millicores": p.cpu_millicores, "memory_bytes": p.memory_bytes, "storage_bytes": p.storage_bytes})
}

fn node_not_found() -> ApiError {
    ApiError::not_found("node_not_found", "No node with this id.")
}

fn plan_name_taken(name: &str) -> ApiError {
    ApiError::conflict_field(
        "name",
        "name_taken",
        format!("A plan named '{name}' exists already."),
    )
}

#[async_trait]
impl TopologyService for TopologyConsole {
    async fn list_plans(&self, ctx: &RequestContext) -> Result<Vec<PlanView>, ApiError> {
        ctx.user()?;
        let plans = self
            .store
            .topology()
            .plans()
            .await
            .map_err(internal("list plans"))?;
        Ok(plans.into_iter().map(plan_view).collect())
    }

    async fn create_plan(
        &self,
        ctx: &RequestContext,
        spec: PlanSpec,
    ) -> Result<PlanView, ApiError> {
        ctx.admin()?;
        let record = checked_plan(String::new(), spec)?;
        let plan = match self.store.topology().create_plan(&record).await {
            Ok(p) => p,
            Err(StoreError::Conflict(_)) => return Err(plan_name_taken(&record.name)),
            Err(e) => return Err(internal("create plan")(e)),
        };
        audit(
            &self.store,
            ctx,
            None,
            "plan.create",
            format!("plan:{}", plan.id),
            plan_detail(&plan),
        )
        .await?;
        Ok(plan_view(plan))
    }

    async fn update_plan(
        &self,
        ctx: &RequestContext,
        id: &PlanId,
        spec: PlanSpec,
    ) -> Result<PlanView, ApiError> {
        ctx.admin()?;
        let record = checked_plan(id.0.clone(), spec)?;
        match self.store.topology().update_plan(&record).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::not_found(
                    "plan_not_found",
                    "No plan with this id.",
                ))
            }
            Err(StoreError::Conflict(_)) => return Err(plan_name_taken(&record.name)),
            Err(e) => return Err(internal("update plan")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "plan.update",
            format!("plan:{id}"),
            plan_detail(&record),
        )
        .await?;
        Ok(plan_view(record))
    }

    async fn list_nodes(&self, ctx: &RequestContext) -> Result<Vec<NodeView>, ApiError> {
        ctx.admin()?;
        let nodes = self
            .store
            .topology()
            .nodes()
            .await
            .map_err(internal("list nodes"))?;
        let allocations = self
            .store
            .locations()
            .allocations()
            .await
            .map_err(internal("node allocations"))?;
        // One read of the instances serves the workloads and the use now.
        let locations = self
            .store
            .locations()
            .all()
            .await
            .map_err(internal("list instances"))?;
        let workloads = self.workloads(&locations).await?;
        let used = self.used_by_node(&locations);
        Ok(nodes
            .into_iter()
            .map(|n| {
                let a = allocations
                    .iter()
                    .find(|a| a.node_id == n.id)
                    .cloned()
                    .unwrap_or_default();
                NodeView {
                    instances: a.instances,
                    cpu_allocated_millicores: a.cpu_millicores,
                    memory_allocated_bytes: a.memory_bytes,
                    cpu_used_millicores: used.as_ref().map(|u| u.get(&n.id).map_or(0, |x| x.0)),
                    memory_used_bytes: used.as_ref().map(|u| u.get(&n.id).map_or(0, |x| x.1)),
                    workloads: workloads.get(&n.id).cloned().unwrap_or_default(),
                    ..node_view(n)
                }
            })
            .collect())
    }

    async fn list_regions(&self, ctx: &RequestContext) -> Result<Vec<RegionView>, ApiError> {
        ctx.admin()?;
        let regions = self
            .store
            .topology()
            .region_strategies()
            .await
            .map_err(internal("list regions"))?;
        Ok(regions
            .into_iter()
            .map(|(name, strategy)| RegionView {
                name,
                placement_strategy: PlacementStrategy::parse(&strategy)
                    .unwrap_or(PlacementStrategy::LeastLoaded),
            })
            .collect())
    }

    async fn set_placement_strategy(
        &self,
        ctx: &RequestContext,
        name: &str,
        strategy: PlacementStrategy,
    ) -> Result<RegionView, ApiError> {
        ctx.admin()?;
        match self
            .store
            .topology()
            .set_region_strategy(name, strategy.as_str())
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::not_found(
                    "region_not_found",
                    format!("There is no region named '{name}'."),
                ))
            }
            Err(e) => return Err(internal("set placement strategy")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "region.set_placement_strategy",
            format!("region:{name}"),
            json!({"placement_strategy": strategy.as_str()}),
        )
        .await?;
        Ok(RegionView {
            name: name.to_owned(),
            placement_strategy: strategy,
        })
    }

    async fn set_node_state(
        &self,
        ctx: &RequestContext,
        id: &NodeId,
        state: NodeState,
    ) -> Result<NodeView, ApiError> {
        ctx.admin()?;
        match self
            .store
            .topology()
            .set_node_state(&id.0, state.as_str())
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(node_not_found()),
            Err(e) => return Err(internal("set node state")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "node.set_state",
            format!("node:{id}"),
            json!({"state": state.as_str()}),
        )
        .await?;
        self.store
            .topology()
            .node_by_id(&id.0)
            .await
            .map_err(internal("load node"))?
            .map(node_view)
            .ok_or_else(node_not_found)
    }

    async fn add_node(&self, ctx: &RequestContext, node: AddNode) -> Result<NodeView, ApiError> {
        ctx.admin()?;
        checked_node(&node)?;
        let name = node.name.trim();
        let endpoint = node.endpoint.trim();
        // Stored in canonical form (`::1`, not `0:0::1`), as the engine reports bindings.
        let advertise_address = given(&node.advertise_address)
            .map(checked_advertise_address)
            .transpose()?
            .map(|ip| ip.to_string());
        let taken = || {
            ApiError::conflict_field(
                "name",
                "name_taken",
                format!("There is already a node named '{name}'."),
            )
        };
        if self
            .store
            .topology()
            .node_by_name(name)
            .await
            .map_err(internal("load node"))?
            .is_some()
        {
            return Err(taken());
        }
        let plain = PlainCredentials {
            tls_ca_pem: given(&node.tls_ca_pem),
            tls_cert_pem: given(&node.tls_cert_pem),
            private_key_pem: given(&node.private_key_pem),
        };
        let info = self
            .orchestrator
            .probe_engine(endpoint, plain)
            .await
            .map_err(|e| {
                let message = match e {
                    RuntimeError::UnsupportedEndpoint(m) => m,
                    other => format!("Berth could not connect to {endpoint}: {other}"),
                };
                ApiError {
                    field: Some("endpoint".into()),
                    ..ApiError::new(422, "engine_unreachable", message)
                }
            })?;
        let zone = self
            .store
            .topology()
            .ensure_zone(node.region.trim(), node.availability_zone.trim())
            .await
            .map_err(internal("ensure zone"))?;
        let credentials = NodeCredentials {
            tls_ca_pem: plain.tls_ca_pem.map(str::to_owned),
            tls_cert_pem: plain.tls_cert_pem.map(str::to_owned),
            private_key_enc: plain
                .private_key_pem
                .map(|k| self.orchestrator.secrets.seal(k)),
        };
        let record = match self
            .store
            .topology()
            .add_node(&NewNode {
                name,
                zone_id: &zone,
                endpoint,
                capacity: &NodeCapacity {
                    cpu_millicores: info.cpus * 1000,
                    memory_bytes: info.memory_bytes,
                    engine_version: info.version,
                },
                max_instances: node.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES),
                credentials: &credentials,
                advertise_address: advertise_address.as_deref(),
            })
            .await
        {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => return Err(taken()),
            Err(e) => return Err(internal("add node")(e)),
        };
        if let Err(e) = self.orchestrator.connect_node(&record).await {
            // It answered a moment ago; the reconciler retries on its next pass.
            tracing::warn!(node.name = %record.name, error = %e, "added node not connected yet");
        }
        audit(
            &self.store,
            ctx,
            None,
            "node.add",
            format!("node:{}", record.id),
            json!({"name": name, "endpoint": endpoint, "region": record.region,
                   "availability_zone": record.availability_zone,
                   "advertise_address": record.advertise_address}),
        )
        .await?;
        Ok(node_view(record))
    }
}
