//! The health monitor: probes every running instance of a current release with its HTTP or
//! TCP check, for as long as it runs, and records `healthy` / `unhealthy` (with the reason)
//! in `deployment_locations`, so the deployment's status, the portal and routing follow
//! what the app answers, not just whether its process lives.
//!
//! Semantics follow Docker's HEALTHCHECK (which Berth uses for command checks): a probe
//! every `interval` (at most once per [`TICK`]), `retries` consecutive failures make an
//! instance unhealthy, one success makes it healthy again; nothing is probed during the
//! `start_period` (the rollout or the reconciler's restart watch owns that window), and
//! deployments with a job running are left to the job. An unhealthy instance is reported,
//! not restarted, as Docker does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::join_all;

use super::{
    health::{probe_http, probe_tcp, Check, ProbeKind},
    release_spec, DeployError, Orchestrator,
};
use crate::store::{now_ms, LocationRecord};

/// How often the monitor looks for due probes.
pub const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct ProbeState {
    next_due: Instant,
    failures: u32,
}

/// Probes running instances continuously; see the module documentation.
pub struct HealthMonitor {
    orch: Arc<Orchestrator>,
    state: Mutex<HashMap<String, ProbeState>>,
}

/// One probe to run: the instance, its check and the address to probe.
struct Due {
    loc: LocationRecord,
    check: Check,
}

impl HealthMonitor {
    pub fn new(orch: Arc<Orchestrator>) -> Self {
        Self {
            orch,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Probes what is due every [`TICK`] until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "health monitor pass failed");
            }
        }
    }

    /// One pass: probes every instance whose probe is due, concurrently, and records changes.
    /// Returns how many instances were probed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn pass(&self) -> Result<usize, DeployError> {
        let due = self.due().await?;
        let probed = due.len();
        let results = join_all(due.into_iter().map(|d| async move {
            let ip = d.loc.ip_address.clone().unwrap_or_default();
            // The recorded port is the published one on a node with an advertise address.
            let reached = |port: u16| {
                d.loc
                    .port
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(port)
            };
            let outcome = match &d.check.kind {
                ProbeKind::Http { port, path } => {
                    let port = reached(*port);
                    probe_http(&self.orch.http, &ip, port, path, d.check.timeout).await
                }
                ProbeKind::Tcp { port } => probe_tcp(&ip, reached(*port), d.check.timeout).await,
                ProbeKind::Docker | ProbeKind::Running => Ok(()),
            };
            (d, outcome)
        }))
        .await;
        for (d, outcome) in results {
            self.record(&d, outcome).await?;
        }
        Ok(probed)
    }

    /// The instances whose probe is due now; forgets instances that are gone.
    async fn due(&self) -> Result<Vec<Due>, DeployError> {
        let store = &self.orch.store;
        let deployments: HashMap<String, _> = store
            .deployments()
            .all()
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let locations = store.locations().all().await?;
        let now = Instant::now();
        let now_ms = now_ms();
        let mut checks: HashMap<String, Option<Check>> = HashMap::new();
        let mut busy: HashMap<String, bool> = HashMap::new();
        let mut due = Vec::new();
        {
            let mut state = self.state.lock().expect("monitor lock");
            state.retain(|id, _| locations.iter().any(|l| &l.id == id));
        }
        for loc in locations {
            let Some(d) = deployments.get(&loc.deployment_id) else {
                continue;
            };
            let current = d.current_release_id.as_deref() == Some(loc.release_id.as_str());
            if !current
                || d.desired_state != "running"
                || loc.status != "running"
                || loc.ip_address.is_none()
            {
                continue;
            }
            let check = match checks.get(&loc.release_id) {
                Some(c) => c.clone(),
                None => {
                    let c = match store.deployments().release_by_id(&loc.release_id).await? {
                        Some(r) => Some(Check::for_spec(&release_spec(&r)?)),
                        None => None,
                    };
                    checks.insert(loc.release_id.clone(), c.clone());
                    c
                }
            };
            let Some(check) =
                check.filter(|c| matches!(c.kind, ProbeKind::Http { .. } | ProbeKind::Tcp { .. }))
            else {
                continue;
            };
            let started = loc.started_at_ms.unwrap_or(now_ms);
            if now_ms - started < check.start_period.as_millis() as i64 {
                continue;
            }
            let is_busy = match busy.get(&d.id) {
                Some(b) => *b,
                None => {
                    let b = store.jobs().has_pending(&d.id).await?;
                    busy.insert(d.id.clone(), b);
                    b
                }
            };
            if is_busy {
                continue;
            }
            let mut state = self.state.lock().expect("monitor lock");
            let entry = state.entry(loc.id.clone()).or_insert(ProbeState {
                next_due: now,
                failures: 0,
            });
            if entry.next_due <= now {
                entry.next_due = now + check.interval.max(TICK);
                due.push(Due { loc, check });
            }
        }
        Ok(due)
    }

    async fn record(&self, d: &Due, outcome: Result<(), String>) -> Result<(), DeployError> {
        let failures = {
            let mut state = self.state.lock().expect("monitor lock");
            let Some(entry) = state.get_mut(&d.loc.id) else {
                return Ok(());
            };
            entry.failures = if outcome.is_ok() {
                0
            } else {
                entry.failures + 1
            };
            entry.failures
        };
        let locations = self.orch.store.locations();
        match outcome {
            Ok(()) if d.loc.health != "healthy" => {
                locations.set_health(&d.loc.id, "healthy", "").await?;
            }
            Err(why) if failures >= d.check.retries.max(1) && d.loc.health != "unhealthy" => {
                let message = format!(
                    "Instance {} is unhealthy: {why} ({failures} checks in a row).",
                    d.loc.slot
                );
                tracing::warn!(instance.id = %d.loc.id, reason = %why, "instance unhealthy");
                locations
                    .set_health(&d.loc.id, "unhealthy", &message)
                    .await?;
            }
            _ => return Ok(()),
        }
        self.orch.refresh_status(&d.loc.deployment_id).await
    }
}
