//! The job handlers: deploy (and rollback) a release health-gated, converge replicas (scale,
//! start), stop, restart, delete. Each is idempotent: run again after a crash, it finds the
//! rows and containers it made (deterministic names per release and slot) and carries on.

use std::collections::{BTreeSet, HashMap};

use app::model::{DeploymentSpec, DeploymentStatus};
use futures_util::future::join_all;
use serde::Deserialize;

use super::{
    instances::{DISCARD_GRACE_SECS, STOP_GRACE_SECS},
    placement::{Candidate, Demand, Strategy},
    release_spec, volume_name, DeployError, Orchestrator,
};
use crate::{
    jobs::Progress,
    store::{DeploymentRecord, JobRecord, LocationRecord, ReleaseRecord},
};

#[derive(Deserialize, Default)]
struct Payload {
    release_id: Option<String>,
    #[serde(default)]
    remove_volumes: bool,
}

impl crate::jobs::JobHandler for Orchestrator {
    fn run<'a>(
        &'a self,
        job: &'a JobRecord,
        progress: &'a Progress,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            self.run_job(job, progress).await.map_err(|e| {
                if let DeployError::Store(inner) = &e {
                    tracing::error!(job.id = %job.id, error = %inner, "store failure in job");
                }
                e.to_string()
            })
        })
    }
}

impl Orchestrator {
    /// Runs one job to its end. The deployment's status is refreshed afterwards, whatever the
    /// outcome.
    ///
    /// # Errors
    /// The reason the job failed, written for people.
    pub async fn run_job(&self, job: &JobRecord, progress: &Progress) -> Result<(), DeployError> {
        let payload: Payload = serde_json::from_str(&job.payload).unwrap_or_default();
        let Some(deployment_id) = job.deployment_id.as_deref() else {
            return Err(DeployError::Invalid(format!(
                "job kind '{}' needs a deployment",
                job.kind
            )));
        };
        let Some(deployment) = self.store.deployments().by_id(deployment_id).await? else {
            if job.kind == "delete" {
                return Ok(()); // finished before a crash
            }
            return Err(DeployError::Invalid(
                "the deployment no longer exists".into(),
            ));
        };
        let result = match job.kind.as_str() {
            "deploy" | "rollback" => {
                let release_id = payload
                    .release_id
                    .ok_or_else(|| DeployError::Invalid("no release in the job".into()))?;
                self.deploy_release(&deployment, &release_id, progress)
                    .await
            }
            "scale" | "start" => self.converge(&deployment, progress).await,
            "stop" => self.stop_all(&deployment, progress).await,
            "restart" => self.restart_all(&deployment, progress).await,
            "delete" => {
                return self
                    .delete(&deployment, payload.remove_volumes, progress)
                    .await
            }
            other => Err(DeployError::Invalid(format!("unknown job kind '{other}'"))),
        };
        self.refresh_status(&deployment.id).await?;
        result
    }

    /// Nodes as placement sees them, with what runs there and how much of `release_id`.
    async fn candidates(&self, release_id: &str) -> Result<Vec<Candidate>, DeployError> {
        let topology = self.store.topology();
        let strategies: HashMap<String, String> =
            topology.region_strategies().await?.into_iter().collect();
        let allocations: HashMap<String, _> = self
            .store
            .locations()
            .allocations()
            .await?
            .into_iter()
            .map(|a| (a.node_id.clone(), a))
            .collect();
        let all = self.store.locations().all().await?;
        let connected: BTreeSet<String> = self.engines().into_iter().map(|(id, _)| id).collect();
        Ok(topology
            .nodes()
            .await?
            .into_iter()
            .map(|n| {
                let a = allocations.get(&n.id).cloned().unwrap_or_default();
                let state = if connected.contains(&n.id) && n.last_error.is_none() {
                    n.state.clone()
                } else {
                    "unreachable".into()
                };
                Candidate {
                    of_deployment: all
                        .iter()
                        .filter(|l| l.node_id == n.id && l.release_id == release_id)
                        .count() as i64,
                    strategy: strategies
                        .get(&n.region)
                        .and_then(|s| Strategy::parse(s))
                        .unwrap_or(Strategy::LeastLoaded),
                    node_id: n.id,
                    node_name: n.name,
                    region: n.region,
                    state,
                    cpu_millicores: n.cpu_millicores,
                    memory_bytes: n.memory_bytes,
                    max_instances: n.max_instances,
                    instances: a.instances,
                    cpu_allocated: a.cpu_millicores,
                    memory_allocated: a.memory_bytes,
                }
            })
            .collect())
    }

    /// Brings the instances of `release` to the deployment's desired count: places and starts
    /// missing slots, retires extra ones, and waits until every started one is healthy.
    /// Returns the instances started now (to clean up if the caller gives up).
    async fn fill_release(
        &self,
        deployment: &DeploymentRecord,
        release: &ReleaseRecord,
        spec: &DeploymentSpec,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let desired = if deployment.desired_state == "running" {
            deployment.replicas
        } else {
            0
        };
        let mine: Vec<LocationRecord> = self.release_locations(&deployment.id, &release.id).await?;
        for extra in mine.iter().filter(|l| l.slot >= desired) {
            progress
                .note(format!("removing instance {}", extra.slot))
                .await;
            self.retire(extra, STOP_GRACE_SECS).await?;
        }
        let have: BTreeSet<i64> = mine.iter().map(|l| l.slot).collect();
        let missing: Vec<i64> = (0..desired).filter(|s| !have.contains(s)).collect();
        let plan = self
            .store
            .topology()
            .plan_by_id(&spec.plan_id.0)
            .await?
            .ok_or_else(|| {
                DeployError::Invalid(format!("the plan '{}' no longer exists", spec.plan_id))
            })?;
        progress
            .begin(
                "placement",
                format!("{} new instance(s) of plan '{}'", missing.len(), plan.name),
            )
            .await;
        let nodes = if missing.is_empty() {
            Vec::new()
        } else {
            let demand = Demand {
                plan_name: plan.name.clone(),
                cpu_millicores: plan.cpu_millicores,
                memory_bytes: plan.memory_bytes,
            };
            let candidates = self.candidates(&release.id).await?;
            self.next_placement(&candidates, &demand, missing.len())?
        };
        progress
            .begin("image", format!("resolving {}", spec.image))
            .await;
        let mut prepared = BTreeSet::new();
        for node_id in &nodes {
            if prepared.insert(node_id.clone()) {
                let engine = self.engine(node_id)?;
                let image = engine
                    .resolve_image(release.image_digest.as_deref().unwrap_or(&spec.image))
                    .await?;
                if release.image_digest.is_none() {
                    self.store
                        .deployments()
                        .set_release_digest(&release.id, &image.id)
                        .await?;
                }
                self.prepare_node(&engine, deployment, spec).await?;
            }
        }
        // Re-read: the digest may have just been recorded.
        let release = self
            .store
            .deployments()
            .release_by_id(&release.id)
            .await?
            .ok_or_else(|| DeployError::Invalid("the release vanished".into()))?;
        progress
            .begin("start", format!("starting {} instance(s)", missing.len()))
            .await;
        for (slot, node_id) in missing.iter().zip(&nodes) {
            let id = crate::store::new_id();
            let loc = LocationRecord {
                container_name: format!(
                    "berth-{}-r{}-{}-{}",
                    deployment.name,
                    release.number,
                    slot,
                    &id[id.len() - 8..]
                ),
                id,
                deployment_id: deployment.id.clone(),
                release_id: release.id.clone(),
                node_id: node_id.clone(),
                slot: *slot,
                container_id: None,
                status: "creating".into(),
                health: "starting".into(),
                ip_address: None,
                port: spec.http_port.map(i64::from),
                cpu_millicores: plan.cpu_millicores,
                memory_bytes: plan.memory_bytes,
                restart_count: 0,
                last_exit_code: None,
                last_error: String::new(),
                started_at_ms: None,
                updated_at_ms: 0,
            };
            self.store.locations().insert_or_get(&loc).await?;
        }
        let all: Vec<LocationRecord> = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?
            .into_iter()
            .filter(|l| l.release_id == release.id && l.slot < desired)
            .collect();
        let mut launched = Vec::new();
        for loc in &all {
            let healthy_now = loc.status == "running" && loc.health == "healthy";
            if !healthy_now {
                let container = self.launch(deployment, &release, spec, loc).await?;
                launched.push((loc.clone(), container));
            }
        }
        if launched.is_empty() {
            return Ok(());
        }
        progress
            .begin(
                "health",
                format!(
                    "waiting for {} instance(s) to become healthy",
                    launched.len()
                ),
            )
            .await;
        let waits = launched
            .iter()
            .map(|(loc, container)| self.wait_healthy(deployment, spec, loc, container));
        for result in join_all(waits).await {
            result?;
        }
        Ok(())
    }

    /// Rolls out `release_id`: new instances first, health-gated; then the switch; then the
    /// old instances stop. If the new ones never get healthy they are removed, the release is
    /// marked failed with the reason, and the old release keeps running untouched.
    async fn deploy_release(
        &self,
        deployment: &DeploymentRecord,
        release_id: &str,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let release = self
            .store
            .deployments()
            .release_by_id(release_id)
            .await?
            .filter(|r| r.deployment_id == deployment.id)
            .ok_or_else(|| DeployError::Invalid("the release does not exist".into()))?;
        if release.status == "failed" {
            return Err(DeployError::Unhealthy(release.failure_reason));
        }
        let spec = release_spec(&release)?;
        if release.status != "active" {
            if let Err(e) = self
                .fill_release(deployment, &release, &spec, progress)
                .await
            {
                let reason = e.to_string();
                progress
                    .note("removing the new instances; the previous release keeps running")
                    .await;
                self.discard_release(deployment, &release.id).await?;
                self.store
                    .deployments()
                    .fail_release(&release.id, &reason)
                    .await?;
                return Err(e);
            }
            progress
                .begin(
                    "switch",
                    format!("release #{} is now current", release.number),
                )
                .await;
            self.store
                .deployments()
                .activate_release(&deployment.id, &release.id)
                .await?;
        }
        progress
            .begin("stop old", "stopping instances of earlier releases")
            .await;
        let old: Vec<LocationRecord> = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?
            .into_iter()
            .filter(|l| l.release_id != release.id)
            .collect();
        // The ingress routes to the new release from now on; old instances get no new
        // requests and finish what they serve before they are stopped.
        self.routes_changed.notify_one();
        if !old.is_empty() {
            tokio::time::sleep(ROUTE_DRAIN).await;
        }
        for r in join_all(old.iter().map(|l| self.retire(l, STOP_GRACE_SECS))).await {
            r?;
        }
        progress.done().await;
        Ok(())
    }

    /// Removes every instance of a release that did not make it.
    async fn discard_release(
        &self,
        deployment: &DeploymentRecord,
        release_id: &str,
    ) -> Result<(), DeployError> {
        let locs: Vec<LocationRecord> = self.release_locations(&deployment.id, release_id).await?;
        for r in join_all(locs.iter().map(|l| self.retire(l, DISCARD_GRACE_SECS))).await {
            r?;
        }
        Ok(())
    }

    /// The instances of one release of a deployment.
    async fn release_locations(
        &self,
        deployment_id: &str,
        release_id: &str,
    ) -> Result<Vec<LocationRecord>, DeployError> {
        Ok(self
            .store
            .locations()
            .for_deployment(deployment_id)
            .await?
            .into_iter()
            .filter(|l| l.release_id == release_id)
            .collect())
    }

    /// The deployment's current release and its spec.
    ///
    /// # Errors
    /// `Invalid` when no release ever became current (nothing to scale, start or restart).
    pub(crate) async fn current_release(
        &self,
        deployment: &DeploymentRecord,
    ) -> Result<(ReleaseRecord, DeploymentSpec), DeployError> {
        let Some(release_id) = &deployment.current_release_id else {
            return Err(DeployError::Invalid(
                "the deployment has no working release yet; deploy one first".into(),
            ));
        };
        let release = self
            .store
            .deployments()
            .release_by_id(release_id)
            .await?
            .ok_or_else(|| DeployError::Invalid("the current release vanished".into()))?;
        let spec = release_spec(&release)?;
        Ok((release, spec))
    }

    /// Scale and start: the current release gets the desired number of healthy instances.
    pub(super) async fn converge(
        &self,
        deployment: &DeploymentRecord,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let (release, spec) = self.current_release(deployment).await?;
        self.fill_release(deployment, &release, &spec, progress)
            .await?;
        progress.done().await;
        Ok(())
    }

    /// Stops every instance; containers are kept so a start is quick.
    async fn stop_all(
        &self,
        deployment: &DeploymentRecord,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        progress.begin("stop", "stopping instances").await;
        let locs = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?;
        let stops = locs.iter().map(|loc| async move {
            let engine = self.engine(&loc.node_id)?;
            let target = loc.container_id.as_deref().unwrap_or(&loc.container_name);
            engine.stop_container(target, STOP_GRACE_SECS).await?;
            self.store
                .locations()
                .record(
                    &loc.id,
                    &crate::store::ObservedState {
                        status: "stopped".into(),
                        health: "none".into(),
                        ..Default::default()
                    },
                )
                .await?;
            Ok::<(), DeployError>(())
        });
        for r in join_all(stops).await {
            r?;
        }
        progress.done().await;
        Ok(())
    }

    /// Restarts instances one at a time, each healthy again before the next.
    async fn restart_all(
        &self,
        deployment: &DeploymentRecord,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let (release, spec) = self.current_release(deployment).await?;
        let locs: Vec<LocationRecord> = self.release_locations(&deployment.id, &release.id).await?;
        for loc in &locs {
            progress
                .begin("restart", format!("restarting instance {}", loc.slot))
                .await;
            let engine = self.engine(&loc.node_id)?;
            let target = loc
                .container_id
                .clone()
                .unwrap_or_else(|| loc.container_name.clone());
            engine.stop_container(&target, STOP_GRACE_SECS).await?;
            let container = self.launch(deployment, &release, &spec, loc).await?;
            self.wait_healthy(deployment, &spec, loc, &container)
                .await?;
        }
        progress.done().await;
        Ok(())
    }

    /// Removes every instance, then (if asked) the volumes, then the records.
    async fn delete(
        &self,
        deployment: &DeploymentRecord,
        remove_volumes: bool,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        progress.begin("remove instances", "").await;
        let locs = self
            .store
            .locations()
            .for_deployment(&deployment.id)
            .await?;
        for r in join_all(locs.iter().map(|l| self.retire(l, STOP_GRACE_SECS))).await {
            r?;
        }
        if remove_volumes {
            progress.begin("remove volumes", "").await;
            let deployments = self.store.deployments();
            let volumes = deployments.volume_generations(&deployment.id).await?;
            for (node_id, engine) in self.engines() {
                for (name, generation) in &volumes {
                    engine
                        .remove_volume(&volume_name(&deployment.project_id, name, *generation))
                        .await
                        .map_err(|e| {
                            tracing::warn!(node.id = %node_id, volume = %name, error = %e, "cannot remove volume");
                            e
                        })?;
                }
            }
        }
        progress
            .begin("forget", "deleting the deployment's records")
            .await;
        self.store.deployments().delete(&deployment.id).await?;
        progress.done().await;
        Ok(())
    }

    /// Derives the deployment's status from its records and stores it.
    pub async fn refresh_status(&self, deployment_id: &str) -> Result<(), DeployError> {
        let Some(d) = self.store.deployments().by_id(deployment_id).await? else {
            return Ok(());
        };
        let releases = self.store.deployments().releases(&d.id).await?;
        let locs = self.store.locations().for_deployment(&d.id).await?;
        let (status, message) = derive_status(&d, &releases, &locs);
        if status.as_str() != d.status || message != d.status_message {
            self.store
                .deployments()
                .set_status(&d.id, status.as_str(), &message)
                .await?;
        }
        // Healthy instances may have come or gone: the ingress rebuilds its table.
        self.routes_changed.notify_one();
        Ok(())
    }
}

/// How long old instances keep serving in-flight requests after the switch, before they are
/// stopped (the ingress has rebuilt its table well within this).
pub const ROUTE_DRAIN: std::time::Duration = std::time::Duration::from_millis(1000);

/// Restarts in a row after which an instance counts as crash-looping.
pub const CRASH_LOOP_RESTARTS: i64 = 3;

/// The status shown for a deployment: stopped when the user stopped it; failed when no
/// release ever became healthy; running when all wanted instances of the current release are
/// healthy; crash-loop when one keeps exiting; degraded otherwise. A newer failed release
/// is mentioned in the message while the current one keeps running.
pub fn derive_status(
    d: &DeploymentRecord,
    releases: &[ReleaseRecord],
    locs: &[LocationRecord],
) -> (DeploymentStatus, String) {
    let latest_failed = releases.first().filter(|r| r.status == "failed");
    let failed_note = latest_failed
        .map(|r| format!("Release #{} failed: {}", r.number, r.failure_reason))
        .unwrap_or_default();
    if d.desired_state == "stopped" {
        return (DeploymentStatus::Stopped, failed_note);
    }
    let Some(current) = &d.current_release_id else {
        return if latest_failed.is_some() {
            (DeploymentStatus::Failed, failed_note)
        } else {
            (DeploymentStatus::Deploying, String::new())
        };
    };
    let current_locs: Vec<&LocationRecord> =
        locs.iter().filter(|l| &l.release_id == current).collect();
    let healthy = current_locs
        .iter()
        .filter(|l| l.status == "running" && l.health == "healthy")
        .count() as i64;
    let kept_note = if failed_note.is_empty() {
        String::new()
    } else {
        format!("{failed_note} The previous release keeps running.")
    };
    if healthy >= d.replicas {
        return (DeploymentStatus::Running, kept_note);
    }
    if let Some(looping) = current_locs
        .iter()
        .find(|l| l.restart_count >= CRASH_LOOP_RESTARTS && l.status != "running")
    {
        return (DeploymentStatus::CrashLoop, looping.last_error.clone());
    }
    let note = current_locs
        .iter()
        .find(|l| !l.last_error.is_empty())
        .map(|l| l.last_error.clone())
        .unwrap_or_else(|| format!("{healthy} of {} instances healthy", d.replicas));
    (DeploymentStatus::Degraded, note)
}
