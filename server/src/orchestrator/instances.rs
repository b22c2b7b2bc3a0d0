//! One instance: its container spec, launching it, waiting for it to be healthy, retiring it.

use std::{sync::Arc, time::Instant};

use app::model::DeploymentSpec;
use futures_util::StreamExt;

use super::{
    health::{probe_http, probe_tcp, Check, ProbeKind},
    labels, network_name, DeployError, Orchestrator,
};
use crate::{
    runtime::{CommandHealthcheck, ContainerSpec, Engine},
    store::{DeploymentRecord, LocationRecord, ObservedState, ReleaseRecord},
};

/// Most processes per instance (`PidsLimit`); enough for app servers, stops fork bombs.
pub const PIDS_LIMIT: i64 = 512;
/// Seconds an instance gets between SIGTERM and SIGKILL when stopped.
pub const STOP_GRACE_SECS: i32 = 10;
/// Seconds an instance that never served gets (a failed rollout's, a leftover).
pub const DISCARD_GRACE_SECS: i32 = 1;

fn ms_to_ns(ms: u32) -> i64 {
    i64::from(ms) * 1_000_000
}

impl Orchestrator {
    /// The container for `loc`: the release's image (by digest), env with secrets opened,
    /// the plan's limits, the project network with the deployment name as alias, named
    /// volumes, Berth's labels.
    ///
    /// # Errors
    /// `Invalid` when a secret cannot be opened (wrong key).
    pub(crate) fn container_spec(
        &self,
        deployment: &DeploymentRecord,
        release: &ReleaseRecord,
        spec: &DeploymentSpec,
        loc: &LocationRecord,
        volumes: Vec<(String, String)>,
    ) -> Result<ContainerSpec, DeployError> {
        let mut env = Vec::with_capacity(spec.env.len());
        for var in &spec.env {
            let value = match (&var.value, var.secret) {
                (Some(sealed), true) => self.secrets.open(sealed).map_err(|e| {
                    DeployError::Invalid(format!("the secret {} cannot be read: {e}", var.name))
                })?,
                (Some(v), false) => v.clone(),
                (None, _) => String::new(),
            };
            env.push(format!("{}={value}", var.name));
        }
        let mut container_labels = self.project_labels(&deployment.project_id);
        container_labels.insert(labels::DEPLOYMENT.into(), deployment.id.clone());
        container_labels.insert(labels::RELEASE.into(), release.id.clone());
        container_labels.insert(labels::INSTANCE.into(), loc.id.clone());
        let healthcheck = spec.health_check.as_ref().and_then(|hc| match &hc.probe {
            app::model::HealthProbe::Command { command } => Some(CommandHealthcheck {
                command: command.clone(),
                interval_ns: ms_to_ns(hc.interval_ms),
                timeout_ns: ms_to_ns(hc.timeout_ms),
                retries: i64::from(hc.retries),
                start_period_ns: ms_to_ns(hc.start_period_ms),
            }),
            app::model::HealthProbe::Http { .. } => None,
        });
        Ok(ContainerSpec {
            name: loc.container_name.clone(),
            image: release
                .image_digest
                .clone()
                .unwrap_or_else(|| spec.image.clone()),
            command: spec.command.clone(),
            env,
            labels: container_labels,
            http_port: spec.http_port,
            network: network_name(&deployment.project_id),
            network_aliases: vec![deployment.name.clone()],
            nano_cpus: loc.cpu_millicores * 1_000_000,
            memory_bytes: loc.memory_bytes,
            pids_limit: PIDS_LIMIT,
            volumes,
            healthcheck,
        })
    }

    /// Creates the project network and the deployment's volumes on the node (idempotent).
    pub(crate) async fn prepare_node(
        &self,
        engine: &Engine,
        deployment: &DeploymentRecord,
        spec: &DeploymentSpec,
    ) -> Result<(), DeployError> {
        let labels = self.project_labels(&deployment.project_id);
        engine
            .ensure_network(&network_name(&deployment.project_id), &labels)
            .await?;
        for (volume, _) in self.volume_mounts(deployment, spec).await? {
            engine.ensure_volume(&volume, &labels).await?;
        }
        Ok(())
    }

    /// Creates (or finds) and starts the container of `loc`, and records its id.
    pub(crate) async fn launch(
        &self,
        deployment: &DeploymentRecord,
        release: &ReleaseRecord,
        spec: &DeploymentSpec,
        loc: &LocationRecord,
    ) -> Result<String, DeployError> {
        let engine = self.engine(&loc.node_id)?;
        let volumes = self.volume_mounts(deployment, spec).await?;
        let container = self.container_spec(deployment, release, spec, loc, volumes)?;
        let id = engine.create_container(&container).await?;
        self.store
            .locations()
            .record(
                &loc.id,
                &ObservedState {
                    container_id: Some(id.clone()),
                    status: "created".into(),
                    health: "starting".into(),
                    ..Default::default()
                },
            )
            .await?;
        engine.start_container(&id).await?;
        Ok(id)
    }

    /// The last `lines` lines the container printed, for failure messages.
    pub(crate) async fn last_output(
        &self,
        engine: &Engine,
        container_id: &str,
        lines: u32,
    ) -> String {
        let mut out = Vec::new();
        let mut stream = Box::pin(engine.container_output(container_id, lines, false));
        let collect = async {
            while let Some(Ok(line)) = stream.next().await {
                out.push(line.text);
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), collect).await;
        if out.is_empty() {
            "(no output)".into()
        } else {
            out.join("\n")
        }
    }

    /// Waits until the instance passes its health check, recording its address and health.
    ///
    /// # Errors
    /// `Unhealthy` saying what was seen: the exit code and last output of a container that
    /// stopped, or the last probe failure when the deadline passed.
    pub(crate) async fn wait_healthy(
        &self,
        deployment: &DeploymentRecord,
        spec: &DeploymentSpec,
        loc: &LocationRecord,
        container_id: &str,
    ) -> Result<(), DeployError> {
        let engine: Arc<Engine> = self.engine(&loc.node_id)?;
        let network = network_name(&deployment.project_id);
        let check = Check::for_spec(spec);
        let started = Instant::now();
        let mut failures = 0;
        let mut last_error: String;
        let who = format!("Instance {}", loc.slot);
        loop {
            let Some(status) = engine
                .inspect_container(container_id, Some(&network))
                .await?
            else {
                return Err(DeployError::Unhealthy(format!(
                    "{who}: its container was removed while starting."
                )));
            };
            if !status.running() {
                let output = self.last_output(&engine, container_id, 10).await;
                let code = status.exit_code.unwrap_or(-1);
                let oom = if status.oom_killed {
                    " (killed: out of memory)"
                } else {
                    ""
                };
                let reason = format!("{who} exited with code {code}{oom}. Last output:\n{output}");
                self.store
                    .locations()
                    .record(
                        &loc.id,
                        &ObservedState {
                            status: "exited".into(),
                            health: "unhealthy".into(),
                            last_exit_code: Some(code),
                            last_error: reason.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                return Err(DeployError::Unhealthy(reason));
            }
            let (ip, reached_port) = status.reached_at(spec.http_port);
            let ip = ip.unwrap_or_default();
            let in_start = started.elapsed() < check.start_period;
            let result = match &check.kind {
                ProbeKind::Http { port, path } => {
                    let port = reached_port.unwrap_or(*port);
                    probe_http(&self.http, &ip, port, path, check.timeout).await
                }
                ProbeKind::Tcp { port } => {
                    probe_tcp(&ip, reached_port.unwrap_or(*port), check.timeout).await
                }
                ProbeKind::Docker => match status.health.as_deref() {
                    Some("healthy") => Ok(()),
                    Some("unhealthy") => {
                        failures = check.retries;
                        Err("the health check command keeps failing".to_owned())
                    }
                    _ => Err("the health check command has not passed yet".to_owned()),
                },
                ProbeKind::Running if in_start => Err("still in its start period".to_owned()),
                ProbeKind::Running => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.store
                        .locations()
                        .record(
                            &loc.id,
                            &ObservedState {
                                status: "running".into(),
                                health: "healthy".into(),
                                ip_address: Some(ip.clone()).filter(|ip| !ip.is_empty()),
                                port: reached_port.map(i64::from),
                                started_at_ms: status.started_at_ms,
                                ..Default::default()
                            },
                        )
                        .await?;
                    return Ok(());
                }
                Err(e) => {
                    last_error = e;
                    if !in_start && !matches!(check.kind, ProbeKind::Docker) {
                        failures += 1;
                    }
                }
            }
            if failures >= check.retries || started.elapsed() >= check.deadline() {
                break;
            }
            tokio::time::sleep(check.pace(in_start)).await;
        }
        let reason = format!(
            "{who} did not become healthy within {:.1} s: {last_error} (waited for {}).",
            started.elapsed().as_secs_f64(),
            check.describe()
        );
        self.store
            .locations()
            .set_health(&loc.id, "unhealthy", &reason)
            .await?;
        Err(DeployError::Unhealthy(reason))
    }

    /// Stops (SIGTERM, SIGKILL after `grace_secs`) and removes the instance's container and
    /// deletes its row.
    pub(crate) async fn retire(
        &self,
        loc: &LocationRecord,
        grace_secs: i32,
    ) -> Result<(), DeployError> {
        let engine = self.engine(&loc.node_id)?;
        let target = loc.container_id.as_deref().unwrap_or(&loc.container_name);
        engine.stop_container(target, grace_secs).await?;
        engine.remove_container(target).await?;
        self.store.locations().delete(&loc.id).await?;
        Ok(())
    }
}
