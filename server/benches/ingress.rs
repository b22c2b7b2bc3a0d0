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
//!
//! Run with `bash scripts/bench-ingress.sh` (installs wrk, nginx, HAProxy and oha, then runs
//! `cargo bench -p server --bench ingress`). Needs Docker and 2 CPUs.

#[path = "../tests/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{deploy::*, *};
use serde_json::{json, Value};

const BACKEND_IMAGE: &str = "berth-bench/backend:latest";
const HOST: &str = "web-bench.localhost";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// A wrk run: requests per second, p50 and p99 latency (ms), errors (non-2xx + socket).
#[derive(Debug, Clone, Copy)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk_ms(value: &str) -> f64 {
    let v = value.trim();
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

/// `wrk` on CPU 0 against `url` with `connections`, sending `Host: host` (or running
/// `script`), for `seconds`.
fn wrk(url: &str, host: &str, connections: u32, seconds: u32, script: Option<&Path>) -> WrkResult {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", "wrk", "-t", "1", "--latency"])
        .args(["-c", &connections.to_string(), "-d", &format!("{seconds}s")])
        .args(["-H", &format!("Host: {host}")]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = run(cmd.arg(url));
    let mut r = WrkResult {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            r.p50_ms = wrk_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            r.p99_ms = wrk_ms(v);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            r.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    r
}

/// Where oha is, if installed (`scripts/bench-ingress.sh` puts it under the cache dir).
fn oha() -> Option<PathBuf> {
    let cached = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".cache/berth/oha/bin/oha"))
        .ok()?;
    if cached.exists() {
        return Some(cached);
    }
    Command::new("oha")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("oha"))
}

/// p50/p99 (ms) and the success rate at an open-loop rate of `rate` req/s for 10 s.
fn open_loop(oha: &Path, url: &str, host: &str, rate: u32) -> (f64, f64, f64) {
    let out = run(Command::new("taskset")
        .args(["-c", "0"])
        .arg(oha)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .args(["-q", &rate.to_string(), "-z", "10s", "-c", "64"])
        .args(["-H", &format!("Host: {host}")])
        .arg(url));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("oha output: {e}: {out}"));
    let p = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    (
        p("p50"),
        p("p99"),
        v["summary"]["successRate"].as_f64().unwrap_or(0.0),
    )
}

fn start_nginx(dir: &Path, port: u16, backend: &str) -> KillOnDrop {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  upstream app {{ server {backend}; keepalive 128; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                   proxy_pass http://app;\n      proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                   proxy_set_header X-Forwarded-Proto $scheme;\n\
                   proxy_set_header X-Forwarded-Host $host;\n    }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("nginx-error.log").display(),
        ),
    )
    .unwrap();
    let child = Command::new("taskset")
        .args(["-c", "1", "nginx", "-e"])
        .arg(dir.join("nginx-error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/bench-ingress.sh installs it)");
    wait_port(port);
    KillOnDrop(child)
}

fn start_haproxy(dir: &Path, port: u16, backend: &str) -> KillOnDrop {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
               option http-keep-alive\n  http-reuse always\n  option forwardfor\n\
             frontend web\n  bind 127.0.0.1:{port}\n\
               http-request set-header X-Forwarded-Proto http\n\
               http-request set-header X-Forwarded-Host %[req.hdr(host)]\n  default_backend app\n\
             backend app\n  server s1 {backend}\n"
        ),
    )
    .unwrap();
    let child = Command::new("taskset")
        .args(["-c", "1", "haproxy", "-db", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (scripts/bench-ingress.sh installs it)");
    wait_port(port);
    KillOnDrop(child)
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
    config.ingress_access_log = false;
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
    let (web, job) = create(&b, &project_id, "web", 1, spec).await;
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
    let _nginx = start_nginx(work.path(), nginx_port, &backend);
    let _haproxy = start_haproxy(work.path(), haproxy_port, &backend);
    let targets: Vec<(&str, String)> = vec![
        ("direct", format!("http://{backend}/")),
        ("berth", format!("http://{ingress}/")),
        ("nginx", format!("http://127.0.0.1:{nginx_port}/")),
        ("haproxy", format!("http://127.0.0.1:{haproxy_port}/")),
    ];
    // Warm-up: connections, pools, caches.
    for (_, url) in &targets {
        wrk(url, HOST, 10, 2, None);
    }

    println!("\n# Throughput (wrk, 10 s, keep-alive; proxies on CPU 1)");
    println!("| target | conns | req/s | p50 ms | p99 ms | errors |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for connections in [10, 100] {
        for (name, url) in &targets {
            let r = wrk(url, HOST, connections, 10, None);
            println!(
                "| {name} | {connections} | {:.0} | {:.3} | {:.3} | {} |",
                r.rps, r.p50_ms, r.p99_ms, r.errors
            );
        }
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

    many_hosts(&app, &web, ingress, work.path()).await;
    app.stop().await;
    if let Some(id) = container {
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
}

/// Throughput over 10 and over 10,000 hostnames routed to the same deployment (verified
/// custom domains written straight to the store; a wrk script rotates the `Host`).
async fn many_hosts(app: &TestApp, deployment: &str, ingress: SocketAddr, dir: &Path) {
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
            let d = app
                .store
                .domains()
                .add(&project_id, deployment, &host, "t")
                .await
                .unwrap();
            app.store
                .domains()
                .record_check(&d.id, true, "bench", None)
                .await
                .unwrap();
            added += 1;
        }
        // The route table is rebuilt at least every 2 s.
        tokio::time::sleep(Duration::from_secs(3)).await;
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
    }
}
