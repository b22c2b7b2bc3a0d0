//! Server functions for nodes and plans (the service checks who may do what).

// One argument per form field: plain HTML forms (no JavaScript) post flat fields.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;

use crate::model::*;

/// Plans, smallest first.
#[server(prefix = "/rpc", endpoint = "list_plans")]
pub async fn list_plans() -> Result<Vec<PlanView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .topology
        .list_plans(&ctx)
        .await
        .map_err(super::tag(&ctx))
}

/// Parses a decimal form field in display units into an integer count of base units, e.g.
/// "0.25" cores × 1000 = 250 millicores.
#[cfg(feature = "ssr")]
fn parse_scaled(field: &str, value: &str, scale: f64, unit: &str) -> Result<i64, ApiError> {
    let v: f64 = value.trim().parse().map_err(|_| {
        ApiError::invalid_field(
            field,
            "not_a_number",
            format!("'{value}' is not a number of {unit}."),
        )
    })?;
    if !v.is_finite() || v < 0.0 {
        return Err(ApiError::invalid_field(
            field,
            "not_a_number",
            format!("'{value}' is not a number of {unit}."),
        ));
    }
    // Rounded and clamped to the i64 range before the cast; validate_plan bounds it further.
    Ok((v * scale).round().min(9.0e18) as i64)
}

/// A plan from the form's display units: CPU cores, memory MiB, storage GiB.
#[cfg(feature = "ssr")]
fn plan_from_form(
    name: String,
    cpu_cores: &str,
    memory_mib: &str,
    storage_gib: &str,
) -> Result<PlanSpec, ApiError> {
    Ok(PlanSpec {
        name,
        cpu_millicores: parse_scaled("cpu_cores", cpu_cores, 1000.0, "cores")?,
        memory_bytes: parse_scaled("memory_mib", memory_mib, 1048576.0, "MiB")?,
        storage_bytes: parse_scaled("storage_gib", storage_gib, 1073741824.0, "GiB")?,
    })
}

/// The service names the API's fields; the form has its own, in display units.
#[cfg(feature = "ssr")]
fn form_field(mut e: ApiError) -> ApiError {
    e.field = e.field.map(|f| {
        match f.as_str() {
            "cpu_millicores" => "cpu_cores",
            "memory_bytes" => "memory_mib",
            "storage_bytes" => "storage_gib",
            other => other,
        }
        .to_owned()
    });
    e
}

/// Creates a plan from the form's display units: CPU cores, memory MiB, storage GiB.
#[server(prefix = "/rpc", endpoint = "create_plan")]
pub async fn create_plan(
    name: String,
    cpu_cores: String,
    memory_mib: String,
    storage_gib: String,
) -> Result<PlanView, ApiError> {
    let (services, ctx) = super::context()?;
    let spec =
        plan_from_form(name, &cpu_cores, &memory_mib, &storage_gib).map_err(super::tag(&ctx))?;
    services
        .topology
        .create_plan(&ctx, spec)
        .await
        .map_err(form_field)
        .map_err(super::tag(&ctx))
}

/// Replaces a plan's name and sizes, from the form's display units. Instances already placed
/// keep the resources they were started with until their next release.
#[server(prefix = "/rpc", endpoint = "edit_plan")]
pub async fn edit_plan(
    id: PlanId,
    name: String,
    cpu_cores: String,
    memory_mib: String,
    storage_gib: String,
) -> Result<PlanView, ApiError> {
    let (services, ctx) = super::context()?;
    let spec =
        plan_from_form(name, &cpu_cores, &memory_mib, &storage_gib).map_err(super::tag(&ctx))?;
    services
        .topology
        .update_plan(&ctx, &id, spec)
        .await
        .map_err(form_field)
        .map_err(super::tag(&ctx))
}

/// Nodes with their capacity and state.
#[server(prefix = "/rpc", endpoint = "list_nodes")]
pub async fn list_nodes() -> Result<Vec<NodeView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .topology
        .list_nodes(&ctx)
        .await
        .map_err(super::tag(&ctx))
}

/// Sets a node's state: `active`, `draining` or `down`.
#[server(prefix = "/rpc", endpoint = "set_node_state")]
pub async fn set_node_state(id: NodeId, state: String) -> Result<NodeView, ApiError> {
    let (services, ctx) = super::context()?;
    let state = NodeState::parse(&state)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "state",
                "invalid_state",
                format!("'{state}' is not a node state. Use active, draining or down."),
            )
        })
        .map_err(super::tag(&ctx))?;
    services
        .topology
        .set_node_state(&ctx, &id, state)
        .await
        .map_err(super::tag(&ctx))
}

/// Adds a Docker engine as a node (admins); the form's empty fields mean "none".
#[server(prefix = "/rpc", endpoint = "add_node")]
pub async fn connect_node(
    name: String,
    region: String,
    availability_zone: String,
    endpoint: String,
    max_instances: String,
    advertise_address: String,
    tls_ca_pem: String,
    tls_cert_pem: String,
    private_key_pem: String,
) -> Result<NodeView, ApiError> {
    let (services, ctx) = super::context()?;
    let optional = |v: String| Some(v).filter(|v| !v.trim().is_empty());
    let max_instances = match max_instances.trim() {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            ApiError::invalid_field(
                "max_instances",
                "not_a_number",
                format!("'{text}' is not a whole number of instances."),
            )
        })?),
    };
    let node = crate::model::AddNode {
        name,
        region,
        availability_zone,
        endpoint,
        max_instances,
        advertise_address: optional(advertise_address),
        tls_ca_pem: optional(tls_ca_pem),
        tls_cert_pem: optional(tls_cert_pem),
        private_key_pem: optional(private_key_pem),
    };
    services
        .topology
        .add_node(&ctx, node)
        .await
        .map_err(super::tag(&ctx))
}

/// Regions with their placement strategy (admins).
#[server(prefix = "/rpc", endpoint = "list_regions")]
pub async fn list_regions() -> Result<Vec<RegionView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .topology
        .list_regions(&ctx)
        .await
        .map_err(super::tag(&ctx))
}

/// Sets a region's placement strategy: `least-loaded`, `round-robin` or `resource-based`.
#[server(prefix = "/rpc", endpoint = "set_placement_strategy")]
pub async fn set_placement_strategy(
    region: String,
    strategy: String,
) -> Result<RegionView, ApiError> {
    let (services, ctx) = super::context()?;
    let parsed = PlacementStrategy::parse(&strategy)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "strategy",
                "invalid_strategy",
                format!(
                    "'{strategy}' is not a placement strategy. Use least-loaded, round-robin or resource-based."
                ),
            )
        })
        .map_err(super::tag(&ctx))?;
    services
        .topology
        .set_placement_strategy(&ctx, &region, parsed)
        .await
        .map_err(super::tag(&ctx))
}
