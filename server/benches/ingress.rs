//! The ingress benchmark (figures and commands in the README): one backend container, the
//! same load tool, loopback, keep-alive; each proxy limited to CPU 1 while the load tool and
//! the backend share CPU 0.
//!
//! 1. Throughput (`wrk`, 10 s, 10 and 100 connections): direct to the container, through
//!    Berth's ingress, through nginx and through HAProxy (both with upstream keep-alive and
//!    `X-Forwarded-*` headers, logging off, as Berth's access log is here).
//! 2. Latency at an open-loop rate of 4,200 req/s (`oha -q 4200 --latency-correction`, 10 s):
//!    p50 and p99 for the same four targets (skipped when oha is not installed:
//!    `scripts/bench-ingress.sh` installs it).
//! 3. Many hosts: Berth's throughput with 10 and with 10,000 routed hostnames, the requests
//!    spread over all of them (a wrk Lua script picks the `Host`).
//! 4. Route churn: 100 routes added, retargeted to another deployment and removed, three
//!    times, while wrk loads a stable route and an upgraded (WebSocket-like) connection
//!    echoes every 50 ms: failed requests and dropped or broken echoes are counted.
//! 5. A new route: from the moment the store shows the new deployment's instance healthy
//!    (polled every millisecond) to its hostname's first 200 through the ingress.
//! 6. New TLS 1.3 handshakes (run first): four `openssl s_time -new` clients on CPU 0 against
//!    Berth's HTTPS listener, nginx and HAProxy (ECDSA P-256 certificates, no resumption on
//!    any side), with the proxy's CPU time per handshake. `BERTH_BENCH_ONLY=tls` runs only
//!    this.
//!
//! Run with `bash scripts/bench-ingress.sh` (installs wrk, nginx, HAProxy and oha, then runs
//! `cargo bench -p server --bench ingress`). Needs Docker and 2 CPUs.

#[path = "../tests/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use common::{deploy::*, dns::free_port, *};

#[path = "support/tools.rs"]
mod tools;
use serde_json::{json, Value};
use tools::*;

const BACKEND_IMAGE: &str = "berth-bench/backend:latest";
const HOST: &str = "web-bench.localhost";

/// Stops a child with SIGTERM when dropped (nginx's master then stops its workers; SIGKILL
/// would leave them running).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compiles the std-only backend statically and builds its `FROM scratch` image.
fn build_backend(work: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/support/backend.rs");
    let binary = work.join("backend");
    run(Command::new("rustc")
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&binary)
        .arg(&source));
    std::fs::write(
        work.join("Dockerfile"),
        "FROM scratch\nLABEL berth.test=1\nSTOPSIGNAL SIGKILL\nCOPY backend /backend\nENTRYPOINT [\"/backend\"]\n",
    )
    .unwrap();
    run(Command::new("docker")
        .args(["build", "-q", "-t", BACKEND_IMAGE])
        .arg(work));
}

fn main() {
    // Berth (this process) runs on CPU 1 only; the load tool and the backend on CPU 0.
    run(Command::new("taskset").args(["-a", "-p", "-c", "1", &std::process::id().to_string()]));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let work = tempfile::tempdir().unwrap();
    build_backend(work.path());
    let tdb = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&tdb);
    config.ingress_access_log = std::env::var_os("BERTH_BENCH_ACCESS_LOG").is_some();
    config.reconcile_interval_secs = 3600;
    let app = TestApp::start(config).await;
    let ingress = app.ingress.unwrap();
    let admin = app.admin_client().await;
    let (b, project_id) = project(&app, &admin, "bench@example.com", "bench").await;
    let spec = json!({
        "image": BACKEND_IMAGE,
        "http_port": 8080,
        "plan_id": "plan-small",
        "health_check": {"probe": {"kind": "http", "path": "/"},
            "interval_ms": 1000, "timeout_ms": 500, "retries": 3, "start_period_ms": 0},
    });
    let (web, job) = create(&b, &project_id, "web", 1, spec.clone()).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&b, &web).await;
    let backend = d["instances"][0]["address"].as_str().unwrap().to_owned();
    let container = d["instances"][0]["container_id"]
        .as_str()
        .map(str::to_owned);
    if let Some(id) = &container {
        run(Command::new("docker").args(["update", "--cpuset-cpus", "0", id]));
    }
    let (nginx_port, haproxy_port) = (free_port(), free_port());
    let (nginx_tls, haproxy_tls) = (free_port(), free_port());
    let nginx = start_nginx(work.path(), nginx_port, nginx_tls, &backend);
    let haproxy = start_haproxy(work.path(), haproxy_port, haproxy_tls, &backend);
    let targets: Vec<(&str, String)> = vec![
        ("direct", format!("http://{backend}/")),
        ("berth", format!("http://{ingress}/")),
        ("nginx", format!("http://127.0.0.1:{nginx_port}/")),
        ("haproxy", format!("http://127.0.0.1:{haproxy_port}/")),
    ];
    // The processes whose CPU time is each proxy's: this one (Berth), nginx's worker,
    // HAProxy.
    let nginx_worker = run(Command::new("pgrep").args(["-P", &nginx.0.id().to_string()]));
    let cpu_pids: Vec<(&str, Vec<u32>)> = vec![
        ("berth", vec![std::process::id()]),
        (
            "nginx",
            nginx_worker
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .chain([nginx.0.id()])
                .collect(),
        ),
        ("haproxy", vec![haproxy.0.id()]),
    ];
    let only = std::env::var("BERTH_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "tls" {
        let tls_targets = [
            ("berth", app.ingress_https.unwrap().port()),
            ("nginx", nginx_tls),
            ("haproxy", haproxy_tls),
        ];
        println!("\n# New TLS 1.3 handshakes (openssl s_time -new, 4 clients on CPU 0, 10 s; ECDSA P-256, X25519)");
        println!("| target | handshakes/s | proxy CPU µs/handshake |");
        println!("| --- | --- | --- |");
        for (name, port) in tls_targets {
            let pids = cpu_pids
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let before = cpu_seconds(&pids);
            let rate = handshakes(port);
            let cpu = cpu_seconds(&pids) - before;
            let per = if rate > 0.0 {
                cpu / (rate * 10.0) * 1e6
            } else {
                f64::NAN
            };
            println!("| {name} | {rate:.0} | {per:.1} |");
        }
        if only == "tls" {
            app.stop().await;
            return;
        }
    }
    // Warm-up: connections, pools, caches.
    for (_, url) in &targets {
        wrk(url, HOST, 10, 2, None);
    }

    println!("\n# Throughput (wrk, 10 s, keep-alive; proxies on CPU 1)");
    println!("| target | conns | req/s | p50 ms | p99 ms | errors | proxy CPU µs/request |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for connections in [10, 100] {
        for (name, url) in &targets {
            let pids = cpu_pids
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let before = cpu_seconds(&pids);
            let r = wrk(url, HOST, connections, 10, None);
            let cpu = cpu_seconds(&pids) - before;
            let per_request = if pids.is_empty() || r.rps == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.1}", cpu / (r.rps * 10.0) * 1e6)
            };
            println!(
                "| {name} | {connections} | {:.0} | {:.3} | {:.3} | {} | {per_request} |",
                r.rps, r.p50_ms, r.p99_ms, r.errors
            );
        }
    }
    if only == "throughput" {
        app.stop().await;
        return;
    }
    if only == "hosts" {
        many_hosts(&app, &admin, &web, ingress, work.path()).await;
        app.stop().await;
        return;
    }

    match oha() {
        None => println!("\n(oha is not installed: open-loop latency skipped)"),
        Some(oha) => {
            println!("\n# Open loop, 4200 req/s for 10 s (oha --latency-correction)");
            println!("| target | p50 ms | p99 ms | success |");
            println!("| --- | --- | --- | --- |");
            for (name, url) in &targets {
                let (p50, p99, ok) = open_loop(&oha, url, HOST, 4200);
                println!("| {name} | {p50:.3} | {p99:.3} | {:.2} % |", ok * 100.0);
            }
        }
    }

    let (other, _) = create(&b, &project_id, "other", 1, spec.clone()).await;
    churn(&app, &web, &other, ingress).await;
    new_route(&app, &b, &project_id, &spec, ingress).await;
    many_hosts(&app, &admin, &web, ingress, work.path()).await;
    let installation = app.installation.clone();
    app.stop().await;
    // Every container and network of this run.
    let ids = containers_with(&format!("berth.installation={installation}"));
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&ids)
            .output();
    }
    let _ = Command::new("docker")
        .args(["network", "prune", "-f", "--filter"])
        .arg(format!("label=berth.installation={installation}"))
        .output();
    let _ = container;
}

/// Throughput over 10 and over 10,000 hostnames routed to the same deployment (verified
/// custom domains written straight to the store; a wrk script rotates the `Host`).
async fn many_hosts(
    app: &TestApp,
    admin: &Browser,
    deployment: &str,
    ingress: SocketAddr,
    dir: &Path,
) {
    let project_id = app
        .store
        .deployments()
        .by_id(deployment)
        .await
        .unwrap()
        .unwrap()
        .project_id;
    println!("\n# Many hosts (Berth, wrk, 100 connections, 10 s)");
    println!("| routed hostnames | req/s | p99 ms | errors |");
    println!("| --- | --- | --- | --- |");
    let mut added = 0;
    for count in [10usize, 10_000] {
        while added < count {
            let host = format!("h{added}.bench.example");
            verified_domain(&app.store, &project_id, deployment, &host).await;
            added += 1;
        }
        // The route table is rebuilt at least every 2 s: wait until the last host is in it.
        let last = format!("h{}.bench.example", count - 1);
        let client = reqwest::Client::new();
        loop {
            let r = client
                .get(format!("http://{ingress}/"))
                .header("host", &last)
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let script = dir.join(format!("hosts-{count}.lua"));
        std::fs::write(
            &script,
            format!(
                "local n = {count}\nlocal i = 0\nrequest = function()\n  i = (i + 1) % n\n  \
                 return wrk.format(\"GET\", \"/\", {{ Host = \"h\" .. i .. \".bench.example\" }})\nend\n"
            ),
        )
        .unwrap();
        let r = wrk(
            &format!("http://{ingress}/"),
            "unused",
            100,
            10,
            Some(&script),
        );
        println!(
            "| {count} | {:.0} | {:.3} | {} |",
            r.rps, r.p99_ms, r.errors
        );
        // Which statuses the non-2xx were, from the ingress's own counters.
        let routes = admin
            .get("/api/v1/ingress/routes")
            .await
            .expect_status(reqwest::StatusCode::OK)
            .await;
        let mut classes = [0u64; 5];
        for route in routes.as_array().unwrap() {
            for (i, n) in route["status_classes"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                classes[i] += n.as_u64().unwrap();
            }
        }
        eprintln!("status classes over all routes so far: {classes:?}");
    }
}

/// Adds `host` to `deployment` as a verified custom domain, straight in the store (the DNS
/// proof is not what is measured); returns its id.
async fn verified_domain(
    store: &berth::store::Store,
    project_id: &str,
    deployment: &str,
    host: &str,
) -> String {
    let d = store
        .domains()
        .add(project_id, deployment, host, "t")
        .await
        .unwrap();
    store
        .domains()
        .record_check(&d.id, true, "bench", None)
        .await
        .unwrap();
    d.id
}

/// Holds an upgraded connection to `host` through the ingress for `for_how_long`, echoing a
/// line every 50 ms; returns (echoes, failures). Blocking.
fn echo_through(ingress: SocketAddr, host: &str, for_how_long: Duration) -> (u32, u32) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(ingress).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    write!(
        writer,
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    while line.trim() != "" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let (mut ok, mut failed) = (0, 0);
    let end = Instant::now() + for_how_long;
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let sent = format!("ping {n}\n");
        line.clear();
        let echoed = writer.write_all(sent.as_bytes()).is_ok()
            && reader.read_line(&mut line).is_ok()
            && line == sent;
        if echoed {
            ok += 1;
        } else {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (ok, failed)
}

/// 100 routes added, retargeted and removed three times under load.
async fn churn(app: &TestApp, web: &str, other: &str, ingress: SocketAddr) {
    let project_id = app
        .store
        .deployments()
        .by_id(web)
        .await
        .unwrap()
        .unwrap()
        .project_id;
    let url = format!("http://{ingress}/");
    let load = std::thread::spawn(move || wrk(&url, HOST, 50, 12, None));
    let echo = std::thread::spawn(move || echo_through(ingress, HOST, Duration::from_secs(12)));
    let domains = app.store.domains();
    let started = Instant::now();
    let mut changes = 0;
    for round in 0..3 {
        let mut ids = Vec::new();
        for i in 0..100 {
            let host = format!("c{round}-{i}.churn.example");
            ids.push(verified_domain(&app.store, &project_id, web, &host).await);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Retarget: the same hostnames, now to the other deployment.
        for (i, id) in ids.iter_mut().enumerate() {
            domains.delete(id).await.unwrap();
            let host = format!("c{round}-{i}.churn.example");
            *id = verified_domain(&app.store, &project_id, other, &host).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for id in &ids {
            domains.delete(id).await.unwrap();
        }
        changes += 300;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    let r = load.join().unwrap();
    let (echoes, broken) = echo.join().unwrap();
    println!("\n# Route churn under load (wrk 50 connections on a stable route, 12 s)");
    println!(
        "{changes} route changes in {:.1} s; wrk: {:.0} req/s, {} failed requests; upgraded connection: {echoes} echoes, {broken} failed",
        took.as_secs_f64(),
        r.rps,
        r.errors
    );
}

/// Store shows the instance healthy → first 200 through the ingress, five new deployments.
async fn new_route(
    app: &TestApp,
    b: &Browser,
    project_id: &str,
    spec: &Value,
    ingress: SocketAddr,
) {
    let mut spec = spec.clone();
    spec["health_check"]["interval_ms"] = json!(100);
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    for i in 0..5 {
        let name = format!("n{i}");
        let d = create_raw(b, project_id, &name, 1, spec.clone())
            .await
            .expect_status(reqwest::StatusCode::CREATED)
            .await;
        let id = d["deployment"]["id"].as_str().unwrap().to_owned();
        let healthy_at = loop {
            let locations = app.store.locations().all().await.unwrap();
            if locations
                .iter()
                .any(|l| l.deployment_id == id && l.health == "healthy")
            {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let host = format!("{name}-bench.localhost");
        loop {
            let ok = client
                .get(format!("http://{ingress}/"))
                .header("host", &host)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(healthy_at.elapsed());
    }
    samples.sort();
    println!("\n# New route: instance healthy in the store -> first 200 through the ingress");
    println!(
        "n=5 min={:.1} ms p50={:.1} ms max={:.1} ms",
        samples[0].as_secs_f64() * 1000.0,
        samples[2].as_secs_f64() * 1000.0,
        samples[4].as_secs_f64() * 1000.0
    );
}
