//! Named volumes of deployments: the Docker volume behind each at its generation, and the
//! switch to new generations that a restore fills (`backups`).

use app::model::DeploymentSpec;
use futures_util::future::join_all;

use super::{instances::STOP_GRACE_SECS, volume_name, DeployError, Orchestrator};
use crate::{jobs::Progress, store::DeploymentRecord};

impl Orchestrator {
    /// The deployment's named volumes as (Docker volume, mount path), each at the generation
    /// the store records.
    pub(crate) async fn volume_mounts(
        &self,
        deployment: &DeploymentRecord,
        spec: &DeploymentSpec,
    ) -> Result<Vec<(String, String)>, DeployError> {
        let generations: std::collections::HashMap<String, i64> = self
            .store
            .deployments()
            .volume_generations(&deployment.id)
            .await?
            .into_iter()
            .collect();
        Ok(spec
            .volumes
            .iter()
            .map(|v| {
                let generation = generations.get(&v.name).copied().unwrap_or(0);
                (
                    volume_name(&deployment.project_id, &v.name, generation),
                    v.mount_path.clone(),
                )
            })
            .collect())
    }

    /// Switches the deployment's named volumes to new generations (filled by a restore):
    /// every instance is stopped and removed, the store switches to `generations` in one
    /// transaction, and, when the deployment should run, the current release is started
    /// again on the new volumes and waited for until healthy.
    ///
    /// # Errors
    /// Any failure stopping the instances (then nothing was switched), writing the store, or
    /// starting the release again (then the new volumes are in place, and the reconciler and
    /// a later start keep trying).
    pub async fn replace_volumes(
        &self,
        deployment: &DeploymentRecord,
        generations: &[(String, i64)],
        progress: &Progress,
    ) -> Result<(), DeployError> {
        progress
            .begin("stop", "stopping the instances to switch volumes")
            .await;
        let locs = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?;
        for r in join_all(locs.iter().map(|l| self.retire(l, STOP_GRACE_SECS))).await {
            r?;
        }
        progress.begin("switch volumes", "").await;
        self.store
            .deployments()
            .set_volume_generations(&deployment.id, generations)
            .await?;
        let result = if deployment.desired_state == "running" {
            self.converge(deployment, progress).await
        } else {
            Ok(())
        };
        self.refresh_status(&deployment.id).await?;
        result
    }
}
