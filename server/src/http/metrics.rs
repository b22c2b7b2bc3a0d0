//! The metrics endpoints outside `/api/v1`:
//!
//! - `GET /metrics`: the Prometheus exposition ([`crate::metrics::prometheus`]), for the
//!   bearer token of `metrics_token` (compared in constant time). Without that setting the
//!   endpoint answers 404; a missing or wrong token gets 401 with `WWW-Authenticate: Bearer`.
//!   It is routed outside the session and API-token middleware, so Berth's API tokens do
//!   not open it and its token opens nothing else.
//! - `GET /metrics/observability` (admins): the streamer's health as JSON.

use std::sync::atomic::Ordering;

use app::{model::ApiError, services::RequestContext};
use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Serialize;

use super::{rest::RestError, AppState};
use crate::{
    auth::constant_time_eq,
    metrics::{
        prometheus::{self, Scrape, StreamerFigures},
        LiveMetrics,
    },
};

/// Where Prometheus scrapes.
pub const EXPOSITION_PATH: &str = "/metrics";

fn streamer(m: &LiveMetrics) -> StreamerFigures {
    let (_, cached_samples) = m.hub.size();
    StreamerFigures {
        samples: m.stats.samples.load(Ordering::Relaxed),
        errors: m.stats.errors.load(Ordering::Relaxed),
        cgroup_sources: m.stats.cgroup_sources.load(Ordering::Relaxed),
        docker_sources: m.stats.docker_sources.load(Ordering::Relaxed),
        subscribers: m.hub.subscribers(),
        cached_samples,
        history_writes: m.stats.rollup_writes.load(Ordering::Relaxed),
        history_write_failures: m.stats.rollup_write_failures.load(Ordering::Relaxed),
        breakers: m.stats.breaker_states(),
    }
}

/// `GET /metrics`: see the module documentation.
pub async fn exposition(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = state
        .config
        .metrics_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return RestError(ApiError::not_found(
            "metrics_disabled",
            "The Prometheus endpoint is off: set metrics_token (BERTH_METRICS_TOKEN_FILE) to turn it on.",
        ))
        .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        let mut response = RestError(ApiError::new(
            401,
            "invalid_token",
            "GET /metrics needs 'Authorization: Bearer <metrics_token>'.",
        ))
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let store = &state.store;
    let gathered = async {
        let (backups, restores) = store.backups().counts().await?;
        anyhow::Ok(Scrape {
            backups,
            restores,
            backup_runs_missed: store.backup_schedules().missed_total().await?,
            backup_checks: store.backup_checks().counts().await?,
            samples: state
                .metrics
                .as_ref()
                .map(|m| m.hub.newest())
                .unwrap_or_default(),
            nodes: store.topology().nodes().await?,
            allocations: store.locations().allocations().await?,
            routes: state
                .ingress_stats
                .as_ref()
                .map(|s| s.snapshot())
                .unwrap_or_default(),
            jobs: store.jobs().depths().await?,
            streamer: state.metrics.as_ref().map(streamer),
        })
    };
    match gathered.await {
        Ok(scrape) => (
            [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
            prometheus::render(&scrape),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the scrape could not read the store");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The streamer's health, from `GET /metrics/observability`.
#[derive(Debug, Default, Serialize)]
pub struct Observability {
    /// Whether this process runs the streamer (role `metrics`).
    pub streaming: bool,
    /// Samples published since the start.
    pub samples: u64,
    /// Readings that failed since the start.
    pub errors: u64,
    /// Instances read from their cgroup now.
    pub cgroup_sources: u64,
    /// Instances read through the engine's stats stream now.
    pub docker_sources: u64,
    /// Open metrics sockets.
    pub subscribers: usize,
    /// Instances and samples in the live cache.
    pub cached_instances: usize,
    pub cached_samples: usize,
    /// History transactions (minute rollups and hourly usage) committed and failed, and
    /// instance-minutes written.
    pub history_writes: u64,
    pub history_write_failures: u64,
    pub history_minutes: u64,
    /// Instance-minutes waiting for the next write.
    pub history_pending: usize,
    /// Whether this process holds the `metrics-history` lease, i.e. writes the history
    /// (with several metrics processes, exactly one does).
    pub history_writer: bool,
    /// Rounds that took longer than a second (resolution degraded).
    pub slow_rounds: u64,
    /// Engine calls not made because the engine's breaker was open.
    pub calls_refused: u64,
    /// Each engine's circuit breaker: `closed`, `open` or `half_open`, by node id.
    pub breakers: std::collections::BTreeMap<String, &'static str>,
}

/// `GET /metrics/observability`: admins only.
pub async fn observability(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Response {
    if let Err(e) = ctx.admin() {
        return RestError(e.with_request_id(ctx.request_id.clone())).into_response();
    }
    let Some(m) = state.metrics.as_ref() else {
        return Json(Observability::default()).into_response();
    };
    let f = streamer(m);
    Json(Observability {
        streaming: true,
        samples: f.samples,
        errors: f.errors,
        cgroup_sources: f.cgroup_sources,
        docker_sources: f.docker_sources,
        subscribers: f.subscribers,
        cached_instances: m.hub.size().0,
        cached_samples: f.cached_samples,
        history_writes: f.history_writes,
        history_write_failures: f.history_write_failures,
        history_minutes: m.stats.rollup_minutes.load(Ordering::Relaxed),
        history_pending: m.rollups.pending(),
        history_writer: m.stats.history_lease.load(Ordering::Relaxed),
        slow_rounds: m.stats.slow_rounds.load(Ordering::Relaxed),
        calls_refused: m.stats.calls_refused.load(Ordering::Relaxed),
        breakers: f
            .breakers
            .iter()
            .map(|(node, state)| (node.clone(), state.as_str()))
            .collect(),
    })
    .into_response()
}
