//! `ProjectService`: projects and members. Deny by default: a customer reaches a project only
//! through a membership row; anything else answers 404 so ids cannot be probed.

use app::{
    model::*,
    services::{ProjectService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;

use super::{audit, internal};
use crate::store::{MemberRecord, ProjectRecord, Store, StoreError};

/// The project service.
pub struct ProjectsService {
    store: Store,
}

fn project_not_found() -> ApiError {
    ApiError::not_found(
        "project_not_found",
        "No project with this id is visible to you.",
    )
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict_field(
        "name",
        "name_taken",
        format!(
            "The name '{name}' is taken. Project names are unique across Berth because they become part of public hostnames; choose another."
        ),
    )
}

fn project_view(p: ProjectRecord, my_role: Option<MemberRole>) -> ProjectView {
    ProjectView {
        id: ProjectId(p.id),
        name: p.name,
        my_role,
        member_count: p.member_count,
        created_at_ms: p.created_at_ms,
    }
}

fn member_view(m: MemberRecord) -> MemberView {
    MemberView {
        user_id: UserId(m.user_id),
        email: m.email,
        display_name: m.display_name,
        role: MemberRole::parse(&m.role).unwrap_or(MemberRole::Member),
        added_at_ms: m.added_at_ms,
    }
}

/// What the caller may do with one project.
pub(super) struct Access {
    pub project: ProjectRecord,
    pub role: Option<MemberRole>,
    pub is_admin: bool,
}

impl Access {
    fn can_manage(&self) -> bool {
        self.is_admin || self.role == Some(MemberRole::Owner)
    }

    pub(super) fn require_manage(&self) -> Result<(), ApiError> {
        if self.can_manage() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "Only the project's owners can do this.",
            ))
        }
    }
}

impl ProjectsService {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn access(&self, ctx: &RequestContext, id: &ProjectId) -> Result<Access, ApiError> {
        project_access(&self.store, ctx, id).await
    }
}

/// Loads the project and the caller's standing in it: deny by default, 404
/// `project_not_found` unless the caller is an admin or a member (ids cannot be probed).
pub(super) async fn project_access(
    store: &Store,
    ctx: &RequestContext,
    id: &ProjectId,
) -> Result<Access, ApiError> {
    let user = ctx.user()?;
    let projects = store.projects();
    let project = projects
        .by_id(&id.0)
        .await
        .map_err(internal("load project"))?
        .ok_or_else(project_not_found)?;
    let role = projects
        .member_role(&id.0, &user.id.0)
        .await
        .map_err(internal("load membership"))?
        .and_then(|r| MemberRole::parse(&r));
    let is_admin = user.role == UserRole::Admin;
    if role.is_none() && !is_admin {
        return Err(project_not_found());
    }
    Ok(Access {
        project,
        role,
        is_admin,
    })
}

#[async_trait]
impl ProjectService for ProjectsService {
    async fn list_projects(&self, ctx: &RequestContext) -> Result<Vec<ProjectView>, ApiError> {
        let user = ctx.user()?;
        let projects = self.store.projects();
        let mine = projects
            .list_for_member(&user.id.0)
            .await
            .map_err(internal("list projects"))?;
        if user.role != UserRole::Admin {
            return Ok(mine
                .into_iter()
                .map(|(p, r)| project_view(p, MemberRole::parse(&r)))
                .collect());
        }
        let roles: std::collections::HashMap<String, String> =
            mine.into_iter().map(|(p, r)| (p.id, r)).collect();
        let all = projects
            .list_all()
            .await
            .map_err(internal("list projects"))?;
        Ok(all
            .into_iter()
            .map(|p| {
                let role = roles.get(&p.id).and_then(|r| MemberRole::parse(r));
                project_view(p, role)
            })
            .collect())
    }

    async fn get_project(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
    ) -> Result<ProjectView, ApiError> {
        let access = self.access(ctx, id).await?;
        Ok(project_view(access.project, access.role))
    }

    async fn create_project(
        &self,
        ctx: &RequestContext,
        req: CreateProject,
    ) -> Result<ProjectView, ApiError> {
        let user = ctx.user()?;
        let name = req.name.trim();
        validate_project_name(name)?;
        let project = match self.store.projects().create(name, &user.id.0).await {
            Ok(p) => p,
            Err(StoreError::Conflict(_)) => return Err(name_taken(name)),
            Err(e) => return Err(internal("create project")(e)),
        };
        audit(
            &self.store,
            ctx,
            None,
            "project.create",
            format!("project:{}", project.id),
            json!({"name": name}),
        )
        .await?;
        Ok(project_view(project, Some(MemberRole::Owner)))
    }

    async fn rename_project(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        req: RenameProject,
    ) -> Result<ProjectView, ApiError> {
        let access = self.access(ctx, id).await?;
        access.require_manage()?;
        let name = req.name.trim();
        validate_project_name(name)?;
        if name != access.project.name {
            match self.store.projects().rename(&id.0, name).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => return Err(name_taken(name)),
                Err(StoreError::NotFound) => return Err(project_not_found()),
                Err(e) => return Err(internal("rename project")(e)),
            }
            audit(
                &self.store,
                ctx,
                None,
                "project.rename",
                format!("project:{id}"),
                json!({"from": access.project.name, "to": name}),
            )
            .await?;
        }
        self.get_project(ctx, id).await
    }

    async fn delete_project(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        req: DeleteProject,
    ) -> Result<(), ApiError> {
        let access = self.access(ctx, id).await?;
        access.require_manage()?;
        if req.confirm_name.trim() != access.project.name {
            return Err(ApiError::invalid_field(
                "confirm_name",
                "confirmation_mismatch",
                format!(
                    "Type the project's name, '{}', exactly to confirm deletion.",
                    access.project.name
                ),
            ));
        }
        let deployments = self
            .store
            .deployments()
            .for_project(&id.0)
            .await
            .map_err(internal("list deployments"))?;
        if !deployments.is_empty() {
            return Err(ApiError::new(
                409,
                "project_has_deployments",
                format!(
                    "The project still has {} deployment(s). Delete them first; nothing was deleted.",
                    deployments.len()
                ),
            ));
        }
        match self.store.projects().delete(&id.0).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(internal("delete project")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "project.delete",
            format!("project:{id}"),
            json!({"name": access.project.name}),
        )
        .await
    }

    async fn list_members(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
    ) -> Result<Vec<MemberView>, ApiError> {
        self.access(ctx, id).await?;
        let members = self
            .store
            .projects()
            .members(&id.0)
            .await
            .map_err(internal("list members"))?;
        Ok(members.into_iter().map(member_view).collect())
    }

    async fn add_member(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        req: AddMember,
    ) -> Result<MemberView, ApiError> {
        let access = self.access(ctx, id).await?;
        access.require_manage()?;
        let email = normalize_email(&req.email);
        validate_email(&email)?;
        let user = self
            .store
            .users()
            .by_email(&email)
            .await
            .map_err(internal("find user"))?
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "email",
                    "user_not_found",
                    format!(
                        "No Berth account uses {email}. Ask an administrator to create it first."
                    ),
                )
            })?;
        let member = match self
            .store
            .projects()
            .add_member(&id.0, &user.id, req.role.as_str())
            .await
        {
            Ok(m) => m,
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::conflict_field(
                    "email",
                    "already_member",
                    format!("{email} is already a member of this project."),
                ))
            }
            Err(e) => return Err(internal("add member")(e)),
        };
        audit(
            &self.store,
            ctx,
            None,
            "member.add",
            format!("project:{id}"),
            json!({"user": user.id, "email": email, "role": req.role.as_str()}),
        )
        .await?;
        Ok(member_view(member))
    }

    async fn remove_member(
        &self,
        ctx: &RequestContext,
        id: &ProjectId,
        user: &UserId,
    ) -> Result<(), ApiError> {
        let access = self.access(ctx, id).await?;
        access.require_manage()?;
        match self.store.projects().remove_member(&id.0, &user.0).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::not_found(
                    "member_not_found",
                    "This user is not a member of the project.",
                ))
            }
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(
                    409,
                    "last_owner",
                    "A project needs at least one owner. Make someone else an owner first.",
                ))
            }
            Err(e) => return Err(internal("remove member")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "member.remove",
            format!("project:{id}"),
            json!({"user": user.0}),
        )
        .await
    }
}
