//! Path routes, behind [`DeploymentService`](app::services::DeploymentService): a deployment
//! served under a path prefix of a custom domain of its project (`shop.example.com/api`).
//! The ingress picks the longest matching prefix (see `ingress::routes`).

use app::{model::*, services::RequestContext};
use serde_json::json;

use super::{audit, deployments::DeploymentsService, internal};
use crate::store::{PathRouteRecord, StoreError};

fn view(p: PathRouteRecord) -> PathRouteView {
    PathRouteView {
        id: PathRouteId(p.id),
        deployment_id: DeploymentId(p.deployment_id),
        domain_id: DomainId(p.domain_id),
        hostname: p.hostname,
        path_prefix: p.path_prefix,
        strip_prefix: p.strip_prefix,
        routed: p.domain_verified,
    }
}

fn route_not_found() -> ApiError {
    ApiError::not_found(
        "path_route_not_found",
        "No path route with this id is visible to you.",
    )
}

impl DeploymentsService {
    pub(super) async fn path_routes_of(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<PathRouteView>, ApiError> {
        let d = self.visible(ctx, id).await?;
        let routes = self
            .store
            .domains()
            .paths_for_deployment(&d.id)
            .await
            .map_err(internal("list path routes"))?;
        Ok(routes.into_iter().map(view).collect())
    }

    pub(super) async fn attach_path_route(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        route: AddPathRoute,
    ) -> Result<PathRouteView, ApiError> {
        let d = self.visible(ctx, id).await?;
        let prefix = validate_path_prefix(&route.path_prefix)?;
        let hostname = route
            .hostname
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        // Another project's domain is as unknown as a missing one: nothing about it leaks.
        let domain = self
            .store
            .domains()
            .by_hostname(&hostname)
            .await
            .map_err(internal("load domain"))?
            .filter(|x| x.project_id == d.project_id)
            .ok_or_else(|| ApiError {
                field: Some("hostname".into()),
                ..ApiError::not_found(
                    "domain_not_found",
                    format!("{hostname} is not a custom domain of this project. Add it to one of the project's deployments first."),
                )
            })?;
        let id = match self
            .store
            .domains()
            .add_path(&domain.id, &d.id, &prefix, route.strip_prefix)
            .await
        {
            Ok(id) => id,
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::conflict_field(
                    "path_prefix",
                    "path_taken",
                    format!("{hostname}{prefix} is already routed to a deployment; remove that route first."),
                ))
            }
            Err(e) => return Err(internal("add path route")(e)),
        };
        self.orchestrator.routes_changed.notify_one();
        audit(
            &self.store,
            ctx,
            None,
            "path_route.add",
            format!("path_route:{id}"),
            json!({"deployment": d.id, "hostname": hostname, "path_prefix": prefix}),
        )
        .await?;
        let record = self
            .store
            .domains()
            .path_by_id(&id)
            .await
            .map_err(internal("load path route"))?
            .ok_or_else(route_not_found)?;
        Ok(view(record))
    }

    pub(super) async fn detach_path_route(
        &self,
        ctx: &RequestContext,
        id: &PathRouteId,
    ) -> Result<(), ApiError> {
        ctx.user()?;
        let route = self
            .store
            .domains()
            .path_by_id(&id.0)
            .await
            .map_err(internal("load path route"))?
            .ok_or_else(route_not_found)?;
        self.visible(ctx, &DeploymentId(route.deployment_id.clone()))
            .await
            .map_err(|e| {
                if e.status == 404 {
                    route_not_found()
                } else {
                    e
                }
            })?;
        match self.store.domains().delete_path(&route.id).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(internal("remove path route")(e)),
        }
        self.orchestrator.routes_changed.notify_one();
        audit(
            &self.store,
            ctx,
            None,
            "path_route.remove",
            format!("path_route:{}", route.id),
            json!({"hostname": route.hostname, "path_prefix": route.path_prefix}),
        )
        .await
    }
}
