//! `TopologyService`: nodes and plans.

use app::{
    model::*,
    services::{RequestContext, TopologyService},
};
use async_trait::async_trait;
use serde_json::json;

use super::{audit, internal};
use crate::store::{NodeRecord, PlanRecord, Store, StoreError};

/// The topology service.
pub struct TopologyConsole {
    store: Store,
}

impl TopologyConsole {
    pub fn new(store: Store) -> Self {
        Self { store }
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
        instances: 0,
        cpu_allocated_millicores: 0,
        memory_allocated_bytes: 0,
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
}
