//! `/api/v1/deployments/{id}/metrics` (the live window), `.../metrics/history` (minute
//! rollups), `/api/v1/projects/{id}/metrics` (each deployment now) and
//! `/api/v1/projects/{id}/usage` (hourly usage for billing). Members only,
//! as the portal.

use app::model::*;
use app::services::RequestContext;
use axum::{
    extract::{Path, Query, State},
    Extension, Json,
};
use serde::Deserialize;

use super::{fail, RestResult};
use crate::{http::AppState, store::now_ms};

/// The cached samples (up to the last 15 minutes) of every instance, oldest first; the
/// socket `/ws/deployments/{id}/metrics` sends the same window, then each new sample.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/metrics", tag = "metrics",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = [MetricsSample]), (status = 404, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope, description = "no metrics streamer in this process")))]
pub async fn live(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<MetricsSample>>> {
    state
        .services
        .deployments
        .live_metrics(&ctx, &DeploymentId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

/// What each of the project's deployments uses right now: the newest samples (at most
/// 10 s old) of its running instances, added up. Deployments with none are left out.
#[utoipa::path(get, path = "/api/v1/projects/{id}/metrics", tag = "metrics",
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = [DeploymentNow]), (status = 404, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope, description = "no metrics streamer in this process")))]
pub async fn project_now(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> RestResult<Json<Vec<DeploymentNow>>> {
    state
        .services
        .deployments
        .project_metrics_now(&ctx, &ProjectId(id))
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// `1h` (1-minute points, the default), `24h` (5-minute points) or `7d` (30-minute
    /// points).
    range: Option<String>,
}

/// The deployment's history over the last hour, day or week: its instances added up per
/// point (mean and peak CPU, memory, network and disk rates), from the minute rollups.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/metrics/history", tag = "metrics",
    params(("id" = String, Path, description = "deployment id"), HistoryQuery),
    responses((status = 200, body = MetricsHistory), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn history(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> RestResult<Json<MetricsHistory>> {
    let range = HistoryRange::parse(q.range.as_deref().unwrap_or("1h")).map_err(fail(&ctx))?;
    state
        .services
        .deployments
        .metrics_history(&ctx, &DeploymentId(id), range)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UsageQuery {
    /// Start, Unix epoch milliseconds (hours that start at or after it). Default: 30 days
    /// before `to_ms`.
    from_ms: Option<String>,
    /// End, Unix epoch milliseconds (hours that start before it). Default: now.
    to_ms: Option<String>,
    /// `true` adds the hourly rows (at most 62 days). Default `false`.
    hourly: Option<String>,
}

/// Parses an optional integer query value; 400 `invalid_query` naming the key.
fn integer(key: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::invalid_field(
                    key,
                    "invalid_query",
                    format!("{key} must be a whole number of milliseconds since the Unix epoch, not '{v}'."),
                )
            })
        })
        .transpose()
}

/// A project's resource use per deployment (CPU core-seconds, memory byte-hours, network
/// and disk bytes) over whole hours, for billing; deleted deployments keep their usage.
#[utoipa::path(get, path = "/api/v1/projects/{id}/usage", tag = "metrics",
    params(("id" = String, Path, description = "project id"), UsageQuery),
    responses((status = 200, body = ProjectUsage), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn usage(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<UsageQuery>,
) -> RestResult<Json<ProjectUsage>> {
    let to_ms = integer("to_ms", q.to_ms.as_deref())
        .map_err(fail(&ctx))?
        .unwrap_or_else(now_ms);
    let from_ms = integer("from_ms", q.from_ms.as_deref())
        .map_err(fail(&ctx))?
        .unwrap_or(to_ms - 30 * 24 * 3_600_000);
    let hourly = match q.hourly.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(fail(&ctx)(ApiError::invalid_field(
                "hourly",
                "invalid_query",
                format!("hourly must be true or false, not '{other}'."),
            )))
        }
    };
    state
        .services
        .deployments
        .project_usage(&ctx, &ProjectId(id), from_ms, to_ms, hourly)
        .await
        .map(Json)
        .map_err(fail(&ctx))
}
