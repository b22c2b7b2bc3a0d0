//! Metrics for members, behind `DeploymentService`: the live window from the metrics role's
//! cache, a deployment's history from the minute rollups, and a project's hourly usage.
//! Every call checks that the caller may see the deployment or project first (404 when not).

use std::{collections::BTreeMap, sync::Arc};

use app::{model::*, services::RequestContext};

use super::{deployments::DeploymentsService, internal, projects::project_access};
use crate::{
    metrics::MetricsHub,
    store::{now_ms, MinuteRollup, UsageRecord},
};

/// The longest span one usage request covers with hourly rows (62 days; totals may span
/// the whole retention).
pub const HOURLY_SPAN_MAX_MS: i64 = 62 * 24 * 3_600_000;

impl DeploymentsService {
    /// Lets the REST API answer the live window from this process's cache (`None`: this
    /// process does not run the `metrics` role).
    pub fn with_live_metrics(mut self, hub: Option<Arc<MetricsHub>>) -> Self {
        self.live_metrics = hub;
        self
    }

    /// The cached samples (up to 15 minutes) of the deployment's instances, oldest first.
    ///
    /// # Errors
    /// 404 for a deployment the caller may not see; 503 `metrics_unavailable` when this
    /// process does not run the streamer.
    pub(super) async fn live_window(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<MetricsSample>, ApiError> {
        let d = self.visible(ctx, id).await?;
        Ok(self.hub()?.window(&DeploymentId(d.id)))
    }

    /// The live cache, or 503 `metrics_unavailable` in a process without the streamer.
    fn hub(&self) -> Result<&MetricsHub, ApiError> {
        self.live_metrics.as_deref().ok_or_else(|| {
            ApiError::new(
                503,
                "metrics_unavailable",
                "Live metrics are served by processes with the metrics role; this one has none.",
            )
        })
    }

    /// What each of the project's deployments uses right now (its instances' newest
    /// samples, at most [`DeploymentNow::FRESH_MS`] old, added up), by deployment name;
    /// deployments without a running, sampled instance are left out.
    ///
    /// # Errors
    /// 404 for a project the caller may not see; 503 `metrics_unavailable` when this
    /// process does not run the streamer.
    pub(super) async fn project_now(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
    ) -> Result<Vec<DeploymentNow>, ApiError> {
        project_access(&self.store, ctx, project).await?;
        let hub = self.hub()?;
        let deployments = self
            .store
            .deployments()
            .for_project(&project.0)
            .await
            .map_err(internal("list deployments"))?;
        // One pass over the cache; each deployment then picks its own samples.
        let newest = hub.newest();
        let now = now_ms();
        Ok(deployments
            .into_iter()
            .filter_map(|d| DeploymentNow::from_latest(&DeploymentId(d.id), &newest, now))
            .collect())
    }

    /// The deployment's history over `range`, ending now.
    ///
    /// # Errors
    /// 404 for a deployment the caller may not see.
    pub(super) async fn history(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        range: HistoryRange,
    ) -> Result<MetricsHistory, ApiError> {
        let d = self.visible(ctx, id).await?;
        let now = now_ms();
        let step = range.step_ms();
        // Whole steps: the first point starts on a step boundary.
        let from = now - range.span_ms();
        let from = from - from.rem_euclid(step);
        let minutes = self
            .store
            .rollups()
            .minutes(&d.id, from, now + 1)
            .await
            .map_err(internal("read metrics history"))?;
        Ok(MetricsHistory {
            deployment_id: DeploymentId(d.id),
            range,
            step_ms: step,
            points: history_points(&minutes, step),
        })
    }

    /// The project's usage over the hours that started in `[from_ms, to_ms)`: totals per
    /// deployment, and the hourly rows when `hourly`.
    ///
    /// # Errors
    /// 404 for a project the caller may not see; 400 `invalid_span` when `to_ms` is not
    /// after `from_ms`, or hourly rows are asked for more than 62 days.
    pub(super) async fn usage(
        &self,
        ctx: &RequestContext,
        project: &ProjectId,
        from_ms: i64,
        to_ms: i64,
        hourly: bool,
    ) -> Result<ProjectUsage, ApiError> {
        project_access(&self.store, ctx, project).await?;
        if to_ms <= from_ms {
            return Err(ApiError::invalid_field(
                "to_ms",
                "invalid_span",
                "to_ms must be after from_ms (Unix epoch milliseconds).",
            ));
        }
        if hourly && to_ms - from_ms > HOURLY_SPAN_MAX_MS {
            return Err(ApiError::invalid_field(
                "from_ms",
                "invalid_span",
                "Hourly rows cover at most 62 days per request; ask for totals or a shorter span.",
            ));
        }
        let rollups = self.store.rollups();
        let totals = rollups
            .usage_totals(&project.0, from_ms, to_ms)
            .await
            .map_err(internal("read usage"))?;
        let names: BTreeMap<String, String> = self
            .store
            .deployments()
            .for_project(&project.0)
            .await
            .map_err(internal("list deployments"))?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect();
        let mut deployments: Vec<DeploymentUsage> = totals
            .into_iter()
            .map(|t| DeploymentUsage {
                name: names.get(&t.deployment_id).cloned().unwrap_or_default(),
                deployment_id: DeploymentId(t.deployment_id.clone()),
                hours: u32::try_from(t.hours).unwrap_or(u32::MAX),
                usage: figures(&t),
            })
            .collect();
        deployments.sort_by(|a, b| (a.name.is_empty(), &a.name).cmp(&(b.name.is_empty(), &b.name)));
        let hourly = if hourly {
            rollups
                .usage_hours(&project.0, from_ms, to_ms)
                .await
                .map_err(internal("read usage"))?
                .into_iter()
                .map(|h| UsageHour {
                    deployment_id: DeploymentId(h.deployment_id.clone()),
                    hour_ms: h.hour_ms,
                    usage: figures(&h),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(ProjectUsage {
            project_id: project.clone(),
            from_ms,
            to_ms,
            deployments,
            hourly,
        })
    }
}

fn figures(r: &UsageRecord) -> UsageFigures {
    let bytes = |v: i64| u64::try_from(v).unwrap_or(0);
    UsageFigures {
        cpu_seconds: r.cpu_seconds,
        memory_byte_hours: r.memory_byte_hours,
        net_rx_bytes: bytes(r.net_rx_bytes),
        net_tx_bytes: bytes(r.net_tx_bytes),
        block_read_bytes: bytes(r.block_read_bytes),
        block_write_bytes: bytes(r.block_write_bytes),
    }
}

/// One minute of a deployment: its instances' rows added up.
#[derive(Default)]
struct Minute {
    /// Seconds observed: the longest any instance was sampled in the minute.
    seconds: f64,
    cpu_seconds: f64,
    cpu_percent_max: f64,
    memory_byte_seconds: f64,
    memory_bytes_max: i64,
    memory_limit_bytes: i64,
    net_rx: i64,
    net_tx: i64,
    block_read: i64,
    block_write: i64,
}

/// Points of width `step_ms` from minute rows (any order, several instances).
///
/// Per point: CPU %, memory and rates are the instances' sums divided by the seconds
/// observed (per minute, the longest any instance was sampled), so a minute with no
/// samples does not pull the mean down; the maxima are the largest per-minute sums of the
/// instances' maxima (an upper bound: the instances' peaks need not coincide).
pub fn history_points(minutes: &[MinuteRollup], step_ms: i64) -> Vec<HistoryPoint> {
    let mut by_minute: BTreeMap<i64, Minute> = BTreeMap::new();
    for r in minutes {
        let m = by_minute.entry(r.minute_ms).or_default();
        m.seconds = m.seconds.max(r.seconds);
        m.cpu_seconds += r.cpu_seconds;
        m.cpu_percent_max += r.cpu_percent_max;
        m.memory_byte_seconds += r.memory_byte_seconds;
        m.memory_bytes_max += r.memory_bytes_max;
        m.memory_limit_bytes += r.memory_limit_bytes;
        m.net_rx += r.net_rx_bytes;
        m.net_tx += r.net_tx_bytes;
        m.block_read += r.block_read_bytes;
        m.block_write += r.block_write_bytes;
    }
    let mut points: BTreeMap<i64, (Minute, i64)> = BTreeMap::new();
    for (minute_ms, m) in by_minute {
        let start = minute_ms - minute_ms.rem_euclid(step_ms.max(1));
        let (p, newest) = points.entry(start).or_default();
        p.seconds += m.seconds;
        p.cpu_seconds += m.cpu_seconds;
        p.cpu_percent_max = p.cpu_percent_max.max(m.cpu_percent_max);
        p.memory_byte_seconds += m.memory_byte_seconds;
        p.memory_bytes_max = p.memory_bytes_max.max(m.memory_bytes_max);
        if minute_ms >= *newest {
            *newest = minute_ms;
            p.memory_limit_bytes = m.memory_limit_bytes;
        }
        p.net_rx += m.net_rx;
        p.net_tx += m.net_tx;
        p.block_read += m.block_read;
        p.block_write += m.block_write;
    }
    points
        .into_iter()
        .filter(|(_, (p, _))| p.seconds > 0.0)
        .map(|(at_ms, (p, _))| {
            let per_s = |v: i64| v as f64 / p.seconds;
            HistoryPoint {
                at_ms,
                cpu_percent: p.cpu_seconds / p.seconds * 100.0,
                cpu_percent_max: p.cpu_percent_max,
                memory_bytes: (p.memory_byte_seconds / p.seconds).round() as u64,
                memory_bytes_max: u64::try_from(p.memory_bytes_max).unwrap_or(0),
                memory_limit_bytes: u64::try_from(p.memory_limit_bytes).unwrap_or(0),
                net_rx_bytes_per_s: per_s(p.net_rx),
                net_tx_bytes_per_s: per_s(p.net_tx),
                block_read_bytes_per_s: per_s(p.block_read),
                block_write_bytes_per_s: per_s(p.block_write),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(instance: &str, minute: i64, seconds: f64, cpu_seconds: f64, rx: i64) -> MinuteRollup {
        MinuteRollup {
            instance_id: instance.into(),
            deployment_id: "d".into(),
            minute_ms: minute * 60_000,
            samples: seconds as i64,
            seconds,
            cpu_seconds,
            cpu_percent_max: cpu_seconds / seconds * 100.0 + 10.0,
            memory_byte_seconds: 100.0 * seconds,
            memory_bytes_max: 150,
            memory_limit_bytes: 1000,
            net_rx_bytes: rx,
            ..MinuteRollup::default()
        }
    }

    #[test]
    fn instances_add_up_and_minutes_average_into_points() {
        let minutes = [
            // Minute 0: two instances at 50 % and 25 % for the whole minute.
            row("a", 0, 60.0, 30.0, 600),
            row("b", 0, 60.0, 15.0, 0),
            // Minute 1: only a, sampled for 30 s at 100 %.
            row("a", 1, 30.0, 30.0, 300),
            // Minute 5: the next 5-minute point.
            row("a", 5, 60.0, 6.0, 0),
        ];
        let points = history_points(&minutes, 5 * 60_000);
        assert_eq!(points.len(), 2);
        let p = &points[0];
        assert_eq!(p.at_ms, 0);
        // (30 + 15 + 30) core-seconds over 90 observed seconds.
        assert!((p.cpu_percent - 75.0 / 90.0 * 100.0).abs() < 1e-9, "{p:?}");
        // The peak minute: a's 60 % + b's 35 % maxima, or a's 110 % in minute 1.
        assert!((p.cpu_percent_max - 110.0).abs() < 1e-9, "{p:?}");
        // Minute 0 holds 200 bytes on average (both), minute 1 100: (200×60 + 100×30) / 90.
        assert_eq!(p.memory_bytes, (15_000.0f64 / 90.0).round() as u64);
        assert_eq!((p.memory_bytes_max, p.memory_limit_bytes), (300, 1000));
        assert!((p.net_rx_bytes_per_s - 900.0 / 90.0).abs() < 1e-9);
        assert_eq!(points[1].at_ms, 5 * 60_000);
        assert!((points[1].cpu_percent - 10.0).abs() < 1e-9);
    }
}
