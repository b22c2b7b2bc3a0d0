//! `DeploymentService`: validation, authorization and bookkeeping of deployments. Every
//! change is recorded (release and job in one transaction) and audited here; the work itself
//! runs as a job (`orchestrator::rollout`).

use std::{collections::HashMap, sync::Arc};

use app::{
    model::*,
    services::{DeploymentService, RequestContext},
};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Notify;

use super::{
    audit,
    deployment_views::{deployment_view, instance_view, job_view, release_view, stored_spec},
    domains::AppUrls,
    internal,
    projects::project_access,
};
use crate::{
    orchestrator::Orchestrator,
    secrets::SecretBox,
    store::{DeploymentRecord, NewJob, NewRelease, ReleaseRecord, Store, Taken},
};

/// The deployment service.
pub struct DeploymentsService {
    pub(super) store: Store,
    secrets: SecretBox,
    pub(super) orchestrator: Arc<Orchestrator>,
    pub(super) wake_workers: Arc<Notify>,
    pub(super) app_urls: Option<AppUrls>,
    pub(super) base_domain: String,
    pub(super) ingress_ips: Vec<std::net::IpAddr>,
    /// Wildcard custom domains are accepted (ACME with a DNS-01 update server is set up).
    pub(super) wildcard_domains: bool,
    /// This process's live metrics cache (role `metrics`).
    pub(super) live_metrics: Option<Arc<crate::metrics::MetricsHub>>,
}

fn deployment_not_found() -> ApiError {
    ApiError::not_found(
        "deployment_not_found",
        "No deployment with this id is visible to you.",
    )
}

fn taken(t: Taken, name: &str) -> ApiError {
    match t {
        Taken::DeploymentName => ApiError::conflict_field(
            "name",
            "name_taken",
            format!("A deployment named '{name}' exists in this project; choose another name."),
        ),
        Taken::Volume(v) => ApiError::conflict_field(
            "volumes",
            "volume_taken",
            format!(
                "The volume '{v}' belongs to another deployment of this project; choose another volume name."
            ),
        ),
    }
}

/// The deployment if the caller may see its project: 401 without a caller, 404
/// `deployment_not_found` for an unknown id and for a project the caller is not in alike.
pub(super) async fn visible_deployment(
    store: &Store,
    ctx: &RequestContext,
    id: &DeploymentId,
) -> Result<DeploymentRecord, ApiError> {
    ctx.user()?;
    let d = store
        .deployments()
        .by_id(&id.0)
        .await
        .map_err(internal("load deployment"))?
        .ok_or_else(deployment_not_found)?;
    project_access(store, ctx, &ProjectId(d.project_id.clone()))
        .await
        .map_err(|e| {
            if e.status == 404 {
                deployment_not_found()
            } else {
                e
            }
        })?;
    Ok(d)
}

impl DeploymentsService {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        orchestrator: Arc<Orchestrator>,
        wake_workers: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            secrets,
            orchestrator,
            wake_workers,
            app_urls: None,
            base_domain: "localhost".into(),
            ingress_ips: Vec::new(),
            wildcard_domains: false,
            live_metrics: None,
        }
    }

    /// The deployment if the caller may see its project (404 otherwise, for both cases).
    pub(super) async fn visible(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<DeploymentRecord, ApiError> {
        visible_deployment(&self.store, ctx, id).await
    }

    /// Checks the plan exists. 404 `plan_not_found` on field `plan_id`.
    async fn check_plan(&self, plan: &PlanId) -> Result<(), ApiError> {
        let found = self
            .store
            .topology()
            .plan_by_id(&plan.0)
            .await
            .map_err(internal("load plan"))?;
        if found.is_none() {
            return Err(ApiError {
                field: Some("plan_id".into()),
                ..ApiError::not_found(
                    "plan_not_found",
                    format!("There is no plan '{plan}'. Choose one of the plans listed."),
                )
            });
        }
        Ok(())
    }

    /// Seals the secret values of `spec`. A secret given without a value keeps the sealed
    /// value of the same name in `previous` (the current release).
    fn seal(
        &self,
        mut spec: DeploymentSpec,
        previous: Option<&DeploymentSpec>,
    ) -> Result<DeploymentSpec, ApiError> {
        for (i, var) in spec.env.iter_mut().enumerate() {
            if !var.secret {
                continue;
            }
            var.value = match var.value.take() {
                Some(plain) => Some(self.secrets.seal(&plain)),
                None => {
                    let kept = previous.and_then(|p| {
                        p.env
                            .iter()
                            .find(|v| v.secret && v.name == var.name)
                            .and_then(|v| v.value.clone())
                    });
                    Some(kept.ok_or_else(|| {
                        ApiError::invalid_field(
                            format!("env.{i}.value"),
                            "secret_value_required",
                            format!("Give a value for the new secret {}.", var.name),
                        )
                    })?)
                }
            };
        }
        Ok(spec)
    }

    async fn current_or_latest(&self, d: &DeploymentRecord) -> Result<ReleaseRecord, ApiError> {
        let releases = self
            .store
            .deployments()
            .releases(&d.id)
            .await
            .map_err(internal("list releases"))?;
        d.current_release_id
            .as_ref()
            .and_then(|id| releases.iter().find(|r| &r.id == id))
            .or_else(|| releases.first())
            .cloned()
            .ok_or_else(ApiError::internal)
    }

    /// Records a new release with `spec` (already sealed) and queues its rollout.
    async fn release(
        &self,
        ctx: &RequestContext,
        d: &DeploymentRecord,
        spec: &DeploymentSpec,
        digest: Option<String>,
        cause: String,
        kind: &str,
    ) -> Result<JobView, ApiError> {
        let volumes: Vec<String> = spec.volumes.iter().map(|v| v.name.clone()).collect();
        let release = NewRelease {
            spec: serde_json::to_string(spec).map_err(|_| ApiError::internal())?,
            image_digest: digest,
            cause,
            created_by: ctx.caller.as_ref().map(|u| u.id.0.clone()),
        };
        let job = self.job(ctx, d, kind, json!({"release_id": "{release_id}"}));
        let (_, job_id) = self
            .store
            .deployments()
            .add_release(d, release, &volumes, job)
            .await
            .map_err(internal("add release"))?
            .map_err(|t| taken(t, &d.name))?;
        self.job_answer(&job_id).await
    }
}

#[async_trait]
impl DeploymentService for DeploymentsService {
    async fn list_deployments(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<DeploymentView>, ApiError> {
        project_access(&self.store, ctx, project).await?;
        let store = self.store.deployments();
        let mut out = Vec::new();
        for d in store
            .for_project(&project.0)
            .await
            .map_err(internal("list deployments"))?
        {
            let releases = store
                .releases(&d.id)
                .await
                .map_err(internal("list releases"))?;
            out.push(deployment_view(d, &releases));
        }
        Ok(out)
    }

    async fn create_deployment(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        mut req: CreateDeployment,
    ) -> Result<DeploymentDetail, ApiError> {
        project_access(&self.store, ctx, project).await?;
        req.name = req.name.trim().to_owned();
        req.spec.image = req.spec.image.trim().to_owned();
        validate_create_deployment(&req)?;
        self.check_plan(&req.spec.plan_id).await?;
        let spec = self.seal(req.spec, None)?;
        let volumes: Vec<String> = spec.volumes.iter().map(|v| v.name.clone()).collect();
        let release = NewRelease {
            spec: serde_json::to_string(&spec).map_err(|_| ApiError::internal())?,
            image_digest: None,
            cause: "create".into(),
            created_by: ctx.caller.as_ref().map(|u| u.id.0.clone()),
        };
        let job = NewJob {
            kind: "deploy".into(),
            project_id: Some(project.0.clone()),
            deployment_id: None,
            payload: json!({"release_id": "{release_id}"}).to_string(),
            created_by: ctx.caller.as_ref().map(|u| u.id.0.clone()),
        };
        let (d, _, _) = self
            .store
            .deployments()
            .create(
                &project.0,
                &req.name,
                i64::from(req.replicas),
                release,
                &volumes,
                job,
            )
            .await
            .map_err(internal("create deployment"))?
            .map_err(|t| taken(t, &req.name))?;
        audit(
            &self.store,
            ctx,
            None,
            "deployment.create",
            format!("deployment:{}", d.id),
            json!({"project": project.0, "name": req.name, "image": spec.image, "replicas": req.replicas}),
        )
        .await?;
        self.wake_workers.notify_waiters();
        self.get_deployment(ctx, &DeploymentId(d.id)).await
    }

    async fn get_deployment(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<DeploymentDetail, ApiError> {
        let d = self.visible(ctx, id).await?;
        let project_name = self
            .store
            .projects()
            .by_id(&d.project_id)
            .await
            .map_err(internal("load project"))?
            .map(|p| p.name)
            .unwrap_or_default();
        let releases = self
            .store
            .deployments()
            .releases(&d.id)
            .await
            .map_err(internal("list releases"))?;
        let numbers: HashMap<String, i64> =
            releases.iter().map(|r| (r.id.clone(), r.number)).collect();
        let nodes: HashMap<String, String> = self
            .store
            .topology()
            .nodes()
            .await
            .map_err(internal("list nodes"))?
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        let mut instances: Vec<InstanceView> = self
            .store
            .locations()
            .for_deployment(&d.id)
            .await
            .map_err(internal("list instances"))?
            .into_iter()
            .map(|l| instance_view(l, &numbers, &nodes))
            .collect();
        instances.sort_by_key(|i| (std::cmp::Reverse(i.release_number), i.slot));
        let jobs = self
            .store
            .jobs()
            .for_deployment(&d.id, 10)
            .await
            .map_err(internal("list jobs"))?
            .into_iter()
            .map(job_view)
            .collect();
        let url = self
            .app_urls
            .as_ref()
            .map(|u| u.url(&d.name, &project_name));
        let https_url = self.generated_https_url(&d.name, &project_name).await?;
        Ok(DeploymentDetail {
            url,
            https_url,
            releases: releases.iter().map(release_view).collect(),
            deployment: deployment_view(d, &releases),
            project_name,
            instances,
            jobs,
        })
    }

    async fn act(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        action: DeploymentAction,
    ) -> Result<JobView, ApiError> {
        let d = self.visible(ctx, id).await?;
        if d.status == DeploymentStatus::Deleting.as_str() {
            return Err(ApiError::new(
                409,
                "deployment_deleting",
                "The deployment is being deleted.",
            ));
        }
        let kind = action.job_kind();
        let verb = match &action {
            DeploymentAction::Update { .. } => "update",
            DeploymentAction::Redeploy => "redeploy",
            _ => kind,
        };
        let detail = match &action {
            DeploymentAction::Scale { replicas } => json!({"replicas": replicas}),
            DeploymentAction::Rollback { release_id } => json!({"release_id": release_id}),
            DeploymentAction::Delete { remove_volumes } => {
                json!({"remove_volumes": remove_volumes})
            }
            DeploymentAction::Update { spec } => json!({"image": spec.image}),
            _ => json!({}),
        };
        let deployments = self.store.deployments();
        let job = match action {
            DeploymentAction::Update { mut spec } => {
                spec.image = spec.image.trim().to_owned();
                validate_spec(&spec)?;
                self.check_plan(&spec.plan_id).await?;
                let current = self.current_or_latest(&d).await?;
                let sealed = self.seal(spec, stored_spec(&current).as_ref())?;
                self.release(ctx, &d, &sealed, None, "update".into(), kind)
                    .await?
            }
            DeploymentAction::Redeploy => {
                let current = self.current_or_latest(&d).await?;
                let spec = stored_spec(&current).ok_or_else(ApiError::internal)?;
                self.release(ctx, &d, &spec, None, "redeploy".into(), kind)
                    .await?
            }
            DeploymentAction::Rollback { release_id } => {
                let target = deployments
                    .release_by_id(&release_id.0)
                    .await
                    .map_err(internal("load release"))?
                    .filter(|r| r.deployment_id == d.id)
                    .ok_or_else(|| {
                        ApiError::not_found(
                            "release_not_found",
                            "This deployment has no such release.",
                        )
                    })?;
                let spec = stored_spec(&target).ok_or_else(ApiError::internal)?;
                let cause = format!("rollback to #{}", target.number);
                self.release(ctx, &d, &spec, target.image_digest.clone(), cause, kind)
                    .await?
            }
            DeploymentAction::Scale { replicas } => {
                validate_replicas(replicas)?;
                deployments
                    .set_desired(&d.id, i64::from(replicas), &d.desired_state)
                    .await
                    .map_err(internal("scale"))?;
                self.enqueue(ctx, &d, kind, json!({"replicas": replicas}))
                    .await?
            }
            DeploymentAction::Stop | DeploymentAction::Start => {
                let state = if kind == "stop" { "stopped" } else { "running" };
                deployments
                    .set_desired(&d.id, d.replicas, state)
                    .await
                    .map_err(internal("set desired state"))?;
                self.enqueue(ctx, &d, kind, json!({})).await?
            }
            DeploymentAction::Restart => {
                if d.desired_state != "running" {
                    return Err(ApiError::new(
                        409,
                        "deployment_stopped",
                        "The deployment is stopped; start it instead of restarting.",
                    ));
                }
                self.enqueue(ctx, &d, kind, json!({})).await?
            }
            DeploymentAction::Delete { remove_volumes } => {
                deployments
                    .set_status(&d.id, DeploymentStatus::Deleting.as_str(), "")
                    .await
                    .map_err(internal("mark deleting"))?;
                self.enqueue(ctx, &d, kind, json!({"remove_volumes": remove_volumes}))
                    .await?
            }
        };
        audit(
            &self.store,
            ctx,
            None,
            &format!("deployment.{verb}"),
            format!("deployment:{}", d.id),
            detail,
        )
        .await?;
        Ok(job)
    }

    async fn get_job(&self, ctx: &RequestContext, id: &JobId) -> Result<JobView, ApiError> {
        ctx.user()?;
        let not_found =
            || ApiError::not_found("job_not_found", "No job with this id is visible to you.");
        let job = self
            .store
            .jobs()
            .by_id(&id.0)
            .await
            .map_err(internal("load job"))?
            .ok_or_else(not_found)?;
        let project = job.project_id.clone().ok_or_else(not_found)?;
        project_access(&self.store, ctx, &ProjectId(project))
            .await
            .map_err(|e| if e.status == 404 { not_found() } else { e })?;
        Ok(job_view(job))
    }

    async fn instance_logs(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        tail: u32,
    ) -> Result<Vec<LogLine>, ApiError> {
        self.recent_output(ctx, id, tail).await
    }

    async fn list_domains(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<DomainView>, ApiError> {
        self.domains_of(ctx, id).await
    }

    async fn add_domain(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        domain: AddDomain,
    ) -> Result<DomainView, ApiError> {
        self.attach_domain(ctx, id, domain).await
    }

    async fn verify_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
    ) -> Result<DomainView, ApiError> {
        self.check_domain_now(ctx, id).await
    }

    async fn remove_domain(&self, ctx: &RequestContext, id: &DomainId) -> Result<(), ApiError> {
        self.detach_domain(ctx, id).await
    }

    async fn update_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
        update: UpdateDomain,
    ) -> Result<DomainView, ApiError> {
        self.change_domain(ctx, id, update).await
    }

    async fn list_path_routes(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<PathRouteView>, ApiError> {
        self.path_routes_of(ctx, id).await
    }

    async fn add_path_route(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        route: AddPathRoute,
    ) -> Result<PathRouteView, ApiError> {
        self.attach_path_route(ctx, id, route).await
    }

    async fn remove_path_route(
        &self,
        ctx: &RequestContext,
        id: &PathRouteId,
    ) -> Result<(), ApiError> {
        self.detach_path_route(ctx, id).await
    }

    async fn live_metrics(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<MetricsSample>, ApiError> {
        self.live_window(ctx, id).await
    }

    async fn metrics_history(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        range: HistoryRange,
    ) -> Result<MetricsHistory, ApiError> {
        self.history(ctx, id, range).await
    }

    async fn project_metrics_now(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<DeploymentNow>, ApiError> {
        self.project_now(ctx, project).await
    }

    async fn project_usage(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        from_ms: i64,
        to_ms: i64,
        hourly: bool,
    ) -> Result<ProjectUsage, ApiError> {
        self.usage(ctx, project, from_ms, to_ms, hourly).await
    }
}
