//! Receiving webhook deliveries: find the webhook, limit its rate, check the signature,
//! drop replays, and queue a build for a push to the configured branch. Every delivery that
//! names an existing webhook is recorded with its outcome; the answer comes at once (the build
//! runs as a job).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use app::model::GitProvider;
use http::HeaderMap;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::builds::queue_build;
use crate::{
    auth::FailureLimiter,
    secrets::SecretBox,
    store::{now_ms, DeliveryRecord, Store},
    webhooks::{envelope, parse_event, verify, Event},
};

/// Deliveries with the same id within this window are replays (24 h).
pub const REPLAY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Deliveries are listed for this long, then removed by housekeeping (30 days; longer than
/// the replay window, which needs them for a day).
pub const DELIVERY_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// What the route answers: a status and a small JSON body (`outcome`, `reason`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAnswer {
    pub status: u16,
    pub body: Value,
}

fn answer(status: u16, outcome: &str, reason: impl Into<String>) -> WebhookAnswer {
    WebhookAnswer {
        status,
        body: json!({"outcome": outcome, "reason": reason.into()}),
    }
}

/// Receives deliveries for every webhook.
pub struct WebhookReceiver {
    store: Store,
    secrets: SecretBox,
    wake_workers: Arc<Notify>,
    limiter: FailureLimiter,
    per_minute: u32,
}

impl WebhookReceiver {
    /// A receiver accepting at most `per_minute` deliveries per webhook per minute.
    pub fn new(
        store: Store,
        secrets: SecretBox,
        wake_workers: Arc<Notify>,
        per_minute: u32,
    ) -> Self {
        Self {
            store,
            secrets,
            wake_workers,
            limiter: FailureLimiter::new(Duration::from_secs(60)),
            per_minute,
        }
    }

    /// Handles one delivery to `/webhooks/{provider}/{webhook_id}`.
    ///
    /// Answers: 404 unknown provider or webhook; 429 over the rate; 401 bad or missing
    /// signature; 400 a body that is not the provider's JSON; 202 a build was queued; 200
    /// anything acknowledged without a build (ping, other branch or event, replay).
    pub async fn receive(
        &self,
        provider: &str,
        webhook_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> WebhookAnswer {
        let Some(provider) = GitProvider::parse(provider) else {
            return answer(
                404,
                "rejected",
                "unknown provider; use github, gitlab, gitea, forgejo or bitbucket",
            );
        };
        let source = match self.store.builds().source_by_webhook(webhook_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return answer(404, "rejected", "no such webhook"),
            Err(e) => {
                tracing::error!(error = %e, "cannot load a webhook");
                return answer(500, "error", "internal error");
            }
        };
        let now = Instant::now();
        let key = format!("webhook:{webhook_id}");
        if self
            .limiter
            .blocked_for(&key, self.per_minute, now)
            .is_some()
        {
            return answer(
                429,
                "rejected",
                "too many deliveries; try again in a minute",
            );
        }
        self.limiter.record_failure(&key, now);
        self.limiter.prune(now);

        let env = envelope(provider, headers);
        let mut record = DeliveryRecord {
            id: String::new(),
            deployment_id: source.deployment_id.clone(),
            provider: provider.as_str().to_owned(),
            event: env.event.chars().take(100).collect(),
            delivery_id: env.delivery_id.clone(),
            branch: None,
            commit_sha: None,
            outcome: String::new(),
            reason: String::new(),
            build_id: None,
            received_at_ms: 0,
        };
        let result = self
            .decide(provider, &source, headers, body, &env.event, &mut record)
            .await;
        record.outcome = result.body["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        record.reason = result.body["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Err(e) = self.store.deliveries().record(record).await {
            tracing::error!(error = %e, "cannot record a webhook delivery");
        }
        result
    }

    async fn decide(
        &self,
        provider: GitProvider,
        source: &crate::store::GitSourceRecord,
        headers: &HeaderMap,
        body: &[u8],
        event: &str,
        record: &mut DeliveryRecord,
    ) -> WebhookAnswer {
        let secret = match self.secrets.open(&source.webhook_secret) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(deployment.id = %source.deployment_id, error = %e, "cannot open a webhook secret");
                return answer(500, "error", "internal error");
            }
        };
        if let Err(why) = verify(provider, headers, body, &secret) {
            return answer(401, "rejected", why.to_string());
        }
        if let Some(id) = &record.delivery_id {
            match self
                .store
                .deliveries()
                .seen(
                    &source.deployment_id,
                    provider.as_str(),
                    id,
                    now_ms() - REPLAY_WINDOW_MS,
                )
                .await
            {
                Ok(true) => {
                    return answer(
                        200,
                        "duplicate",
                        format!("delivery {id} was received before"),
                    )
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot check webhook replays");
                    return answer(500, "error", "internal error");
                }
            }
        }
        let event = match parse_event(provider, event, body) {
            Ok(e) => e,
            Err(why) => return answer(400, "rejected", why),
        };
        match event {
            Event::Ping => answer(200, "ignored", "ping: the webhook is set up"),
            Event::Other => answer(
                200,
                "ignored",
                format!(
                    "the event '{}' does not trigger builds (push does)",
                    record.event
                ),
            ),
            Event::OtherRef { reference } => {
                answer(200, "ignored", format!("'{reference}' is not a branch"))
            }
            Event::BranchDeleted { branch } => {
                record.branch = Some(branch.clone());
                answer(200, "ignored", format!("the branch '{branch}' was deleted"))
            }
            Event::Push { branch, commit } => {
                record.branch = Some(branch.clone());
                record.commit_sha = Some(commit.clone());
                if branch != source.branch {
                    return answer(
                        200,
                        "ignored",
                        format!("a push to '{branch}'; builds follow '{}'", source.branch),
                    );
                }
                self.queue(source, &branch, commit, provider, record).await
            }
        }
    }

    async fn queue(
        &self,
        source: &crate::store::GitSourceRecord,
        branch: &str,
        commit: String,
        provider: GitProvider,
        record: &mut DeliveryRecord,
    ) -> WebhookAnswer {
        let deployment = match self.store.deployments().by_id(&source.deployment_id).await {
            Ok(Some(d)) if d.status != "deleting" => d,
            Ok(_) => return answer(200, "ignored", "the deployment is being deleted"),
            Err(e) => {
                tracing::error!(error = %e, "cannot load a deployment for a webhook");
                return answer(500, "error", "internal error");
            }
        };
        match queue_build(
            &self.store,
            &deployment,
            branch,
            Some(commit),
            provider.as_str(),
            None,
        )
        .await
        {
            Ok(build) => {
                record.build_id = Some(build.id.clone());
                self.wake_workers.notify_waiters();
                tracing::info!(deployment.id = %deployment.id, build.id = %build.id, provider = provider.as_str(), "webhook queued a build");
                WebhookAnswer {
                    status: 202,
                    body: json!({
                        "outcome": "build_queued",
                        "reason": format!("build #{} queued", build.number),
                        "build_id": build.id,
                    }),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue a build from a webhook");
                answer(500, "error", "internal error")
            }
        }
    }
}
