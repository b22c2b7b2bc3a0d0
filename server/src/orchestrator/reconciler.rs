//! The reconciler: converges what runs on the nodes to what the store wants. It follows each
//! engine's event stream (a `die` is acted on at once) and resyncs everything every
//! `reconcile_interval_secs`.
//!
//! Per instance of a deployment's current release, when the user wants it running:
//! - container running → status recorded (and Docker health, for command checks);
//! - container exited → started again if the restart policy says so, after an exponential
//!   backoff (0, 0.5, 1, 2, … 60 s) over consecutive crashes; its exit code and last output
//!   are recorded, and three restarts in a row show the deployment as crash-looping;
//! - container missing → created again from the release.
//!
//! Instances of other releases with no job running are leftovers of an interrupted rollout and
//! are removed; containers labelled with this installation but with no row are orphans and
//! are removed. Deployments with a queued or running job are left to the job. Healthy
//! containers are never touched, so a Berth restart does not disturb them.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{labels, network_name, release_spec, DeployError, Orchestrator};
use crate::{
    runtime::ContainerStatus,
    store::{DeploymentRecord, LocationRecord, ObservedState},
};

/// Longest wait between restarts of a crashing instance.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Running this long without exiting resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Delay before restart number `consecutive` + 1 (0-based count of crashes in a row):
/// immediately the first time, then 0.5 s doubling up to [`MAX_BACKOFF`].
pub fn backoff_delay(consecutive: u32) -> Duration {
    if consecutive == 0 {
        return Duration::ZERO;
    }
    let exp = consecutive.saturating_sub(1).min(16);
    (Duration::from_millis(500) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    consecutive: u32,
    last_start: Instant,
}

/// What one resync saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncReport {
    pub instances: usize,
    pub restarted: usize,
    pub recreated: usize,
    pub orphans_removed: usize,
    pub leftovers_removed: usize,
    /// Docker Engine API calls made.
    pub docker_calls: u64,
}

/// The reconciler of this process.
pub struct Reconciler {
    orch: Arc<Orchestrator>,
    backoff: Mutex<HashMap<String, Backoff>>,
    calls: AtomicU64,
    wake: mpsc::UnboundedSender<String>,
    woken: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    /// Nodes whose event stream has a follower task.
    followed: Mutex<BTreeSet<String>>,
}

impl Reconciler {
    pub fn new(orch: Arc<Orchestrator>) -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        Self {
            orch,
            backoff: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            wake,
            woken: tokio::sync::Mutex::new(woken),
            followed: Mutex::new(BTreeSet::new()),
        }
    }

    /// Starts an event follower for every connected node that has none.
    fn follow_new_engines(self: &Arc<Self>) {
        let mut followed = self.followed.lock().expect("followed lock");
        for (node_id, _) in self.orch.engines() {
            if followed.insert(node_id.clone()) {
                let me = self.clone();
                tokio::spawn(async move { me.follow_events(node_id).await });
            }
        }
    }

    fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Follows events and resyncs every `interval` until the task is aborted.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        self.follow_new_engines();
        let mut tick = tokio::time::interval(interval);
        let mut woken = self.woken.lock().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.resync().await {
                        tracing::warn!(error = %e, "resync failed");
                    }
                    self.follow_new_engines();
                }
                Some(instance) = woken.recv() => {
                    if let Err(e) = self.reconcile_instance(&instance).await {
                        tracing::warn!(instance.id = %instance, error = %e, "cannot reconcile instance");
                    }
                }
            }
        }
    }

    async fn follow_events(&self, node_id: String) {
        let mut failures = 0u32;
        loop {
            let Ok(engine) = self.orch.engine(&node_id) else {
                return;
            };
            let mut events = Box::pin(engine.container_events(&self.orch.installation_filter()));
            while let Some(event) = events.next().await {
                failures = 0;
                match event {
                    Ok(e)
                        if matches!(e.action.as_str(), "die" | "destroy" | "oom")
                            || e.action.starts_with("health_status") =>
                    {
                        if let Some(instance) = e.labels.get(labels::INSTANCE) {
                            let _ = self.wake.send(instance.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if failures == 0 {
                            tracing::warn!(node.id = %node_id, error = %e, "event stream failed");
                        }
                        break;
                    }
                }
            }
            // Reconnect, waiting 1, 2, 4 … 30 s while the engine keeps failing; anything
            // missed meanwhile is caught by the next resync.
            let wait = Duration::from_secs(1 << failures.min(5)).min(Duration::from_secs(30));
            failures += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// Connects to stored nodes Berth holds no connection to (added by another process, or
    /// unreachable at start-up), recording why when that fails.
    async fn connect_missing(&self) -> Result<(), DeployError> {
        let topology = self.orch.store.topology();
        for node in topology.nodes().await? {
            if self.orch.is_attached(&node.id) {
                continue;
            }
            self.call();
            if let Err(e) = self.orch.connect_node(&node).await {
                tracing::debug!(node.name = %node.name, error = %e, "node still unreachable");
                topology
                    .record_contact(&node.id, Err(&e.to_string()))
                    .await?;
            }
        }
        Ok(())
    }

    async fn busy_deployments(&self) -> Result<BTreeSet<String>, DeployError> {
        let mut busy = BTreeSet::new();
        for d in self.orch.store.deployments().all().await? {
            if self.orch.store.jobs().has_pending(&d.id).await? {
                busy.insert(d.id);
            }
        }
        Ok(busy)
    }

    /// One full pass over every node: one container list per node, then the actions needed.
    ///
    /// # Errors
    /// Store failures; engine failures of single instances are logged and skipped.
    pub async fn resync(&self) -> Result<ResyncReport, DeployError> {
        let before = self.calls.load(Ordering::Relaxed);
        let mut report = ResyncReport::default();
        let deployments: HashMap<String, DeploymentRecord> = self
            .orch
            .store
            .deployments()
            .all()
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let busy = self.busy_deployments().await?;
        self.connect_missing().await?;
        let all_locs = self.orch.store.locations().all().await?;
        // Every instance of this installation, whichever node: two nodes may be one engine.
        let known: BTreeSet<&str> = all_locs.iter().map(|l| l.id.as_str()).collect();
        for (node_id, engine) in self.orch.engines() {
            self.call();
            let containers = match engine
                .list_containers(&[self.orch.installation_filter()])
                .await
            {
                Ok(c) => {
                    self.orch
                        .store
                        .topology()
                        .record_contact(&node_id, Ok(()))
                        .await?;
                    c
                }
                Err(e) => {
                    // Nothing on an unreachable node is touched: its instances may well run.
                    tracing::warn!(node.id = %node_id, error = %e, "node unreachable; skipped");
                    let topology = self.orch.store.topology();
                    topology
                        .record_contact(&node_id, Err(&e.to_string()))
                        .await?;
                    // bollard reconnects to unix:// and tcp:// engines by itself; an ssh://
                    // forwarding that died is started again.
                    if let Some(node) = topology.node_by_id(&node_id).await? {
                        if node.endpoint.starts_with("ssh://") {
                            self.call();
                            if let Err(e) = self.orch.connect_node(&node).await {
                                tracing::debug!(node.id = %node_id, error = %e, "ssh forwarding not restored yet");
                            }
                        }
                    }
                    continue;
                }
            };
            let locs: Vec<&LocationRecord> =
                all_locs.iter().filter(|l| l.node_id == node_id).collect();
            for c in &containers {
                let instance = c.labels.get(labels::INSTANCE).map(String::as_str);
                if instance.is_none_or(|i| !known.contains(i)) {
                    tracing::warn!(container.id = %c.id, container.name = %c.name, "removing a Berth container with no record");
                    self.call();
                    if let Err(e) = engine.remove_container(&c.id).await {
                        tracing::warn!(container.id = %c.id, error = %e, "cannot remove orphan");
                    } else {
                        report.orphans_removed += 1;
                    }
                }
            }
            let by_instance: HashMap<&str, &ContainerStatus> = containers
                .iter()
                .filter_map(|c| c.labels.get(labels::INSTANCE).map(|i| (i.as_str(), c)))
                .collect();
            for loc in locs {
                report.instances += 1;
                let Some(d) = deployments.get(&loc.deployment_id) else {
                    continue;
                };
                if busy.contains(&d.id) {
                    continue;
                }
                let container = by_instance.get(loc.id.as_str()).copied();
                match self.converge(d, loc, container).await {
                    Ok(Action::Restarted) => report.restarted += 1,
                    Ok(Action::Recreated) => report.recreated += 1,
                    Ok(Action::Removed) => report.leftovers_removed += 1,
                    Ok(Action::None) => {}
                    Err(e) => {
                        tracing::warn!(instance.id = %loc.id, error = %e, "cannot converge instance")
                    }
                }
            }
        }
        for id in deployments.keys() {
            self.orch.refresh_status(id).await?;
        }
        report.docker_calls = self.calls.load(Ordering::Relaxed) - before;
        Ok(report)
    }

    /// Converges one instance now (after an event).
    ///
    /// # Errors
    /// Store and engine failures.
    pub async fn reconcile_instance(&self, instance_id: &str) -> Result<(), DeployError> {
        let Some(loc) = self.orch.store.locations().by_id(instance_id).await? else {
            return Ok(());
        };
        let Some(d) = self
            .orch
            .store
            .deployments()
            .by_id(&loc.deployment_id)
            .await?
        else {
            return Ok(());
        };
        if self.orch.store.jobs().has_pending(&d.id).await? {
            return Ok(());
        }
        let engine = self.orch.engine(&loc.node_id)?;
        self.call();
        let container = engine
            .inspect_container(&loc.container_name, Some(&network_name(&d.project_id)))
            .await?;
        self.converge(&d, &loc, container.as_ref()).await?;
        self.orch.refresh_status(&d.id).await
    }

    async fn converge(
        &self,
        d: &DeploymentRecord,
        loc: &LocationRecord,
        container: Option<&ContainerStatus>,
    ) -> Result<Action, DeployError> {
        let store = &self.orch.store;
        if d.current_release_id.as_deref() != Some(loc.release_id.as_str()) {
            self.call();
            self.orch
                .retire(loc, super::instances::STOP_GRACE_SECS)
                .await?;
            return Ok(Action::Removed);
        }
        if d.desired_state != "running" {
            if container.is_none_or(|c| !c.running()) && loc.status != "stopped" {
                store
                    .locations()
                    .record(&loc.id, &observed("stopped", "none", None))
                    .await?;
            }
            return Ok(Action::None);
        }
        let release = store
            .deployments()
            .release_by_id(&loc.release_id)
            .await?
            .ok_or_else(|| DeployError::Invalid("release vanished".into()))?;
        let spec = release_spec(&release)?;
        match container {
            Some(c) if c.running() => {
                self.settle(&loc.id);
                // Berth's probes own the health, except for command checks, which Docker runs.
                // A restarted container may be published on another host port.
                let (ip, port) = c.reached_at(spec.http_port);
                let port = port.map(i64::from);
                let moved = ip.is_some() && (ip != loc.ip_address || port != loc.port);
                if loc.status != "running"
                    || loc.container_id.as_deref() != Some(c.id.as_str())
                    || moved
                {
                    store
                        .locations()
                        .mark_running(&loc.id, &c.id, ip.as_deref(), port)
                        .await?;
                }
                if let Some(h) = c.health.as_deref().filter(|h| *h != loc.health) {
                    store
                        .locations()
                        .set_health(&loc.id, h, &loc.last_error)
                        .await?;
                }
                Ok(Action::None)
            }
            Some(c) => {
                let engine = self.orch.engine(&loc.node_id)?;
                self.call();
                let detail = engine
                    .inspect_container(&c.id, None)
                    .await?
                    .unwrap_or_else(|| c.clone());
                let code = detail.exit_code.unwrap_or(-1);
                if !spec.restart_policy.restarts(code) {
                    let mut seen = observed("exited", "none", None);
                    seen.last_exit_code = Some(code);
                    seen.last_error = format!(
                        "Instance {} exited with code {code}; its restart policy keeps it stopped.",
                        loc.slot
                    );
                    store.locations().record(&loc.id, &seen).await?;
                    return Ok(Action::None);
                }
                let wait = self.due(&loc.id);
                if !wait.is_zero() {
                    self.call();
                    let output = self.orch.last_output(&engine, &c.id, 5).await;
                    let mut seen = observed("restarting", "unhealthy", None);
                    seen.last_exit_code = Some(code);
                    seen.last_error = format!(
                        "Instance {} keeps exiting (last exit code {code}); next start in {:.1} s. Last output:\n{output}",
                        loc.slot,
                        wait.as_secs_f64()
                    );
                    store.locations().record(&loc.id, &seen).await?;
                    self.recheck_after(&loc.id, wait);
                    return Ok(Action::None);
                }
                self.call();
                engine.start_container(&c.id).await?;
                self.started(&loc.id);
                store.locations().count_restart(&loc.id).await?;
                let mut seen = observed("running", "starting", None);
                seen.last_exit_code = Some(code);
                seen.last_error = format!(
                    "Instance {} exited with code {code} and was started again.",
                    loc.slot
                );
                store.locations().record(&loc.id, &seen).await?;
                self.watch_health(d.clone(), spec, loc.clone(), c.id.clone());
                Ok(Action::Restarted)
            }
            None => {
                let wait = self.due(&loc.id);
                if !wait.is_zero() {
                    self.recheck_after(&loc.id, wait);
                    return Ok(Action::None);
                }
                store
                    .locations()
                    .clear_container(&loc.id, "missing")
                    .await?;
                let engine = self.orch.engine(&loc.node_id)?;
                self.orch.prepare_node(&engine, d, &spec).await?;
                self.call();
                let id = self.orch.launch(d, &release, &spec, loc).await?;
                self.started(&loc.id);
                store.locations().count_restart(&loc.id).await?;
                self.watch_health(d.clone(), spec, loc.clone(), id);
                Ok(Action::Recreated)
            }
        }
    }

    /// How long until the next start of `instance` is allowed (zero: now).
    fn due(&self, instance: &str) -> Duration {
        let map = self.backoff.lock().expect("backoff lock");
        map.get(instance).map_or(Duration::ZERO, |b| {
            let ready_at = b.last_start + backoff_delay(b.consecutive);
            ready_at.saturating_duration_since(Instant::now())
        })
    }

    fn started(&self, instance: &str) {
        let mut map = self.backoff.lock().expect("backoff lock");
        let entry = map.entry(instance.to_owned()).or_insert(Backoff {
            consecutive: 0,
            last_start: Instant::now(),
        });
        entry.consecutive += 1;
        entry.last_start = Instant::now();
    }

    /// A running instance that has been up long enough forgets its crash history.
    fn settle(&self, instance: &str) {
        let mut map = self.backoff.lock().expect("backoff lock");
        if map
            .get(instance)
            .is_some_and(|b| b.last_start.elapsed() >= STABLE_AFTER)
        {
            map.remove(instance);
        }
    }

    fn recheck_after(&self, instance: &str, wait: Duration) {
        let wake = self.wake.clone();
        let instance = instance.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = wake.send(instance);
        });
    }

    /// Probes a (re)started instance until healthy, in the background, and refreshes the
    /// deployment's status when it is.
    fn watch_health(
        &self,
        d: DeploymentRecord,
        spec: app::model::DeploymentSpec,
        loc: LocationRecord,
        container: String,
    ) {
        let orch = self.orch.clone();
        tokio::spawn(async move {
            if let Err(e) = orch.wait_healthy(&d, &spec, &loc, &container).await {
                tracing::warn!(instance.id = %loc.id, error = %e, "restarted instance is not healthy");
            }
            if let Err(e) = orch.refresh_status(&d.id).await {
                tracing::warn!(deployment.id = %d.id, error = %e, "cannot refresh status");
            }
        });
    }
}

enum Action {
    None,
    Restarted,
    Recreated,
    Removed,
}

fn observed(status: &str, health: &str, ip: Option<String>) -> ObservedState {
    ObservedState {
        status: status.into(),
        health: health.into(),
        ip_address: ip,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_then_doubles_to_a_cap() {
        let delays: Vec<u64> = (0..10)
            .map(|n| backoff_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays[..6], [0, 500, 1000, 2000, 4000, 8000]);
        assert_eq!(backoff_delay(40), MAX_BACKOFF);
    }
}
