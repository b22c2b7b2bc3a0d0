//! Live metrics: the streamer ([`collector`]) samples every running instance once a second
//! from its cgroup or the engine's stats stream, the [`hub`] keeps the last 15 minutes per
//! instance and broadcasts each sample to the metrics sockets (`/ws/deployments/{id}/metrics`),
//! and the [`rollup`] writer keeps minute rollups and hourly usage in the database.

pub mod breaker;
pub mod cgroup;
pub mod collector;
mod counter;
pub mod hub;
pub mod prometheus;
pub mod reading;
pub mod rollup;

pub use collector::{Collector, CollectorStats, MetricsSource};
pub use hub::MetricsHub;
pub use rollup::{Retention, RollupBuffer, RollupWriter};

use std::sync::Arc;

/// The live metrics of a process running the `metrics` role: the cache, the streamer's
/// counters and the unwritten history.
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    pub hub: Arc<MetricsHub>,
    pub stats: Arc<CollectorStats>,
    /// Minutes not yet written to the history.
    pub rollups: Arc<RollupBuffer>,
}
