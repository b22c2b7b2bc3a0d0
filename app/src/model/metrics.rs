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
