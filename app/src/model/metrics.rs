//! Metrics samples: what the metrics streamer computes for each running instance once a
//! second, and the frames of the live metrics socket `/ws/deployments/{id}/metrics`.

use serde::{Deserialize, Serialize};

use super::{DeploymentId, InstanceId};

/// One reading of a container's resource use, computed from two consecutive raw readings
/// (see the server's `metrics::reading`). Counters (`*_bytes` without `_per_s`) are totals
/// since the container started; rates are over the interval since the previous sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MetricsSample {
    pub instance_id: InstanceId,
    pub deployment_id: DeploymentId,
    /// When the reading was taken, Unix epoch milliseconds.
    pub at_ms: i64,
    /// Length of the interval the rates and CPU % are over (since the previous reading),
    /// milliseconds; usually 1000.
    pub interval_ms: i64,
    /// CPU use in percent of one core (0 ..= 100 × cores), as `docker stats` shows it.
    pub cpu_percent: f64,
    /// CPU use in percent of the plan's cores (0 ..= 100), when the plan limits CPU.
    pub cpu_percent_of_plan: Option<f64>,
    /// Memory in use, bytes: usage minus the inactive page cache, as `docker stats` shows it.
    pub memory_bytes: u64,
    /// The container's memory limit, bytes (the host's memory when it has none).
    pub memory_limit_bytes: u64,
    /// Bytes received on the container's network interfaces (loopback excluded).
    pub net_rx_bytes: u64,
    /// Bytes sent on the container's network interfaces (loopback excluded).
    pub net_tx_bytes: u64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
    pub block_read_bytes_per_s: f64,
    pub block_write_bytes_per_s: f64,
    /// Processes and threads in the container.
    pub pids: u64,
}

impl MetricsSample {
    /// A sample of `instance` at `at_ms` with every figure 0 (a starting point for tests and
    /// examples).
    pub fn idle(instance: InstanceId, deployment: DeploymentId, at_ms: i64) -> Self {
        Self {
            instance_id: instance,
            deployment_id: deployment,
            at_ms,
            interval_ms: 1000,
            cpu_percent: 0.0,
            cpu_percent_of_plan: None,
            memory_bytes: 0,
            memory_limit_bytes: 0,
            net_rx_bytes: 0,
            net_tx_bytes: 0,
            net_rx_bytes_per_s: 0.0,
            net_tx_bytes_per_s: 0.0,
            block_read_bytes: 0,
            block_write_bytes: 0,
            block_read_bytes_per_s: 0.0,
            block_write_bytes_per_s: 0.0,
            pids: 0,
        }
    }
}

/// One text frame of the live metrics socket, JSON with a `kind` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsFrame {
    /// Sent once, first: the recent window (up to 15 minutes) of every instance of the
    /// deployment, oldest first.
    Window { samples: Vec<MetricsSample> },
    /// A new sample, as the streamer computes it.
    Sample { sample: MetricsSample },
    /// The socket fell behind and `missed` samples were skipped to catch up.
    Skipped { missed: u64 },
}

/// A span of metrics history the portal and `/api/v1/deployments/{id}/metrics/history`
/// offer: `1h` (1-minute points), `24h` (5-minute points) or `7d` (30-minute points), each
/// ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum HistoryRange {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
}

impl HistoryRange {
    pub const ALL: [HistoryRange; 3] = [Self::Hour, Self::Day, Self::Week];

    /// How far back the range reaches, milliseconds.
    pub fn span_ms(self) -> i64 {
        match self {
            Self::Hour => 3_600_000,
            Self::Day => 24 * 3_600_000,
            Self::Week => 7 * 24 * 3_600_000,
        }
    }

    /// The width of one point, milliseconds (a whole number of minutes): at most 336 points.
    pub fn step_ms(self) -> i64 {
        match self {
            Self::Hour => 60_000,
            Self::Day => 5 * 60_000,
            Self::Week => 30 * 60_000,
        }
    }

    /// `1h`, `24h` or `7d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    /// Parses `1h`, `24h` or `7d`.
    ///
    /// # Errors
    /// 400 `invalid_range` on field `range`, naming the accepted values.
    pub fn parse(text: &str) -> Result<Self, super::ApiError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                super::ApiError::invalid_field(
                    "range",
                    "invalid_range",
                    format!("'{text}' is not a history range; use 1h, 24h or 7d."),
                )
            })
    }
}

/// One point of a deployment's history: its instances added up over `[at_ms, at_ms + step)`,
/// from the minute rollups. CPU is percent of one core; rates are per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// Start of the point's span, Unix epoch milliseconds.
    pub at_ms: i64,
    /// Mean CPU over the span (instances added up).
    pub cpu_percent: f64,
    /// The highest one-second CPU seen in any minute of the span (instances added up).
    pub cpu_percent_max: f64,
    /// Mean memory in use over the span, bytes (instances added up).
    pub memory_bytes: u64,
    /// The highest memory seen in the span, bytes (instances added up).
    pub memory_bytes_max: u64,
    /// The instances' memory limits added up, bytes.
    pub memory_limit_bytes: u64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    pub block_read_bytes_per_s: f64,
    pub block_write_bytes_per_s: f64,
}

/// A deployment's history over one range; spans without samples have no point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MetricsHistory {
    pub deployment_id: DeploymentId,
    pub range: HistoryRange,
    /// Width of each point, milliseconds.
    pub step_ms: i64,
    /// Oldest first.
    pub points: Vec<HistoryPoint>,
}

/// Resource use of one deployment over some hours, from the hourly usage records (what
/// billing reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UsageFigures {
    /// CPU time used, core-seconds.
    pub cpu_seconds: f64,
    /// Memory in use integrated over time, byte-hours (1 GiB held for an hour is 2^30).
    pub memory_byte_hours: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
}

/// One hour of a deployment's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UsageHour {
    pub deployment_id: DeploymentId,
    /// Start of the hour, Unix epoch milliseconds (UTC).
    pub hour_ms: i64,
    #[serde(flatten)]
    pub usage: UsageFigures,
}

/// One deployment's usage over the report's span; deleted deployments keep their rows
/// (named by id, `name` empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentUsage {
    pub deployment_id: DeploymentId,
    pub name: String,
    /// Hours with any usage recorded.
    pub hours: u32,
    #[serde(flatten)]
    pub usage: UsageFigures,
}

/// A project's usage over `[from_ms, to_ms)`: totals per deployment and, when asked, the
/// hourly rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProjectUsage {
    pub project_id: super::ProjectId,
    pub from_ms: i64,
    pub to_ms: i64,
    pub deployments: Vec<DeploymentUsage>,
    /// Oldest first; empty unless hourly rows were asked for.
    pub hourly: Vec<UsageHour>,
}

/// A deployment's resource use right now: the newest sample of each of its instances that
/// was sampled in the last [`DeploymentNow::FRESH_MS`], added up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentNow {
    pub deployment_id: DeploymentId,
    /// Instances with a fresh sample.
    pub instances: u32,
    /// CPU use in percent of one core, summed over the instances (200 = two cores busy).
    pub cpu_percent: f64,
    /// Memory in use, bytes, summed over the instances.
    pub memory_bytes: u64,
    /// The instances' memory limits, bytes, summed.
    pub memory_limit_bytes: u64,
    /// When the newest of those samples was taken, Unix epoch milliseconds.
    pub at_ms: i64,
}

impl DeploymentNow {
    /// How old a sample may be and still count as "now", milliseconds: an instance not
    /// sampled for this long has stopped (or its node's engine does not answer).
    pub const FRESH_MS: i64 = 10_000;

    /// Adds up `deployment`'s fresh samples in `samples` (one per instance expected, the
    /// newest, as the live cache's `newest` gives them for every instance; other
    /// deployments' samples are skipped). `None` when none is fresh at `now_ms`.
    pub fn from_latest(
        deployment: &DeploymentId,
        samples: &[MetricsSample],
        now_ms: i64,
    ) -> Option<Self> {
        let fresh: Vec<&MetricsSample> = samples
            .iter()
            .filter(|s| &s.deployment_id == deployment && now_ms - s.at_ms <= Self::FRESH_MS)
            .collect();
        if fresh.is_empty() {
            return None;
        }
        Some(Self {
            deployment_id: deployment.clone(),
            instances: u32::try_from(fresh.len()).unwrap_or(u32::MAX),
            cpu_percent: fresh.iter().map(|s| s.cpu_percent).sum(),
            memory_bytes: fresh.iter().map(|s| s.memory_bytes).sum(),
            memory_limit_bytes: fresh.iter().map(|s| s.memory_limit_bytes).sum(),
            at_ms: fresh.iter().map(|s| s.at_ms).max().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_now_adds_up_fresh_samples_only() {
        let web = DeploymentId("web".into());
        let sample = |instance: &str, deployment: &DeploymentId, at_ms, cpu, mem| MetricsSample {
            cpu_percent: cpu,
            memory_bytes: mem,
            memory_limit_bytes: 1 << 30,
            ..MetricsSample::idle(InstanceId(instance.into()), deployment.clone(), at_ms)
        };
        let now = 100_000;
        let samples = [
            sample("a", &web, now - 1_000, 50.0, 100),
            sample("b", &web, now - 9_000, 25.5, 200),
            // Stopped 11 s ago: not "now".
            sample("c", &web, now - 11_000, 90.0, 400),
            // Another deployment's instance.
            sample("d", &DeploymentId("db".into()), now, 10.0, 800),
        ];
        let current = DeploymentNow::from_latest(&web, &samples, now).unwrap();
        assert_eq!(current.instances, 2);
        assert_eq!(current.cpu_percent, 75.5);
        assert_eq!(current.memory_bytes, 300);
        assert_eq!(current.memory_limit_bytes, 2 << 30);
        assert_eq!(current.at_ms, now - 1_000);
        assert_eq!(
            DeploymentNow::from_latest(&web, &samples[2..3], now),
            None,
            "only stale samples"
        );
    }
}
