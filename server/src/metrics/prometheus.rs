//! `GET /metrics` in the Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): `# HELP` and `# TYPE`
//! once per family, then `name{label="value",…} number` lines; label values escape `\`,
//! `"` and newlines; histograms give cumulative `_bucket{le=…}` counts, `_sum` and `_count`.
//!
//! Families: per instance (its newest sample), per node (capacity and what the placed
//! instances reserve), per ingress route (requests by status class, latency histogram), the
//! job queue, and the metrics streamer itself.

use std::fmt::Write;

use app::model::MetricsSample;

use crate::{
    ingress::observe::RouteStatsView,
    store::{NodeAllocation, NodeRecord},
};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape reports.
#[derive(Debug, Default)]
pub struct Scrape {
    /// The newest sample of every instance.
    pub samples: Vec<MetricsSample>,
    pub nodes: Vec<NodeRecord>,
    pub allocations: Vec<NodeAllocation>,
    pub routes: Vec<RouteStatsView>,
    /// `(kind, status, count)` of queued and running jobs.
    pub jobs: Vec<(String, String, i64)>,
    /// The streamer's counters: samples published, failed readings, instances read from
    /// cgroups and through stats streams, live subscribers.
    pub streamer: Option<StreamerFigures>,
    /// `(status, trigger, count)` of the backups recorded.
    pub backups: Vec<(String, String, i64)>,
    /// `(status, count)` of the restores recorded.
    pub restores: Vec<(String, i64)>,
    /// Scheduled backup runs missed, summed over every schedule.
    pub backup_runs_missed: i64,
    /// `(status, count)` of the repository checks recorded.
    pub backup_checks: Vec<(String, i64)>,
}

/// The streamer's counters at the scrape.
#[derive(Debug, Default, Clone)]
pub struct StreamerFigures {
    pub samples: u64,
    pub errors: u64,
    pub cgroup_sources: u64,
    pub docker_sources: u64,
    pub subscribers: usize,
    pub cached_samples: usize,
    /// History transactions committed and failed.
    pub history_writes: u64,
    pub history_write_failures: u64,
    /// Each engine's breaker, by node id.
    pub breakers: Vec<(String, super::breaker::BreakerState)>,
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text being written.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        if value.is_finite() {
            let _ = writeln!(self.0, " {value}");
        } else {
            let _ = writeln!(self.0, " NaN");
        }
    }
}

type InstanceFigure = fn(&MetricsSample) -> f64;

/// The exposition of `scrape`.
pub fn render(scrape: &Scrape) -> String {
    let mut out = Exposition::default();
    let instance_families: [(&str, &str, &str, InstanceFigure); 9] = [
        (
            "berth_instance_cpu_percent",
            "gauge",
            "CPU use in percent of one core, over the last second.",
            |s| s.cpu_percent,
        ),
        (
            "berth_instance_memory_bytes",
            "gauge",
            "Memory in use (without inactive page cache).",
            |s| s.memory_bytes as f64,
        ),
        (
            "berth_instance_memory_limit_bytes",
            "gauge",
            "Memory limit.",
            |s| s.memory_limit_bytes as f64,
        ),
        (
            "berth_instance_network_receive_bytes_total",
            "counter",
            "Bytes received since the container started.",
            |s| s.net_rx_bytes as f64,
        ),
        (
            "berth_instance_network_transmit_bytes_total",
            "counter",
            "Bytes sent since the container started.",
            |s| s.net_tx_bytes as f64,
        ),
        (
            "berth_instance_block_read_bytes_total",
            "counter",
            "Bytes read from block devices since the container started.",
            |s| s.block_read_bytes as f64,
        ),
        (
            "berth_instance_block_write_bytes_total",
            "counter",
            "Bytes written to block devices since the container started.",
            |s| s.block_write_bytes as f64,
        ),
        (
            "berth_instance_pids",
            "gauge",
            "Processes and threads.",
            |s| s.pids as f64,
        ),
        (
            "berth_instance_sample_timestamp_seconds",
            "gauge",
            "When the newest sample was read, Unix time.",
            |s| s.at_ms as f64 / 1000.0,
        ),
    ];
    for (name, kind, help, figure) in instance_families {
        out.family(name, kind, help);
        for s in &scrape.samples {
            let labels = [
                ("deployment", s.deployment_id.0.as_str()),
                ("instance", s.instance_id.0.as_str()),
            ];
            out.line(name, &labels, figure(s));
        }
    }

    type NodeFigure = fn(&NodeRecord, Option<&NodeAllocation>) -> f64;
    let node_families: [(&str, &str, NodeFigure); 5] = [
        (
            "berth_node_cpu_capacity_cores",
            "CPU cores the node offers.",
            |n, _| n.cpu_millicores as f64 / 1000.0,
        ),
        (
            "berth_node_memory_capacity_bytes",
            "Memory the node offers.",
            |n, _| n.memory_bytes as f64,
        ),
        (
            "berth_node_cpu_allocated_cores",
            "CPU cores reserved by the plans of instances placed on the node.",
            |_, a| a.map_or(0.0, |a| a.cpu_millicores as f64 / 1000.0),
        ),
        (
            "berth_node_memory_allocated_bytes",
            "Memory reserved by the plans of instances placed on the node.",
            |_, a| a.map_or(0.0, |a| a.memory_bytes as f64),
        ),
        (
            "berth_node_instances",
            "Instances placed on the node.",
            |_, a| a.map_or(0.0, |a| a.instances as f64),
        ),
    ];
    for (name, help, figure) in node_families {
        out.family(name, "gauge", help);
        for n in &scrape.nodes {
            let a = scrape.allocations.iter().find(|a| a.node_id == n.id);
            let labels = [
                ("node", n.name.as_str()),
                ("region", n.region.as_str()),
                ("zone", n.availability_zone.as_str()),
            ];
            out.line(name, &labels, figure(n, a));
        }
    }

    out.family(
        "berth_ingress_requests_total",
        "counter",
        "Requests answered by the ingress, by route and status class.",
    );
    const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    for r in &scrape.routes {
        for (class, count) in CLASSES.iter().zip(&r.status_classes) {
            out.line(
                "berth_ingress_requests_total",
                &[("route", &r.host), ("class", class)],
                *count as f64,
            );
        }
    }
    let histogram = "berth_ingress_request_duration_seconds";
    out.family(
        histogram,
        "histogram",
        "Time from the request to the response head, by route.",
    );
    for r in &scrape.routes {
        let mut cumulative = 0;
        for (i, count) in r.latency_buckets.iter().enumerate() {
            cumulative += count;
            let le = r
                .latency_bounds_ms
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |ms| (ms / 1000.0).to_string());
            out.line(
                &format!("{histogram}_bucket"),
                &[("route", &r.host), ("le", &le)],
                cumulative as f64,
            );
        }
        out.line(
            &format!("{histogram}_sum"),
            &[("route", &r.host)],
            r.latency_sum_ms / 1000.0,
        );
        out.line(
            &format!("{histogram}_count"),
            &[("route", &r.host)],
            r.requests as f64,
        );
    }

    out.family("berth_jobs", "gauge", "Jobs queued or running, by kind.");
    for (kind, status, count) in &scrape.jobs {
        out.line(
            "berth_jobs",
            &[("kind", kind), ("status", status)],
            *count as f64,
        );
    }

    out.family(
        "berth_backups_total",
        "counter",
        "Backups recorded, by status (queued, running, succeeded, failed) and trigger.",
    );
    for (status, trigger, count) in &scrape.backups {
        out.line(
            "berth_backups_total",
            &[("status", status), ("trigger", trigger)],
            *count as f64,
        );
    }
    out.family(
        "berth_backup_runs_missed_total",
        "counter",
        "Scheduled backup runs that did not happen (Berth down, or the previous still going).",
    );
    out.line(
        "berth_backup_runs_missed_total",
        &[],
        scrape.backup_runs_missed as f64,
    );
    out.family(
        "berth_restores_total",
        "counter",
        "Restores recorded, by status.",
    );
    for (status, count) in &scrape.restores {
        out.line("berth_restores_total", &[("status", status)], *count as f64);
    }
    out.family(
        "berth_backup_checks_total",
        "counter",
        "Repository checks (and restore drills) recorded, by status; failed ones found damage.",
    );
    for (status, count) in &scrape.backup_checks {
        out.line(
            "berth_backup_checks_total",
            &[("status", status)],
            *count as f64,
        );
    }

    if let Some(m) = &scrape.streamer {
        let figures: [(&str, &str, &str, f64); 4] = [
            (
                "berth_metrics_samples_total",
                "counter",
                "Samples the streamer published.",
                m.samples as f64,
            ),
            (
                "berth_metrics_errors_total",
                "counter",
                "Readings that failed (a container gone, a stream broken, an engine call failed).",
                m.errors as f64,
            ),
            (
                "berth_metrics_subscribers",
                "gauge",
                "Live metrics sockets.",
                m.subscribers as f64,
            ),
            (
                "berth_metrics_cached_samples",
                "gauge",
                "Samples held in the live cache.",
                m.cached_samples as f64,
            ),
        ];
        for (name, kind, help, value) in figures {
            out.family(name, kind, help);
            out.line(name, &[], value);
        }
        let sources = "berth_metrics_sources";
        out.family(sources, "gauge", "Instances sampled, by source.");
        out.line(sources, &[("source", "cgroup")], m.cgroup_sources as f64);
        out.line(sources, &[("source", "docker")], m.docker_sources as f64);
        let writes = "berth_metrics_history_writes_total";
        out.family(
            writes,
            "counter",
            "Transactions writing minute rollups and hourly usage, by outcome.",
        );
        out.line(writes, &[("outcome", "ok")], m.history_writes as f64);
        out.line(
            writes,
            &[("outcome", "failed")],
            m.history_write_failures as f64,
        );
        let breakers = "berth_metrics_engine_breaker_open";
        out.family(
            breakers,
            "gauge",
            "1 while the streamer's circuit breaker for a node's engine is open or half-open.",
        );
        for (node, state) in &m.breakers {
            let open = *state != super::breaker::BreakerState::Closed;
            out.line(breakers, &[("node", node)], f64::from(u8::from(open)));
        }
    }
    out.0
}

#[cfg(test)]
mod tests {
    use app::model::{DeploymentId, InstanceId};

    use super::*;

    #[test]
    fn families_lines_and_histograms_follow_the_text_format() {
        let scrape = Scrape {
            samples: vec![MetricsSample {
                cpu_percent: 12.5,
                memory_bytes: 1024,
                memory_limit_bytes: 2048,
                net_rx_bytes: 7,
                net_tx_bytes: 8,
                pids: 3,
                ..MetricsSample::idle(InstanceId("i1".into()), DeploymentId("d1".into()), 1_500)
            }],
            routes: vec![RouteStatsView {
                host: "a\"b.example".into(),
                requests: 3,
                status_classes: vec![0, 2, 0, 1, 0],
                latency_buckets: vec![1, 2, 0],
                latency_bounds_ms: vec![0.5, 1.0],
                latency_sum_ms: 2.5,
            }],
            jobs: vec![("deploy".into(), "queued".into(), 2)],
            ..Scrape::default()
        };
        let text = render(&scrape);
        assert!(text.contains("# TYPE berth_instance_cpu_percent gauge\n"));
        assert!(
            text.contains("berth_instance_cpu_percent{deployment=\"d1\",instance=\"i1\"} 12.5\n")
        );
        assert!(text.contains(
            "berth_instance_sample_timestamp_seconds{deployment=\"d1\",instance=\"i1\"} 1.5\n"
        ));
        assert!(text
            .contains("berth_ingress_requests_total{route=\"a\\\"b.example\",class=\"2xx\"} 2\n"));
        assert!(text.contains("berth_ingress_request_duration_seconds_bucket{route=\"a\\\"b.example\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("berth_ingress_request_duration_seconds_bucket{route=\"a\\\"b.example\",le=\"0.001\"} 3\n"));
        assert!(text.contains("berth_ingress_request_duration_seconds_bucket{route=\"a\\\"b.example\",le=\"+Inf\"} 3\n"));
        assert!(text.contains(
            "berth_ingress_request_duration_seconds_sum{route=\"a\\\"b.example\"} 0.0025\n"
        ));
        assert!(text.contains("berth_jobs{kind=\"deploy\",status=\"queued\"} 2\n"));
        // Every line is a comment or `name{labels} value`.
        for line in text.lines() {
            assert!(
                line.starts_with("# ")
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
        assert_eq!(escape("a\\b\nc"), "a\\\\b\\nc");
    }
}
