//! `BuildService`: git sources, builds and webhook deliveries, with the same authorization as
//! deployments (the caller must see the deployment's project). Builds run as jobs
//! (`builds::Builder`).

use std::sync::Arc;

use app::{
    model::*,
    services::{BuildService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Notify;

use super::{audit, deployments::visible_deployment, internal};
use crate::{
    builds::source_spec,
    secrets::{random_hex, SecretBox},
    store::{
        BuildRecord, DeliveryRecord, DeploymentRecord, GitSourceRecord, NewBuild, NewJob, Store,
    },
};

/// The build service.
pub struct BuildsService {
    store: Store,
    secrets: SecretBox,
    wake_workers: Arc<Notify>,
}

fn build_not_found() -> ApiError {
    ApiError::not_found(
        "build_not_found",
        "No build with this id is visible to you.",
    )
}

fn no_source() -> ApiError {
    ApiError::not_found(
        "git_source_not_found",
        "This deployment is not connected to a git repository.",
    )
}

/// The API view of a build row.
pub fn build_view(b: BuildRecord) -> BuildView {
    BuildView {
        id: BuildId(b.id),
        deployment_id: DeploymentId(b.deployment_id),
        number: b.number,
        status: BuildStatus::parse(&b.status),
        trigger: b.trigger_kind,
        branch: b.branch,
        requested_commit: b.requested_commit,
        commit_sha: b.commit_sha,
        image: b.image,
        release_id: b.release_id.map(ReleaseId),
        failure: b.failure,
        job_id: b.job_id.map(JobId),
        created_at_ms: b.created_at_ms,
        started_at_ms: b.started_at_ms,
        finished_at_ms: b.finished_at_ms,
    }
}

/// The API view of a delivery row.
pub fn delivery_view(d: DeliveryRecord) -> WebhookDeliveryView {
    WebhookDeliveryView {
        id: d.id,
        provider: GitProvider::parse(&d.provider).unwrap_or(GitProvider::Github),
        event: d.event,
        delivery_id: d.delivery_id,
        branch: d.branch,
        commit_sha: d.commit_sha,
        outcome: d.outcome,
        reason: d.reason,
        build_id: d.build_id.map(BuildId),
        received_at_ms: d.received_at_ms,
    }
}

fn source_view(s: &GitSourceRecord) -> Result<GitSourceView, ApiError> {
    let source = source_spec(s).map_err(|e| {
        tracing::error!(deployment.id = %s.deployment_id, error = %e, "unreadable git source");
        ApiError::internal()
    })?;
    Ok(GitSourceView {
        deployment_id: DeploymentId(s.deployment_id.clone()),
        source,
        has_https_token: s.https_token.is_some(),
        ssh_public_key: s.ssh_public_key.clone(),
        webhook_id: s.webhook_id.clone(),
        webhook_paths: GitProvider::ALL
            .iter()
            .map(|p| WebhookPath {
                provider: *p,
                path: format!("/webhooks/{}/{}", p.as_str(), s.webhook_id),
            })
            .collect(),
        updated_at_ms: s.updated_at_ms,
    })
}

/// Queues a build of `deployment` and its job; shared by the portal/API and webhooks.
pub(crate) async fn queue_build(
    store: &Store,
    deployment: &DeploymentRecord,
    branch: &str,
    commit: Option<String>,
    trigger: &str,
    created_by: Option<String>,
) -> Result<BuildRecord, crate::store::StoreError> {
    store
        .builds()
        .queue(
            NewBuild {
                deployment_id: deployment.id.clone(),
                project_id: deployment.project_id.clone(),
                trigger_kind: trigger.to_owned(),
                branch: branch.to_owned(),
                requested_commit: commit,
                created_by: created_by.clone(),
            },
            NewJob {
                kind: "build".into(),
                project_id: Some(deployment.project_id.clone()),
                deployment_id: Some(deployment.id.clone()),
                payload: json!({"build_id": "{build_id}"}).to_string(),
                created_by,
            },
        )
        .await
}

impl BuildsService {
    pub fn new(store: Store, secrets: SecretBox, wake_workers: Arc<Notify>) -> Self {
        Self {
            store,
            secrets,
            wake_workers,
        }
    }

    async fn visible(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<DeploymentRecord, ApiError> {
        visible_deployment(&self.store, ctx, id).await
    }

    async fn visible_build(
        &self,
        ctx: &RequestContext,
        id: &BuildId,
    ) -> Result<BuildRecord, ApiError> {
        ctx.user()?;
        let b = self
            .store
            .builds()
            .by_id(&id.0)
            .await
            .map_err(internal("load build"))?
            .ok_or_else(build_not_found)?;
        self.visible(ctx, &DeploymentId(b.deployment_id.clone()))
            .await
            .map_err(|e| {
                if e.status == 404 {
                    build_not_found()
                } else {
                    e
                }
            })?;
        Ok(b)
    }

    /// A new deploy key for `deployment`: (the private half sealed, the public line).
    fn new_deploy_key(&self, deployment: &str) -> Result<(String, String), ApiError> {
        let key = crate::builds::ssh::generate_deploy_key(&format!("berth-{deployment}")).map_err(
            |e| {
                tracing::error!(error = %e, "cannot make a deploy key");
                ApiError::internal()
            },
        )?;
        Ok((self.secrets.seal(&key.private_openssh), key.public_line))
    }

    async fn source(&self, d: &DeploymentRecord) -> Result<Option<GitSourceRecord>, ApiError> {
        self.store
            .builds()
            .source(&d.id)
            .await
            .map_err(internal("load git source"))
    }
}

#[async_trait]
impl BuildService for BuildsService {
    async fn get_git_source(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Option<GitSourceView>, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        self.source(&d).await?.as_ref().map(source_view).transpose()
    }

    async fn set_git_source(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
        mut req: SetGitSource,
    ) -> Result<GitSourceCreated, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        let s = &mut req.source;
        s.repository_url = s.repository_url.trim().to_owned();
        s.branch = s.branch.trim().to_owned();
        s.dockerfile_path = s.dockerfile_path.trim().to_owned();
        s.context_dir = s.context_dir.trim().to_owned();
        validate_git_source(&req.source)?;
        if let Some(t) = &req.https_token {
            if t.len() > 4096 || t.chars().any(char::is_control) {
                return Err(ApiError::invalid_field(
                    "https_token",
                    "invalid_token",
                    "A token is at most 4096 characters, without control characters.",
                ));
            }
        }
        let previous = self.source(&d).await?;
        let new_secret = previous.is_none().then(|| random_hex(32));
        // An ssh URL gets a deploy key the first time; a key once made is kept (also across
        // a switch to https and back), until rotated.
        let is_ssh = parse_repository_url(&req.source.repository_url)?.scheme == "ssh";
        let (ssh_private_key, ssh_public_key) = match &previous {
            Some(p) if p.ssh_private_key.is_some() => {
                (p.ssh_private_key.clone(), p.ssh_public_key.clone())
            }
            _ if is_ssh => {
                let (private, public) = self.new_deploy_key(&d.id)?;
                (Some(private), Some(public))
            }
            _ => (None, None),
        };
        let https_token = match req.https_token.as_deref() {
            Some("") => None,
            Some(t) => Some(self.secrets.seal(t)),
            None => previous.as_ref().and_then(|p| p.https_token.clone()),
        };
        let record = GitSourceRecord {
            deployment_id: d.id.clone(),
            repository_url: req.source.repository_url.clone(),
            branch: req.source.branch.clone(),
            dockerfile_path: req.source.dockerfile_path.clone(),
            context_dir: req.source.context_dir.clone(),
            build_args: serde_json::to_string(&req.source.build_args)
                .map_err(|_| ApiError::internal())?,
            https_token,
            webhook_id: previous
                .as_ref()
                .map_or_else(|| random_hex(16), |p| p.webhook_id.clone()),
            webhook_secret: match (&new_secret, &previous) {
                (Some(secret), _) => self.secrets.seal(secret),
                (None, Some(p)) => p.webhook_secret.clone(),
                (None, None) => unreachable!("a first connection gets a secret"),
            },
            ssh_private_key,
            ssh_public_key,
            ssh_known_hosts: previous
                .as_ref()
                .map(|p| p.ssh_known_hosts.clone())
                .unwrap_or_default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        self.store
            .builds()
            .put_source(&record)
            .await
            .map_err(internal("save git source"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.git_source",
            format!("deployment:{}", d.id),
            json!({
                "repository_url": req.source.repository_url,
                "branch": req.source.branch,
                "https_token": req.https_token.as_ref().map(|t| if t.is_empty() { "removed" } else { "set" }),
            }),
        )
        .await?;
        let stored = self.source(&d).await?.ok_or_else(ApiError::internal)?;
        Ok(GitSourceCreated {
            source: source_view(&stored)?,
            webhook_secret: new_secret,
        })
    }

    async fn remove_git_source(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<(), ApiError> {
        let d = self.visible(ctx, deployment).await?;
        match self.store.builds().delete_source(&d.id).await {
            Ok(()) => {}
            Err(crate::store::StoreError::NotFound) => return Err(no_source()),
            Err(e) => return Err(internal("remove git source")(e)),
        }
        audit(
            &self.store,
            ctx,
            None,
            "deployment.git_source_removed",
            format!("deployment:{}", d.id),
            json!({}),
        )
        .await
    }

    async fn rotate_webhook_secret(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<GitSourceCreated, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        let mut source = self.source(&d).await?.ok_or_else(no_source)?;
        let secret = random_hex(32);
        source.webhook_secret = self.secrets.seal(&secret);
        self.store
            .builds()
            .put_source(&source)
            .await
            .map_err(internal("rotate webhook secret"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.webhook_secret_rotated",
            format!("deployment:{}", d.id),
            json!({}),
        )
        .await?;
        let stored = self.source(&d).await?.ok_or_else(ApiError::internal)?;
        Ok(GitSourceCreated {
            source: source_view(&stored)?,
            webhook_secret: Some(secret),
        })
    }

    async fn rotate_deploy_key(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<GitSourceView, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        let mut source = self.source(&d).await?.ok_or_else(no_source)?;
        let (private, public) = self.new_deploy_key(&d.id)?;
        source.ssh_private_key = Some(private);
        source.ssh_public_key = Some(public.clone());
        self.store
            .builds()
            .put_source(&source)
            .await
            .map_err(internal("rotate deploy key"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.deploy_key_rotated",
            format!("deployment:{}", d.id),
            json!({ "public_key": public }),
        )
        .await?;
        let stored = self.source(&d).await?.ok_or_else(ApiError::internal)?;
        source_view(&stored)
    }

    async fn trigger_build(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
        req: TriggerBuild,
    ) -> Result<BuildView, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        if d.status == DeploymentStatus::Deleting.as_str() {
            return Err(ApiError::new(
                409,
                "deployment_deleting",
                "The deployment is being deleted.",
            ));
        }
        let source = self.source(&d).await?.ok_or_else(no_source)?;
        let commit = req
            .commit
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty());
        if let Some(c) = &commit {
            validate_commit(c)?;
        }
        let caller = ctx.caller.as_ref().map(|u| u.id.0.clone());
        let build = queue_build(
            &self.store,
            &d,
            &source.branch,
            commit.clone(),
            "manual",
            caller,
        )
        .await
        .map_err(internal("queue build"))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.build",
            format!("deployment:{}", d.id),
            json!({"build": build.id, "branch": source.branch, "commit": commit}),
        )
        .await?;
        self.wake_workers.notify_waiters();
        Ok(build_view(build))
    }

    async fn list_builds(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<BuildView>, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        Ok(self
            .store
            .builds()
            .for_deployment(&d.id, 50)
            .await
            .map_err(internal("list builds"))?
            .into_iter()
            .map(build_view)
            .collect())
    }

    async fn get_build(&self, ctx: &RequestContext, id: &BuildId) -> Result<BuildDetail, ApiError> {
        let b = self.visible_build(ctx, id).await?;
        let log = self
            .store
            .builds()
            .log(&b.id)
            .await
            .map_err(internal("load build log"))?;
        Ok(BuildDetail {
            build: build_view(b),
            log,
        })
    }

    async fn cancel_build(
        &self,
        ctx: &RequestContext,
        id: &BuildId,
    ) -> Result<BuildView, ApiError> {
        let b = self.visible_build(ctx, id).await?;
        if BuildStatus::parse(&b.status).is_finished() {
            return Err(ApiError::new(
                409,
                "build_finished",
                format!("Build #{} has already ended ({}).", b.number, b.status),
            ));
        }
        self.store
            .builds()
            .cancel(&b.id)
            .await
            .map_err(internal("cancel build"))?;
        audit(
            &self.store,
            ctx,
            None,
            "build.cancel",
            format!("build:{}", b.id),
            json!({"deployment": b.deployment_id}),
        )
        .await?;
        let b = self
            .store
            .builds()
            .by_id(&b.id)
            .await
            .map_err(internal("load build"))?
            .ok_or_else(build_not_found)?;
        Ok(build_view(b))
    }

    async fn list_deliveries(
        &self,
        ctx: &RequestContext,
        deployment: &DeploymentId,
    ) -> Result<Vec<WebhookDeliveryView>, ApiError> {
        let d = self.visible(ctx, deployment).await?;
        Ok(self
            .store
            .deliveries()
            .for_deployment(&d.id, 50)
            .await
            .map_err(internal("list deliveries"))?
            .into_iter()
            .map(delivery_view)
            .collect())
    }
}
