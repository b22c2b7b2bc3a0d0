//! Server functions for git sources, builds and webhook deliveries (the service checks who
//! may touch which deployment). The portal's form posts plain text fields.
// One argument per form field: plain HTML forms (no JavaScript) post flat fields.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;

use crate::model::*;

/// The deployment's git source, if connected.
#[server(prefix = "/rpc", endpoint = "load_git_source")]
pub async fn load_git_source(id: String) -> Result<Option<GitSourceView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .get_git_source(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Parses `NAME=value` lines (blank lines skipped) into build arguments.
///
/// # Errors
/// A 400 on `build_args` naming the line without `=`.
pub fn parse_build_args(text: &str) -> Result<Vec<BuildArg>, ApiError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((name, value)) => Ok(BuildArg {
                name: name.trim().to_owned(),
                value: value.to_owned(),
            }),
            None => Err(ApiError::invalid_field(
                "build_args",
                "invalid_build_arg",
                format!("'{l}' is not NAME=value."),
            )),
        })
        .collect()
}

/// Connects the deployment to a repository (or changes it) from the portal's form. An empty
/// token field keeps the stored token; `remove_token` removes it.
#[server(prefix = "/rpc", endpoint = "connect_repository")]
pub async fn connect_repository(
    id: String,
    repository_url: String,
    branch: String,
    dockerfile_path: String,
    context_dir: String,
    build_args: String,
    https_token: String,
    remove_token: Option<String>,
) -> Result<GitSourceCreated, ApiError> {
    let (services, ctx) = super::context()?;
    let build_args = parse_build_args(&build_args).map_err(super::tag(&ctx))?;
    let https_token = if remove_token.is_some() {
        Some(String::new())
    } else {
        Some(https_token).filter(|t| !t.is_empty())
    };
    let or = |v: String, default: &str| {
        if v.trim().is_empty() {
            default.to_owned()
        } else {
            v
        }
    };
    let req = SetGitSource {
        source: GitSource {
            repository_url,
            branch,
            dockerfile_path: or(dockerfile_path, "Dockerfile"),
            context_dir: or(context_dir, "."),
            build_args,
        },
        https_token,
    };
    services
        .builds
        .set_git_source(&ctx, &DeploymentId(id), req)
        .await
        .map_err(super::tag(&ctx))
}

/// Disconnects the repository.
#[server(prefix = "/rpc", endpoint = "disconnect_repository")]
pub async fn disconnect_repository(id: String) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .remove_git_source(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// A new webhook secret, shown once.
#[server(prefix = "/rpc", endpoint = "rotate_webhook_secret")]
pub async fn rotate_webhook_secret(id: String) -> Result<GitSourceCreated, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .rotate_webhook_secret(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// "Build & deploy": the branch head, or the commit typed in.
/// A new SSH deploy key for the deployment's git source.
#[server(prefix = "/rpc", endpoint = "rotate_deploy_key")]
pub async fn rotate_deploy_key(id: String) -> Result<GitSourceView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .rotate_deploy_key(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

#[server(prefix = "/rpc", endpoint = "start_build")]
pub async fn start_build(id: String, commit: String) -> Result<BuildView, ApiError> {
    let (services, ctx) = super::context()?;
    let commit = Some(commit.trim().to_owned()).filter(|c| !c.is_empty());
    services
        .builds
        .trigger_build(&ctx, &DeploymentId(id), TriggerBuild { commit })
        .await
        .map_err(super::tag(&ctx))
}

/// The deployment's builds, newest first.
#[server(prefix = "/rpc", endpoint = "list_builds")]
pub async fn list_builds(id: String) -> Result<Vec<BuildView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .list_builds(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}

/// Stops a queued or running build.
#[server(prefix = "/rpc", endpoint = "stop_build")]
pub async fn stop_build(build_id: String) -> Result<BuildView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .cancel_build(&ctx, &BuildId(build_id))
        .await
        .map_err(super::tag(&ctx))
}

/// The deployment's webhook deliveries, newest first.
#[server(prefix = "/rpc", endpoint = "list_webhook_deliveries")]
pub async fn list_webhook_deliveries(id: String) -> Result<Vec<WebhookDeliveryView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .builds
        .list_deliveries(&ctx, &DeploymentId(id))
        .await
        .map_err(super::tag(&ctx))
}
