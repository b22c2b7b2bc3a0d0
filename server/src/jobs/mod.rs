//! Job workers over the persisted queue in `store::Jobs`.
//!
//! Why not a job-queue crate: the maintained ones with SQL backends (apalis-sql, for one) keep
//! a separate storage type per database (`SqliteStorage`, `PostgresStorage`) over typed sqlx
//! pools, while Berth's store is one `Any` pool for both, and they add a sizeable dependency
//! tree to a 2-core build. What Berth needs is small: rows with a lease, one running job per
//! deployment, re-queue of abandoned jobs, and steps for the portal. Handlers are idempotent,
//! so a job re-run after `kill -9` finishes or rolls back cleanly.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use app::model::JobStep;
use tokio::sync::Notify;

use crate::store::{now_ms, JobRecord, Store};

/// How long a claim lasts before another worker may take the job over; renewed every third.
pub const LEASE_MS: i64 = 30_000;

/// Runs one job; `Err` carries the message people read.
pub trait JobHandler: Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        job: &'a JobRecord,
        progress: &'a Progress,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Sends each job to the handler of its kind, and the rest to `default`.
pub struct ByKind {
    pub default: Arc<dyn JobHandler>,
    pub kinds: Vec<(&'static str, Arc<dyn JobHandler>)>,
}

impl JobHandler for ByKind {
    fn run<'a>(
        &'a self,
        job: &'a JobRecord,
        progress: &'a Progress,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        let handler = self
            .kinds
            .iter()
            .find(|(kind, _)| *kind == job.kind)
            .map_or(&self.default, |(_, h)| h);
        handler.run(job, progress)
    }
}

/// A job's step-by-step progress, written to the store as it changes.
pub struct Progress {
    store: Store,
    job_id: String,
    steps: tokio::sync::Mutex<Vec<JobStep>>,
}

impl Progress {
    /// Progress of `job`, continuing the steps it recorded before (a re-run after a crash).
    pub fn new(store: Store, job: &JobRecord) -> Self {
        let steps = serde_json::from_str(&job.steps).unwrap_or_default();
        Self {
            store,
            job_id: job.id.clone(),
            steps: tokio::sync::Mutex::new(steps),
        }
    }

    async fn save(&self, steps: &[JobStep]) {
        let text = serde_json::to_string(steps).unwrap_or_else(|_| "[]".into());
        if let Err(e) = self.store.jobs().set_steps(&self.job_id, &text).await {
            tracing::warn!(job.id = %self.job_id, error = %e, "cannot record job progress");
        }
    }

    /// Ends the running step (done) and starts `name`.
    pub async fn begin(&self, name: &str, message: impl Into<String>) {
        let mut steps = self.steps.lock().await;
        finish_running(&mut steps, "done");
        steps.push(JobStep {
            name: name.to_owned(),
            status: "running".into(),
            message: message.into(),
            at_ms: now_ms(),
        });
        self.save(&steps).await;
    }

    /// Replaces the running step's message.
    pub async fn note(&self, message: impl Into<String>) {
        let mut steps = self.steps.lock().await;
        if let Some(step) = steps.last_mut() {
            step.message = message.into();
        }
        self.save(&steps).await;
    }

    /// Marks the running step done.
    pub async fn done(&self) {
        let mut steps = self.steps.lock().await;
        finish_running(&mut steps, "done");
        self.save(&steps).await;
    }

    async fn fail(&self, message: &str) {
        let mut steps = self.steps.lock().await;
        if let Some(step) = steps.last_mut().filter(|s| s.status == "running") {
            step.status = "failed".into();
            step.message = message.to_owned();
        }
        self.save(&steps).await;
    }
}

fn finish_running(steps: &mut [JobStep], status: &str) {
    for s in steps.iter_mut().filter(|s| s.status == "running") {
        s.status = status.into();
    }
}

/// The worker pool of this process.
pub struct Workers {
    store: Store,
    handler: Arc<dyn JobHandler>,
    owner: String,
    wake: Arc<Notify>,
}

impl Workers {
    /// Workers for `store` running jobs with `handler`; `owner` names this process in leases.
    pub fn new(store: Store, handler: Arc<dyn JobHandler>) -> Self {
        Self {
            store,
            handler,
            owner: crate::store::new_id(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// A handle that wakes idle workers at once (after a job is queued).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Re-queues abandoned jobs, then runs `count` workers until the task is aborted.
    /// `sole_controller` (SQLite: no other process can hold a lease) re-queues every running
    /// job at once instead of waiting for leases to run out.
    pub async fn run(self: Arc<Self>, count: u32, sole_controller: bool) {
        let owner = if sole_controller {
            None
        } else {
            Some(self.owner.as_str())
        };
        match self
            .store
            .jobs()
            .requeue_abandoned(owner, sole_controller)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "re-queued jobs interrupted by a previous stop"),
            Err(e) => tracing::error!(error = %e, "cannot re-queue interrupted jobs"),
        }
        let mut tasks = Vec::new();
        for _ in 0..count {
            let me = self.clone();
            tasks.push(tokio::spawn(async move { me.work().await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn work(&self) {
        loop {
            match self.store.jobs().claim(&self.owner, LEASE_MS).await {
                Ok(Some(job)) => self.execute(job).await,
                Ok(None) => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), self.wake.notified()).await;
                    if let Err(e) = self.store.jobs().requeue_abandoned(None, false).await {
                        tracing::warn!(error = %e, "cannot re-queue abandoned jobs");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim a job");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Runs one claimed job to its end, renewing the lease meanwhile.
    pub async fn execute(&self, job: JobRecord) {
        let progress = Progress::new(self.store.clone(), &job);
        let started = std::time::Instant::now();
        tracing::info!(job.id = %job.id, job.kind = %job.kind, deployment.id = ?job.deployment_id, attempt = job.attempts, "job started");
        let renew = async {
            loop {
                tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
                if let Err(e) = self
                    .store
                    .jobs()
                    .renew(&job.id, &self.owner, LEASE_MS)
                    .await
                {
                    tracing::warn!(job.id = %job.id, error = %e, "cannot renew job lease");
                }
            }
        };
        let outcome = tokio::select! {
            r = self.handler.run(&job, &progress) => r,
            () = renew => unreachable!("the renew loop never ends"),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let (ok, error) = match outcome {
            Ok(()) => {
                progress.done().await;
                tracing::info!(job.id = %job.id, duration_ms, "job succeeded");
                (true, String::new())
            }
            Err(e) => {
                progress.fail(&e).await;
                tracing::warn!(job.id = %job.id, duration_ms, error = %e, "job failed");
                (false, e)
            }
        };
        if let Err(e) = self.store.jobs().finish(&job.id, ok, &error).await {
            tracing::error!(job.id = %job.id, error = %e, "cannot record the end of a job");
        }
        self.wake.notify_waiters();
    }
}
