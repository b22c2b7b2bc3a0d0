//! Server functions for deployments (the service checks who may touch which project).

use leptos::prelude::*;

use crate::model::*;

/// The project's deployments.
#[server(prefix = "/rpc", endpoint = "list_deployments")]
pub async fn list_deployments(project_id: String) -> Result<Vec<DeploymentView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .list_deployments(&ctx, &ProjectId(project_id))
        .await
        .map_err(super::tag(&ctx))
}

/// Creates a deployment from the portal's form fields.
#[server(prefix = "/rpc", endpoint = "create_deployment")]
pub async fn submit_new_deployment(
    project_id: String,
    name: String,
    replicas: String,
    form: DeploymentForm,
) -> Result<DeploymentDetail, ApiError> {
    let (services, ctx) = super::context()?;
    let replicas = replicas.trim().parse::<u32>().map_err(|_| {
        super::tag(&ctx)(ApiError::invalid_field(
            "replicas",
            "invalid_value",
            format!("'{replicas}' is not a number of instances; use 1–20."),
        ))
    })?;
    let spec = form.to_spec().map_err(super::tag(&ctx))?;
    services
        .deployments
        .create_deployment(
            &ctx,
            &ProjectId(project_id),
            CreateDeployment {
                name,
                replicas,
                spec,
            },
        )
        .await
        .map_err(super::tag(&ctx))
}

/// A deployment with releases, instances and recent jobs.
#[server(prefix = "/rpc", endpoint = "get_deployment")]
pub async fn get_deployment(id: String) -> Result<DeploymentDetail, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .get_deployment(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Saves the settings form as a new release (rolled out health-gated).
#[server(prefix = "/rpc", endpoint = "update_deployment")]
pub async fn update_deployment(id: String, form: DeploymentForm) -> Result<JobView, ApiError> {
    let (services, ctx) = super::context()?;
    let spec = form.to_spec().map_err(super::tag(&ctx))?;
    services
        .deployments
        .act(&ctx, &DeploymentId(id), DeploymentAction::Update { spec })
        .await
        .map_err(super::tag(&ctx))
}

/// Any lifecycle action (redeploy, rollback, scale, stop, start, restart, delete).
#[server(prefix = "/rpc", endpoint = "deployment_action")]
pub async fn run_deployment_action(
    id: String,
    action: DeploymentAction,
) -> Result<JobView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .act(&ctx, &DeploymentId(id), action)
        .await
        .map_err(super::tag(&ctx))
}

/// The last `tail` lines of every instance's output.
#[server(prefix = "/rpc", endpoint = "deployment_logs")]
pub async fn deployment_logs(id: String, tail: u32) -> Result<Vec<LogLine>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .instance_logs(&ctx, &DeploymentId(id), tail)
        .await
        .map_err(super::tag(&ctx))
}
