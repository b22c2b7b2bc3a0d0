//! The metrics streamer's cost and latency on the machine's real Docker engine (figures go
//! in the README):
//! 1. with 50 and then 200 idle instances, the CPU one streamer uses (Berth's process) and
//!    makes the engine use (dockerd, containerd and the containerd shims), for the cgroup
//!    source and for the Docker stats-stream source, at 1 s resolution;
//! 2. the latency from a sample being taken (its reading's time) to a websocket client
//!    receiving it, with 100 clients on `/ws/deployments/{id}/metrics`.
//!
//! Berth runs with its own streamer (cgroup source) throughout, serving the sockets; each
//! source's cost is what one more streamer of that source adds to the process and to the
//! engine over a [`WINDOW`], against the same window without it. That extra streamer runs on
//! a runtime of its own, whose threads (the one that drives it and its blocking pool, all
//! named [`STREAMER_THREAD`]) do nothing else, so their CPU time is also measured directly:
//! a figure that the rest of the process (health checks, the reconciler) cannot blur.
//!
//! Run with `cargo bench -p server --bench metrics` (needs Docker and busybox-static).

#[path = "../tests/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use berth::{
    metrics::{Collector, MetricsHub, MetricsSource, RollupBuffer},
    store::now_ms,
};
use common::{deploy::*, ws::*, *};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// How long each CPU figure is measured.
const WINDOW: Duration = Duration::from_secs(20);

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU time (user + system) `pid` used so far, seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / TICKS_PER_S
}

/// The name of the extra streamer's threads.
const STREAMER_THREAD: &str = "bench-streamer";
/// How sqlx names its SQLite worker threads (`sqlx-sqlite-worker-N`, cut to 15 bytes), which
/// run every query of the process, the streamer's instance listing among them.
const SQLITE_THREADS: &str = "sqlx-sqlite-wor";

/// CPU time the threads of this process whose name starts with `name` used so far,
/// seconds: the first field
/// of `/proc/self/task/<tid>/schedstat` (nanoseconds on a CPU; the kernel's
/// Documentation/scheduler/sched-stats.rst). Threads that ended are not counted, so the
/// streamer's runtime keeps its blocking threads alive (`thread_keep_alive`).
fn threads_cpu_seconds(name: &str) -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(name) {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e9
}

/// A current-thread runtime on a thread of its own, named [`STREAMER_THREAD`] like its
/// blocking pool, kept running for the whole bench (the engine's pooled connections that
/// its tasks open live on it).
fn streamer_runtime() -> tokio::runtime::Handle {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(STREAMER_THREAD)
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(STREAMER_THREAD.into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .unwrap();
    handle
}

/// dockerd, containerd and every containerd shim.
fn engine_pids() -> Vec<String> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm == "dockerd" || comm == "containerd" || comm.starts_with("containerd-shim") {
            pids.push(pid);
        }
    }
    pids
}

/// `(Berth's process, the engine, the process's SQLite threads)` CPU over `WINDOW`,
/// percent of one core.
async fn cpu_over_window() -> (f64, f64, f64) {
    let engine = engine_pids();
    let engine_cpu = || engine.iter().map(|p| cpu_seconds(p)).sum::<f64>();
    let (own0, engine0, db0, t0) = (
        cpu_seconds("self"),
        engine_cpu(),
        threads_cpu_seconds(SQLITE_THREADS),
        Instant::now(),
    );
    tokio::time::sleep(WINDOW).await;
    let seconds = t0.elapsed().as_secs_f64();
    (
        (cpu_seconds("self") - own0) / seconds * 100.0,
        (engine_cpu() - engine0) / seconds * 100.0,
        (threads_cpu_seconds(SQLITE_THREADS) - db0) / seconds * 100.0,
    )
}

/// What one more streamer of `source` costs.
struct Cost {
    /// Percent of one core: Berth's process with it minus without it.
    process: f64,
    /// The same for the engine's processes.
    engine: f64,
    /// Percent of one core the streamer's own threads used.
    threads: f64,
    /// Percent of one core: the SQLite threads with it minus without it (its queries).
    database: f64,
    /// Samples it published per second.
    rate: f64,
}

/// What one more streamer of `source`, run on `runtime`, costs.
async fn streamer_cost(
    app: &TestApp,
    runtime: &tokio::runtime::Handle,
    source: MetricsSource,
    instances: usize,
) -> Cost {
    let (own_base, engine_base, db_base) = cpu_over_window().await;
    let hub = Arc::new(MetricsHub::default());
    let collector = Collector::new(
        app.orchestrator.clone(),
        hub.clone(),
        Arc::new(RollupBuffer::default()),
        source,
    );
    let stats = collector.stats.clone();
    let task = runtime.spawn(collector.run());
    // Warm up: every instance has a source and the first readings are in.
    let deadline = Instant::now() + Duration::from_secs(60);
    while hub.size().0 < instances && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = stats.samples.load(std::sync::atomic::Ordering::Relaxed);
    let (threads0, t0) = (threads_cpu_seconds(STREAMER_THREAD), Instant::now());
    let (own, engine, db) = cpu_over_window().await;
    let threads = (threads_cpu_seconds(STREAMER_THREAD) - threads0) / t0.elapsed().as_secs_f64();
    let after = stats.samples.load(std::sync::atomic::Ordering::Relaxed);
    task.abort();
    tokio::time::sleep(Duration::from_secs(3)).await;
    Cost {
        process: own - own_base,
        engine: engine - engine_base,
        threads: threads * 100.0,
        database: db - db_base,
        rate: (after - before) as f64 / WINDOW.as_secs_f64(),
    }
}

/// Creates idle deployments of 10 replicas until the project has `total` instances.
async fn scale_to(app: &TestApp, b: &Browser, project_id: &str, total: usize) {
    let serve = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"];
    let mut i = app.store.locations().all().await.unwrap().len() / 10;
    while app.store.locations().all().await.unwrap().len() < total {
        let mut spec = command_spec(&serve);
        spec["health_check"]["interval_ms"] = json!(5000);
        let (_, job) = create(b, project_id, &format!("idle{i}"), 10, spec).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        i += 1;
    }
}

/// 100 sockets on deployment `id` for `WINDOW`: the latencies (receive time − at_ms) of
/// every sample they received, sorted, ms.
async fn socket_latencies(app: &TestApp, b: &Browser, id: &str) -> Vec<i64> {
    let bearer = format!("Bearer {}", token(b).await);
    let path = format!("/ws/deployments/{id}/metrics");
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut socket = connect(app, &path, &[("authorization", bearer.as_str())])
            .await
            .expect("socket");
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let end = Instant::now() + WINDOW;
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout_at(end.into(), socket.next()).await
            {
                let received = now_ms();
                if let Message::Text(text) = message {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame["kind"] == "sample" {
                        latencies.push(received - frame["sample"]["at_ms"].as_i64().unwrap());
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    all.sort_unstable();
    all
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&tdb);
    config.local_node_max_instances = 400;
    config.reconcile_interval_secs = 3600;
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (b, project_id) = project(&app, &admin, "bench@example.com", "bench").await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "metrics bench: {cores} cores, windows of {} s",
        WINDOW.as_secs()
    );

    let runtime = streamer_runtime();
    for total in [50, 200] {
        scale_to(&app, &b, &project_id, total).await;
        let instances = app.store.locations().all().await.unwrap().len();
        for (name, source) in [
            ("cgroup", MetricsSource::Auto),
            ("docker", MetricsSource::Docker),
        ] {
            let c = streamer_cost(&app, &runtime, source, instances).await;
            println!(
                "{instances} idle instances, {name} source: the streamer's threads {:.2} % of \
                 a core, SQLite threads +{:.2} %; Berth's process +{:.2} %, \
                 dockerd/containerd/shims +{:.2} %; {:.0} samples/s",
                c.threads, c.database, c.process, c.engine, c.rate
            );
        }
        {
            let first = app.store.locations().all().await.unwrap()[0]
                .deployment_id
                .clone();
            let latencies = socket_latencies(&app, &b, &first).await;
            println!(
                "sample -> websocket, 100 clients, {instances} instances: n={} p50={} ms p99={} ms max={} ms",
                latencies.len(),
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                latencies[latencies.len() - 1],
            );
        }
    }
    app.stop().await;
}
