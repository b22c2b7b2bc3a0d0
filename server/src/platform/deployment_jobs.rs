//! Queuing a deployment's work: the job record of an action and the answer a caller gets
//! once it is queued (the workers are woken at once).

use app::{model::*, services::RequestContext};

use super::{deployment_views::job_view, deployments::DeploymentsService, internal};
use crate::store::{DeploymentRecord, NewJob};

impl DeploymentsService {
    /// The job record of `kind` on `d`, by the caller.
    pub(super) fn job(
        &self,
        ctx: &RequestContext,
        d: &DeploymentRecord,
        kind: &str,
        payload: serde_json::Value,
    ) -> NewJob {
        NewJob {
            kind: kind.into(),
            project_id: Some(d.project_id.clone()),
            deployment_id: Some(d.id.clone()),
            payload: payload.to_string(),
            created_by: ctx.caller.as_ref().map(|u| u.id.0.clone()),
        }
    }

    /// The queued job `id` as the caller sees it, after waking the workers.
    pub(super) async fn job_answer(&self, id: &str) -> Result<JobView, ApiError> {
        self.wake_workers.notify_waiters();
        let job = self
            .store
            .jobs()
            .by_id(id)
            .await
            .map_err(internal("load job"))?
            .ok_or_else(ApiError::internal)?;
        Ok(job_view(job))
    }

    /// Queues the job of `kind` on `d` and answers it.
    pub(super) async fn enqueue(
        &self,
        ctx: &RequestContext,
        d: &DeploymentRecord,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<JobView, ApiError> {
        let id = self
            .store
            .jobs()
            .enqueue(self.job(ctx, d, kind, payload))
            .await
            .map_err(internal("queue job"))?;
        self.job_answer(&id).await
    }
}
