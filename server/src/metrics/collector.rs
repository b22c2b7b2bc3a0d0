//! The streamer: one sample per running instance and second, published to the hub.
//!
//! Every second it lists the instances the reconciler recorded as running (one query of
//! `deployment_locations`), starts a source for each new container and drops the sources of
//! containers that are gone, so sources follow rollouts, restarts and scaling. The listing
//! is skipped when a one-row aggregate ([`Locations::fingerprint`]) shows no instance was
//! added, removed or written since the last one, every running instance got a source then,
//! and that listing is less than [`FULL_LISTING`] old.
//!
//! [`Locations::fingerprint`]: crate::store::Locations::fingerprint
//!
//! A source is either the container's cgroup files (when the engine is the local Unix socket
//! and the container's first process is visible here; read together once a second in a
//! blocking task) or the engine's stats stream (one task per container that reconnects with
//! backoff when the stream breaks). Both fill the same [`Reading`]; the sample of an
//! interval is [`reading::sample`] of two consecutive readings.
//!
//! Every engine call has a timeout (the runtime's for inspects, [`STREAM_TIMEOUT`] for
//! the next stats reading) and goes through that engine's
//! [`Breaker`]: an engine that stops answering is left alone for a cool-down instead of
//! being asked once per container and second. When a round takes longer than the
//! resolution (an overloaded host), the next one starts late rather than piling up: the
//! resolution degrades, the streamer does not fail (`slow_rounds` counts it).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use app::model::{DeploymentId, InstanceId};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    breaker::{Breaker, BreakerState},
    cgroup::{ContainerFiles, Host},
    hub::MetricsHub,
    reading::{self, Reading, Subject},
    rollup::RollupBuffer,
};
use crate::{
    orchestrator::Orchestrator,
    runtime::{Endpoint, Engine},
    store::now_ms,
};

/// Time between samples.
pub const RESOLUTION: Duration = Duration::from_secs(1);

/// Longest time between two full listings of the instances, whatever their fingerprint
/// says (it can miss two writes in one millisecond).
pub const FULL_LISTING: Duration = Duration::from_secs(10);

/// What the last listing of the instances saw.
#[derive(Default)]
struct LastListing {
    fingerprint: Option<(i64, i64)>,
    at: Option<Instant>,
    /// Every running instance got a source (none is waiting for a retry).
    complete: bool,
}

/// Longest wait before a broken stats stream is opened again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Longest wait for the next reading of a stats stream (the engine sends one a second;
/// inspects are bounded by the runtime's own timeout).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes (engine inspects) run at once when many instances appear together.
const PROBES_AT_ONCE: usize = 8;

/// Where readings come from (config `metrics_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsSource {
    /// The cgroup files where possible, else the engine's stats stream.
    #[default]
    Auto,
    /// Always the engine's stats stream.
    Docker,
}

/// What [`Collector::probe`] found.
enum Probe {
    Cgroup(Arc<ContainerFiles>),
    Stream,
    /// The container does not run now.
    NotNow,
}

/// How an instance is read.
enum Source {
    /// Shared with the round's blocking read.
    Cgroup(Arc<ContainerFiles>),
    /// The stream task; aborted when the instance goes.
    Docker(JoinHandle<()>),
}

struct Tracked {
    container_id: String,
    subject: Subject,
    source: Source,
    previous: Option<Reading>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Source::Docker(task) = &self.source {
            task.abort();
        }
    }
}

/// Counters of the streamer, for the observability endpoint and tests.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Samples published.
    pub samples: AtomicU64,
    /// Readings that failed (a file gone, a stream broken, an engine call failed).
    pub errors: AtomicU64,
    /// Instances read from their cgroup right now.
    pub cgroup_sources: AtomicU64,
    /// Instances read through the stats stream right now.
    pub docker_sources: AtomicU64,
    /// Rollup transactions committed.
    pub rollup_writes: AtomicU64,
    /// Rollup transactions that failed (their minutes were kept for the next round).
    pub rollup_write_failures: AtomicU64,
    /// Instance-minutes written.
    pub rollup_minutes: AtomicU64,
    /// Rounds that took longer than the resolution (the next one started late).
    pub slow_rounds: AtomicU64,
    /// Engine calls not made because the engine's breaker was open.
    pub calls_refused: AtomicU64,
    /// One breaker per node, created on first use.
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    /// Set by the rollup writer: its last transaction failed.
    pub last_write_failed: std::sync::atomic::AtomicBool,
    /// Set by the rollup writer: this process holds the history lease (it writes the
    /// history; other processes with the role keep samples for a takeover).
    pub history_lease: std::sync::atomic::AtomicBool,
}

impl CollectorStats {
    /// The breaker of `node_id`'s engine.
    pub fn breaker(&self, node_id: &str) -> Arc<Breaker> {
        self.breakers
            .lock()
            .expect("breakers")
            .entry(node_id.to_owned())
            .or_default()
            .clone()
    }

    /// Whether the last history write failed.
    pub fn history_failing(&self) -> bool {
        self.last_write_failed.load(Ordering::Relaxed)
    }

    /// Each node's breaker state now, by node id.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        let now = Instant::now();
        let mut states: Vec<_> = self
            .breakers
            .lock()
            .expect("breakers")
            .iter()
            .map(|(node, b)| (node.clone(), b.state(now)))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }
}

/// A reading from a stats stream: `(instance id, container id, reading)`.
type StreamReading = (String, String, Reading);

/// The streamer of one process (role `metrics`).
pub struct Collector {
    orch: Arc<Orchestrator>,
    hub: Arc<MetricsHub>,
    rollups: Arc<RollupBuffer>,
    preference: MetricsSource,
    /// Counters, shared with whoever reports them.
    pub stats: Arc<CollectorStats>,
}

impl Collector {
    /// A streamer that publishes to `hub` and adds every sample to `rollups`.
    pub fn new(
        orch: Arc<Orchestrator>,
        hub: Arc<MetricsHub>,
        rollups: Arc<RollupBuffer>,
        preference: MetricsSource,
    ) -> Self {
        Self {
            orch,
            hub,
            rollups,
            preference,
            stats: Arc::default(),
        }
    }

    /// Samples until the task is aborted.
    pub async fn run(self) {
        let mut tracked: HashMap<String, Tracked> = HashMap::new();
        let mut last = LastListing::default();
        let (tx, mut rx) = mpsc::channel::<StreamReading>(1024);
        let mut tick = tokio::time::interval(RESOLUTION);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let started = Instant::now();
                    self.follow_instances(&mut tracked, &mut last, &tx).await;
                    let sources = tracked.len();
                    self.read_cgroups(&mut tracked).await;
                    // A source dropped after a failed read is looked for again at once.
                    last.complete &= tracked.len() == sources;
                    self.hub.forget_stale(now_ms());
                    if started.elapsed() > RESOLUTION {
                        self.stats.slow_rounds.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some((instance, container, reading)) = rx.recv() => {
                    if let Some(t) = tracked.get_mut(&instance) {
                        if t.container_id == container {
                            self.advance(t, reading);
                        }
                    }
                }
            }
        }
    }

    /// Starts sources for new running containers and drops those of gone ones.
    async fn follow_instances(
        &self,
        tracked: &mut HashMap<String, Tracked>,
        last: &mut LastListing,
        tx: &mpsc::Sender<StreamReading>,
    ) {
        let Ok(fingerprint) = self.orch.store.locations().fingerprint().await else {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let fresh = last.at.is_some_and(|at| at.elapsed() < FULL_LISTING);
        if last.complete && fresh && last.fingerprint == Some(fingerprint) {
            return;
        }
        let Ok(locations) = self.orch.store.locations().all().await else {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        last.fingerprint = Some(fingerprint);
        last.at = Some(Instant::now());
        let running: HashMap<String, _> = locations
            .into_iter()
            .filter(|l| l.status == "running")
            .filter_map(|l| Some((l.id.clone(), (l.container_id.clone()?, l))))
            .collect();
        tracked.retain(|id, t| running.get(id).is_some_and(|(c, _)| *c == t.container_id));
        let running_count = running.len();
        let mut new = Vec::new();
        for (id, (container, loc)) in running {
            if tracked.contains_key(&id) {
                continue;
            }
            let Ok(engine) = self.orch.engine(&loc.node_id) else {
                continue;
            };
            if !self.rollups.knows(&loc.deployment_id) {
                match self
                    .orch
                    .store
                    .deployments()
                    .by_id(&loc.deployment_id)
                    .await
                {
                    Ok(Some(d)) => self.rollups.set_project(&d.id, &d.project_id),
                    // Deleted meanwhile: its instances go with the next listing.
                    Ok(None) => continue,
                    Err(_) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            new.push((id, container, loc, engine));
        }
        let probed: Vec<_> = futures_util::stream::iter(new)
            .map(|(id, container, loc, engine)| async move {
                let probe = self.probe(&engine, &loc.node_id, &container).await;
                (id, container, loc, engine, probe)
            })
            .buffer_unordered(PROBES_AT_ONCE)
            .collect()
            .await;
        for (id, container, loc, engine, probe) in probed {
            let source = match probe {
                Probe::Cgroup(files) => Source::Cgroup(files),
                Probe::Stream => Source::Docker(tokio::spawn(stream_readings(
                    engine,
                    self.stats.breaker(&loc.node_id),
                    id.clone(),
                    container.clone(),
                    tx.clone(),
                    self.stats.clone(),
                ))),
                Probe::NotNow => continue,
            };
            let subject = Subject {
                instance_id: InstanceId(id.clone()),
                deployment_id: DeploymentId(loc.deployment_id.clone()),
                cpu_millicores: loc.cpu_millicores,
            };
            tracked.insert(
                id,
                Tracked {
                    container_id: container,
                    subject,
                    source,
                    previous: None,
                },
            );
        }
        last.complete = tracked.len() == running_count;
        let cgroup = tracked
            .values()
            .filter(|t| matches!(t.source, Source::Cgroup(_)))
            .count() as u64;
        self.stats.cgroup_sources.store(cgroup, Ordering::Relaxed);
        self.stats
            .docker_sources
            .store(tracked.len() as u64 - cgroup, Ordering::Relaxed);
    }

    /// How `container` is to be read (an inspect on `node_id`'s engine, through its
    /// breaker).
    async fn probe(&self, engine: &Engine, node_id: &str, container: &str) -> Probe {
        if self.preference != MetricsSource::Auto
            || !matches!(Endpoint::parse(engine.endpoint()), Ok(Endpoint::Unix(_)))
        {
            return Probe::Stream;
        }
        let breaker = self.stats.breaker(node_id);
        if !breaker.allow(Instant::now()) {
            self.stats.calls_refused.fetch_add(1, Ordering::Relaxed);
            return Probe::NotNow;
        }
        let pid = match engine.container_pid(container).await {
            Ok(Some(pid)) => {
                breaker.success();
                pid
            }
            // Not running (any more), or gone: the engine answered; the next round decides.
            Ok(None) => {
                breaker.success();
                return Probe::NotNow;
            }
            Err(e) => {
                if e.is_engine_failure() {
                    breaker.failure(Instant::now());
                } else {
                    breaker.success();
                }
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Probe::NotNow;
            }
        };
        match ContainerFiles::locate(pid, container) {
            Ok(files) => Probe::Cgroup(Arc::new(files)),
            Err(e) => {
                tracing::debug!(container, error = %e, "metrics: reading through the stats stream");
                Probe::Stream
            }
        }
    }

    /// Reads every cgroup source at once (file reads, in a blocking task) and publishes.
    async fn read_cgroups(&self, tracked: &mut HashMap<String, Tracked>) {
        let files: Vec<(String, Arc<ContainerFiles>)> = tracked
            .iter()
            .filter_map(|(id, t)| match &t.source {
                Source::Cgroup(f) => Some((id.clone(), Arc::clone(f))),
                Source::Docker(_) => None,
            })
            .collect();
        if files.is_empty() {
            return;
        }
        let readings = tokio::task::spawn_blocking(move || {
            let host = Host::read();
            files
                .into_iter()
                .map(|(id, f)| {
                    let r = match &host {
                        Ok(host) => f.read(host, now_ms()),
                        Err(e) => Err(e.clone()),
                    };
                    (id, r)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (id, reading) in readings {
            match reading {
                Ok(r) => {
                    if let Some(t) = tracked.get_mut(&id) {
                        self.advance(t, r);
                    }
                }
                Err(e) => {
                    // The container stopped between the listing and the read, most likely;
                    // the next listing drops or replaces the source.
                    tracing::debug!(instance = %id, error = %e, "metrics: cgroup read failed");
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracked.remove(&id);
                }
            }
        }
    }

    /// Publishes the sample between the previous reading and `reading`.
    fn advance(&self, t: &mut Tracked, reading: Reading) {
        if let Some(previous) = t.previous.replace(reading) {
            if reading.at_ms > previous.at_ms {
                let sample = reading::sample(&t.subject, &previous, &reading);
                self.rollups.add(&sample);
                self.hub.publish(sample);
                self.stats.samples.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Follows one container's stats stream, reopening it with exponential backoff (1 s, 2 s,
/// … at most [`MAX_BACKOFF`]) when it breaks or stalls for [`STREAM_TIMEOUT`], while the
/// engine's breaker allows, until aborted.
async fn stream_readings(
    engine: Arc<Engine>,
    breaker: Arc<Breaker>,
    instance: String,
    container: String,
    tx: mpsc::Sender<StreamReading>,
    stats: Arc<CollectorStats>,
) {
    let mut backoff = RESOLUTION;
    loop {
        if !breaker.allow(Instant::now()) {
            stats.calls_refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        let mut stream = Box::pin(engine.stats_stream(&container));
        loop {
            let item = match tokio::time::timeout(STREAM_TIMEOUT, stream.next()).await {
                Ok(Some(item)) => item,
                // The stream ended (the container stopped): reopen after the backoff.
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!(%container, "metrics: stats stream stalled");
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    breaker.failure(Instant::now());
                    break;
                }
            };
            match item {
                Ok(r) => {
                    breaker.success();
                    backoff = RESOLUTION;
                    if tx
                        .send((instance.clone(), container.clone(), r))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(%container, error = %e, "metrics: stats stream broke");
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    if e.is_engine_failure() {
                        breaker.failure(Instant::now());
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
