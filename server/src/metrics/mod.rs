//! Live metrics: the streamer ([`collector`]) samples every running instance once a second
//! from its cgroup or the engine's stats stream, the [`hub`] keeps the last 15 minutes per
//! instance and broadcasts each sample to the metrics sockets (`/ws/deployments/{id}/metrics`).

pub mod cgroup;
pub mod collector;
pub mod hub;
pub mod prometheus;
pub mod reading;

pub use collector::{Collector, CollectorStats, MetricsSource};
pub use hub::MetricsHub;

use std::sync::Arc;

/// The live metrics of a process running the `metrics` role: the cache and the
/// streamer's counters.
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    pub hub: Arc<MetricsHub>,
    pub stats: Arc<CollectorStats>,
}
