//! Server functions for projects and their members.

use leptos::prelude::*;

use crate::model::*;

/// Projects the caller may see.
#[server(prefix = "/rpc", endpoint = "list_projects")]
pub async fn list_projects() -> Result<Vec<ProjectView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .list_projects(&ctx)
        .await
        .map_err(super::tag(&ctx))
}

/// One project the caller may see.
#[server(prefix = "/rpc", endpoint = "get_project")]
pub async fn get_project(id: ProjectId) -> Result<ProjectView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .get_project(&ctx, &id)
        .await
        .map_err(super::tag(&ctx))
}

/// Creates a project owned by the caller.
#[server(prefix = "/rpc", endpoint = "create_project")]
pub async fn create_project(name: String) -> Result<ProjectView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .create_project(&ctx, crate::model::CreateProject { name })
        .await
        .map_err(super::tag(&ctx))
}

/// Renames a project.
#[server(prefix = "/rpc", endpoint = "rename_project")]
pub async fn rename_project(id: ProjectId, name: String) -> Result<ProjectView, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .rename_project(&ctx, &id, crate::model::RenameProject { name })
        .await
        .map_err(super::tag(&ctx))
}

/// Deletes a project after the name was typed again, then returns to the list.
#[server(prefix = "/rpc", endpoint = "delete_project")]
pub async fn delete_project(id: ProjectId, confirm_name: String) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .delete_project(&ctx, &id, crate::model::DeleteProject { confirm_name })
        .await
        .map_err(super::tag(&ctx))?;
    leptos_axum::redirect("/projects");
    Ok(())
}

/// Members of a project.
#[server(prefix = "/rpc", endpoint = "list_members")]
pub async fn list_members(id: ProjectId) -> Result<Vec<MemberView>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .list_members(&ctx, &id)
        .await
        .map_err(super::tag(&ctx))
}

/// Adds an existing user to a project by email; `role` is `owner` or `member`.
#[server(prefix = "/rpc", endpoint = "add_member")]
pub async fn add_member(
    id: ProjectId,
    email: String,
    role: String,
) -> Result<MemberView, ApiError> {
    let (services, ctx) = super::context()?;
    let role = MemberRole::parse(&role)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "role",
                "invalid_role",
                format!("'{role}' is not a member role. Use 'owner' or 'member'."),
            )
        })
        .map_err(super::tag(&ctx))?;
    services
        .projects
        .add_member(&ctx, &id, crate::model::AddMember { email, role })
        .await
        .map_err(super::tag(&ctx))
}

/// Removes a member from a project.
#[server(prefix = "/rpc", endpoint = "remove_member")]
pub async fn remove_member(id: ProjectId, user_id: UserId) -> Result<(), ApiError> {
    let (services, ctx) = super::context()?;
    services
        .projects
        .remove_member(&ctx, &id, &user_id)
        .await
        .map_err(super::tag(&ctx))
}

/// The project's usage per deployment over the last 30 days (whole hours), for the project
/// page.
#[server(prefix = "/rpc", endpoint = "project_usage")]
pub async fn get_project_usage(project_id: String) -> Result<ProjectUsage, ApiError> {
    let (services, ctx) = super::context()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    services
        .deployments
        .project_usage(
            &ctx,
            &ProjectId(project_id),
            now - 30 * 24 * 3_600_000,
            now,
            false,
        )
        .await
        .map_err(super::tag(&ctx))
}

/// What each of the project's deployments uses right now, for the project page's
/// deployments table (refreshed every few seconds).
#[server(prefix = "/rpc", endpoint = "project_metrics_now")]
pub async fn project_metrics_now(project_id: String) -> Result<Vec<DeploymentNow>, ApiError> {
    let (services, ctx) = super::context()?;
    services
        .deployments
        .project_metrics_now(&ctx, &ProjectId(project_id))
        .await
        .map_err(super::tag(&ctx))
}
