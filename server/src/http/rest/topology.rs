//! `/api/v1/plans`, `/api/v1/nodes`, `/api/v1/regions`.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Extension, Json,
};

use super::{fail, ApiJson, RestResult};
use crate::http::AppState;

/// Plans (every signed-in user may list them).
#[utoipa::path(get, path = "/api/v1/plans", tag = "topology",
    responses((status = 200, body = [PlanView]), (status = 401, body = ErrorEnvelope)))]
pub async fn list_plans(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<PlanView>>> {
    state
        .services
        .topology
        .list_plans(&ctx)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Creates a plan (admins).
#[utoipa::path(post, path = "/api/v1/plans", tag = "topology", request_body = PlanSpec,
    responses((status = 201, body = PlanView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_plan(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    ApiJson(spec): ApiJson<PlanSpec>,
) -> RestResult<(StatusCode, Json<PlanView>)> {
    let plan = state
        .services
        .topology
        .create_plan(&ctx, spec)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(plan)))
}

/// Replaces a plan's name and sizes (admins).
#[utoipa::path(put, path = "/api/v1/plans/{id}", tag = "topology", request_body = PlanSpec,
    params(("id" = String, Path, description = "plan id")),
    responses((status = 200, body = PlanView), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_plan(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<PlanSpec>,
) -> RestResult<Json<PlanView>> {
    state
        .services
        .topology
        .update_plan(&ctx, &PlanId(id), spec)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Nodes with region, zone, capacity and state (admins).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "topology",
    responses((status = 200, body = [NodeView]), (status = 403, body = ErrorEnvelope)))]
pub async fn list_nodes(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<NodeView>>> {
    state
        .services
        .topology
        .list_nodes(&ctx)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Connects to a Docker engine and adds it as a node (admins). Nothing is stored when the
/// engine cannot be reached (422 `engine_unreachable`, naming the cause).
#[utoipa::path(post, path = "/api/v1/nodes", tag = "topology", request_body = AddNode,
    responses((status = 201, body = NodeView), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub async fn add_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    ApiJson(node): ApiJson<AddNode>,
) -> RestResult<(StatusCode, Json<NodeView>)> {
    let node = state
        .services
        .topology
        .add_node(&ctx, node)
        .await
        .map_err(fail(&ctx))?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// Drains, re-activates or marks a node down (admins).
#[utoipa::path(put, path = "/api/v1/nodes/{id}/state", tag = "topology", request_body = SetNodeState,
    params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = NodeView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn set_node_state(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetNodeState>,
) -> RestResult<Json<NodeView>> {
    state
        .services
        .topology
        .set_node_state(&ctx, &NodeId(id), req.state)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Regions with their placement strategy (admins).
#[utoipa::path(get, path = "/api/v1/regions", tag = "topology",
    responses((status = 200, body = [RegionView]), (status = 403, body = ErrorEnvelope)))]
pub async fn list_regions(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> RestResult<Json<Vec<RegionView>>> {
    state
        .services
        .topology
        .list_regions(&ctx)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// Sets a region's placement strategy: `least-loaded`, `round-robin` or `resource-based`
/// (admins).
#[utoipa::path(put, path = "/api/v1/regions/{name}/placement-strategy", tag = "topology",
    request_body = SetPlacementStrategy,
    params(("name" = String, Path, description = "region name")),
    responses((status = 200, body = RegionView), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn set_placement_strategy(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetPlacementStrategy>,
) -> RestResult<Json<RegionView>> {
    state
        .services
        .topology
        .set_placement_strategy(&ctx, &name, req.placement_strategy)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}
