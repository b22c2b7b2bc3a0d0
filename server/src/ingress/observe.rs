//! What the ingress tells about its traffic: a structured access log line per request
//! (tracing target `berth::access`) and per-route counters: requests, status classes and a
//! latency histogram (time to the response head), for the metrics module and the admin API.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use serde::Serialize;

/// Upper bounds of the latency buckets, in milliseconds (the last bucket is everything
/// above the last bound). Prometheus-style cumulative counts are derived from them.
pub const LATENCY_BOUNDS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Counters of one route (one hostname).
#[derive(Debug, Default)]
pub struct RouteStats {
    requests: AtomicU64,
    /// 1xx … 5xx.
    classes: [AtomicU64; 5],
    /// One per bound, plus the overflow bucket.
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl RouteStats {
    fn record(&self, status: u16, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// A route's counters at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RouteStatsView {
    /// The hostname.
    pub host: String,
    pub requests: u64,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub status_classes: Vec<u64>,
    /// Requests per latency bucket (not cumulative); bounds in [`LATENCY_BOUNDS_MS`], the
    /// last entry counts those above the last bound.
    pub latency_buckets: Vec<u64>,
    /// Upper bounds of `latency_buckets`, ms.
    pub latency_bounds_ms: Vec<f64>,
    /// Sum of all latencies, ms (with `requests`, the mean).
    pub latency_sum_ms: f64,
}

/// Per-route counters of one ingress process.
#[derive(Debug, Default)]
pub struct IngressStats {
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
}

impl IngressStats {
    /// Counts one request to `host` answered with `status` after `latency`.
    pub fn record(&self, host: &str, status: u16, latency: Duration) {
        if let Some(stats) = self.routes.read().expect("stats lock").get(host) {
            stats.record(status, latency);
            return;
        }
        let stats = self
            .routes
            .write()
            .expect("stats lock")
            .entry(host.to_owned())
            .or_default()
            .clone();
        stats.record(status, latency);
    }

    /// Every route's counters, by hostname.
    pub fn snapshot(&self) -> Vec<RouteStatsView> {
        let routes = self.routes.read().expect("stats lock");
        let mut views: Vec<RouteStatsView> = routes
            .iter()
            .map(|(host, s)| RouteStatsView {
                host: host.clone(),
                requests: s.requests.load(Ordering::Relaxed),
                status_classes: s
                    .classes
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect(),
                latency_buckets: s
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect(),
                latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
                latency_sum_ms: s.latency_sum_us.load(Ordering::Relaxed) as f64 / 1000.0,
            })
            .collect();
        views.sort_by(|a, b| a.host.cmp(&b.host));
        views
    }

    /// Forgets routes that are no longer in `live` (removed deployments and domains).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.routes
            .write()
            .expect("stats lock")
            .retain(|host, _| live(host));
    }
}

/// One request as the access log records it.
pub struct AccessEntry<'a> {
    pub client: std::net::SocketAddr,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub upstream: Option<std::net::SocketAddr>,
    pub request_id: Option<&'a str>,
    pub tls: bool,
}

/// Writes the access log line (target `berth::access`, level info): client, method, host,
/// path (without the query, which may hold secrets), status, latency to the response head in
/// ms, the instance that answered, the request id and whether TLS was used.
pub fn access_log(e: &AccessEntry<'_>) {
    tracing::info!(
        target: "berth::access",
        client = %e.client.ip(),
        method = e.method,
        host = e.host.unwrap_or("-"),
        path = e.path,
        status = e.status,
        latency_ms = e.latency.as_secs_f64() * 1000.0,
        upstream = %e.upstream.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
        request_id = e.request_id.unwrap_or("-"),
        tls = e.tls,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class_and_latency_bucket() {
        let stats = IngressStats::default();
        stats.record("a.localhost", 200, Duration::from_micros(300));
        stats.record("a.localhost", 204, Duration::from_millis(3));
        stats.record("a.localhost", 503, Duration::from_secs(20));
        stats.record("b.localhost", 404, Duration::from_millis(1));
        let snap = stats.snapshot();
        assert_eq!(snap.len(), 2);
        let a = &snap[0];
        assert_eq!(a.host, "a.localhost");
        assert_eq!(a.requests, 3);
        assert_eq!(a.status_classes, vec![0, 2, 0, 0, 1]);
        assert_eq!(a.latency_buckets[0], 1, "0.3 ms <= 0.5 ms");
        assert_eq!(a.latency_buckets[3], 1, "3 ms <= 5 ms");
        assert_eq!(
            a.latency_buckets[LATENCY_BOUNDS_MS.len()],
            1,
            "20 s overflows"
        );
        assert!((a.latency_sum_ms - 20_003.3).abs() < 0.01);
        stats.retain(|h| h == "b.localhost");
        assert_eq!(stats.snapshot().len(), 1);
    }
}
