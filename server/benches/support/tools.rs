//! The ingress benchmark's tools: wrk and oha runs (parsed), nginx and HAProxy as reverse
//! proxies with upstream keep-alive, CPU time of processes.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{run, KillOnDrop};

/// A wrk run: requests per second, p50 and p99 latency (ms), errors (non-2xx + socket).
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
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
pub fn wrk(
    url: &str,
    host: &str,
    connections: u32,
    seconds: u32,
    script: Option<&Path>,
) -> WrkResult {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", "wrk", "-t", "1", "--latency"])
        .args(["-c", &connections.to_string(), "-d", &format!("{seconds}s")])
        .args(["-H", &format!("Host: {host}")]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = run(cmd.arg(url));
    if out.contains("errors") || out.contains("Non-2xx") {
        eprintln!("wrk {url}:\n{out}");
    }
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
pub fn oha() -> Option<PathBuf> {
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
pub fn open_loop(oha: &Path, url: &str, host: &str, rate: u32) -> (f64, f64, f64) {
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

pub fn start_nginx(dir: &Path, port: u16, backend: &str) -> KillOnDrop {
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

pub fn start_haproxy(dir: &Path, port: u16, backend: &str) -> KillOnDrop {
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

/// User + system CPU seconds of the processes `pids` (all their threads), from
/// `/proc/<pid>/stat` fields 14 and 15 (proc(5)), in clock ticks of 1/100 s.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The command name (field 2) may hold spaces; count fields after its ')'.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .sum()
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
