//! Instances' recent output, behind [`DeploymentService::instance_logs`](app::services::DeploymentService):
//! the last lines of every instance of a deployment, merged by timestamp. Following live is
//! `http::ws`.

use app::{model::*, services::RequestContext};
use futures_util::StreamExt;

use super::{deployments::DeploymentsService, internal};

/// Most log lines one request returns.
pub const LOG_TAIL_MAX: u32 = 5000;

impl DeploymentsService {
    /// The last `tail` lines (1 to [`LOG_TAIL_MAX`]) of every instance, oldest first.
    ///
    /// # Errors
    /// 404 for a deployment the caller may not see; engine failures are logged and that
    /// instance's lines left out.
    pub(super) async fn recent_output(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        tail: u32,
    ) -> Result<Vec<LogLine>, ApiError> {
        let d = self.visible(ctx, id).await?;
        let tail = tail.clamp(1, LOG_TAIL_MAX);
        let locations = self
            .store
            .locations()
            .for_deployment(&d.id)
            .await
            .map_err(internal("list instances"))?;
        let mut lines = Vec::new();
        for loc in locations {
            let (Some(container), Ok(engine)) = (
                loc.container_id.clone(),
                self.orchestrator.engine(&loc.node_id),
            ) else {
                continue;
            };
            let mut stream = Box::pin(engine.container_output(&container, tail, false));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(line) => lines.push(LogLine {
                        instance_id: InstanceId(loc.id.clone()),
                        stream: line.stream.into(),
                        timestamp: line.timestamp,
                        text: line.text,
                    }),
                    Err(e) => {
                        tracing::warn!(container.id = %container, error = %e, "cannot read logs");
                        break;
                    }
                }
            }
        }
        lines.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        let excess = lines.len().saturating_sub(tail as usize);
        lines.drain(..excess);
        Ok(lines)
    }
}
