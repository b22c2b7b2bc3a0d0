//! Server functions for deployments (the service checks who may touch which project). The
//! portal's forms post plain text fields; they are parsed here with [`DeploymentForm`] and
//! errors are pointed back at the form field that holds the offending value.
// One argument per form field: plain HTML forms (no JavaScript) post flat fields.
#![allow(clippy::too_many_arguments)]

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

/// Points a spec-level error at the form field that shows it.
#[cfg(feature = "ssr")]
fn on_form(spec: &DeploymentSpec) -> impl Fn(ApiError) -> ApiError + '_ {
    move |mut e| {
        e.field = e.field.map(|f| DeploymentForm::field_for(spec, &f));
        e
    }
}

/// Creates a deployment from the "New deployment" form.
#[server(prefix = "/rpc", endpoint = "create_deployment")]
pub async fn submit_new_deployment(
    project_id: String,
    name: String,
    replicas: String,
    image: String,
    http_port: String,
    plan_id: String,
    env: String,
    secret_env: String,
    volumes: String,
    command: String,
    health_path: String,
    restart_policy: String,
    balance: Option<String>,
    route_timeout_secs: Option<String>,
    route_max_body_bytes: Option<String>,
    database: Option<String>,
) -> Result<DeploymentDetail, ApiError> {
    let (services, ctx) = super::context()?;
    let replicas = replicas.trim().parse::<u32>().map_err(|_| {
        super::tag(&ctx)(ApiError::invalid_field(
            "replicas",
            "invalid_value",
            format!("'{replicas}' is not a number of instances; use 1–20."),
        ))
    })?;
    let form = DeploymentForm {
        image,
        http_port,
        plan_id,
        env,
        secret_env,
        volumes,
        command,
        health_path,
        restart_policy,
        balance: balance.unwrap_or_default(),
        route_timeout_secs: route_timeout_secs.unwrap_or_default(),
        route_max_body_bytes: route_max_body_bytes.unwrap_or_default(),
        database: database.unwrap_or_default(),
    };
    let spec = form.to_spec().map_err(super::tag(&ctx))?;
    services
        .deployments
        .create_deployment(
            &ctx,
            &ProjectId(project_id),
            CreateDeployment {
                name,
                replicas,
                spec: spec.clone(),
            },
        )
        .await
        .map_err(on_form(&spec))
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
pub async fn update_deployment(
    id: String,
    image: String,
    http_port: String,
    plan_id: String,
    env: String,
    secret_env: String,
    volumes: String,
    command: String,
    health_path: String,
    restart_policy: String,
    balance: Option<String>,
    route_timeout_secs: Option<String>,
    route_max_body_bytes: Option<String>,
    database: Option<String>,
) -> Result<JobView, ApiError> {
    let (services, ctx) = super::context()?;
    let form = DeploymentForm {
        image,
        http_port,
        plan_id,
        env,
        secret_env,
        volumes,
        command,
        health_path,
        restart_policy,
        balance: balance.unwrap_or_default(),
        route_timeout_secs: route_timeout_secs.unwrap_or_default(),
        route_max_body_bytes: route_max_body_bytes.unwrap_or_default(),
        database: database.unwrap_or_default(),
    };
    let spec = form.to_spec().map_err(super::tag(&ctx))?;
    services
        .deployments
        .act(
            &ctx,
            &DeploymentId(id),
            DeploymentAction::Update { spec: spec.clone() },
        )
        .await
        .map_err(on_form(&spec))
        .map_err(super::tag(&ctx))
}

/// A lifecycle button: `redeploy`, `restart`, `stop`, `start`, `scale` (with `replicas`),
/// `rollback` (with `release_id`), `delete` (with `remove_volumes` = `on` to drop volumes).
#[server(prefix = "/rpc", endpoint = "deployment_lifecycle")]
pub async fn deployment_lifecycle(
    id: String,
    action: String,
    #[server(default)] replicas: Option<String>,
    #[server(default)] release_id: Option<String>,
    #[server(default)] remove_volumes: Option<String>,
) -> Result<JobView, ApiError> {
    let (services, ctx) = super::context()?;
    let action = match action.as_str() {
        "redeploy" => DeploymentAction::Redeploy,
        "restart" => DeploymentAction::Restart,
        "stop" => DeploymentAction::Stop,
        "start" => DeploymentAction::Start,
        "scale" => {
            let text = replicas.unwrap_or_default();
            let replicas = text.trim().parse::<u32>().map_err(|_| {
                super::tag(&ctx)(ApiError::invalid_field(
                    "replicas",
                    "invalid_value",
                    format!("'{text}' is not a number of instances; use 0–20."),
                ))
            })?;
            DeploymentAction::Scale { replicas }
        }
        "rollback" => DeploymentAction::Rollback {
            release_id: ReleaseId(release_id.unwrap_or_default()),
        },
        "delete" => DeploymentAction::Delete {
            remove_volumes: remove_volumes.is_some_and(|v| v == "on" || v == "true"),
        },
        other => {
            return Err(super::tag(&ctx)(ApiError::new(
                400,
                "unknown_action",
                format!("'{other}' is not an action; use redeploy, restart, stop, start, scale, rollback or delete."),
            )))
        }
    };
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

/// A deployment's custom domains.
#[server(prefix = "/rpc", endpoint = "list_domains")]
pub async fn list_domains(id: String) -> Result<Vec<DomainView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .list_domains(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Adds a custom domain to a deployment (the form's `hostname` field).
#[server(prefix = "/rpc", endpoint = "add_domain")]
pub async fn attach_domain(id: String, hostname: String) -> Result<DomainView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .add_domain(
            &ctx,
            &DeploymentId(id),
            crate::model::AddDomain { hostname },
        )
        .await
        .map_err(super::tag(&ctx))
}

/// Checks a pending domain now.
#[server(prefix = "/rpc", endpoint = "verify_domain")]
pub async fn verify_domain(domain_id: String) -> Result<DomainView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .verify_domain(&ctx, &DomainId(domain_id))
        .await
        .map_err(super::tag(&ctx))
}

/// Removes a custom domain.
#[server(prefix = "/rpc", endpoint = "remove_domain")]
pub async fn remove_domain(domain_id: String) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .remove_domain(&ctx, &DomainId(domain_id))
        .await
        .map_err(super::tag(&ctx))
}

/// Turns a domain's HTTP -> HTTPS redirect on (`redirect_https` = `true`) or off.
#[server(prefix = "/rpc", endpoint = "update_domain")]
pub async fn set_domain_redirect(
    domain_id: String,
    redirect_https: bool,
) -> Result<DomainView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .update_domain(&ctx, &DomainId(domain_id), UpdateDomain { redirect_https })
        .await
        .map_err(super::tag(&ctx))
}

/// The path routes a deployment serves.
#[server(prefix = "/rpc", endpoint = "list_path_routes")]
pub async fn list_path_routes(id: String) -> Result<Vec<PathRouteView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .list_path_routes(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Serves a deployment under a path of a project domain (the form's `hostname`,
/// `path_prefix` and the `strip_prefix` checkbox, present when ticked).
#[server(prefix = "/rpc", endpoint = "add_path_route")]
pub async fn attach_path_route(
    id: String,
    hostname: String,
    path_prefix: String,
    strip_prefix: Option<String>,
) -> Result<PathRouteView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .add_path_route(
            &ctx,
            &DeploymentId(id),
            crate::model::AddPathRoute {
                hostname,
                path_prefix,
                strip_prefix: strip_prefix.is_some(),
            },
        )
        .await
        .map_err(super::tag(&ctx))
}

/// Removes a path route.
#[server(prefix = "/rpc", endpoint = "remove_path_route")]
pub async fn remove_path_route(route_id: String) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .remove_path_route(&ctx, &PathRouteId(route_id))
        .await
        .map_err(super::tag(&ctx))
}

/// The deployment's history over `range` (`1h`, `24h` or `7d`), for the metrics card.
#[server(prefix = "/rpc", endpoint = "deployment_metrics_history")]
pub async fn deployment_metrics_history(
    id: String,
    range: String,
) -> Result<MetricsHistory, ApiError> {
    let range = HistoryRange::parse(&range)?;
    let (services, ctx) = super::context()?;
    services
        .deployments
        .metrics_history(&ctx, &DeploymentId(id), range)
        .await
        .map_err(super::tag(&ctx))
}
