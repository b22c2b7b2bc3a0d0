//! The ingress benchmark's tools: wrk and oha runs (parsed), nginx and HAProxy as reverse
//! proxies with upstream keep-alive (and a TLS 1.3 listener each), `openssl s_time` for new
//! TLS handshakes, CPU time of processes.

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

/// An ECDSA P-256 certificate for `localhost` (the key type Berth uses) in `dir`:
/// `tls-cert.pem`, `tls-key.pem`, and both in `tls-both.pem` (HAProxy's form).
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let paths = (
        dir.join("tls-cert.pem"),
        dir.join("tls-key.pem"),
        dir.join("tls-both.pem"),
    );
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    paths
}

/// nginx as a reverse proxy to `backend` on `port`, and with TLS 1.3 on `tls_port` (no
/// session cache, no tickets: every handshake is a full one).
pub fn start_nginx(dir: &Path, port: u16, tls_port: u16, backend: &str) -> KillOnDrop {
    let (cert, key, _) = tls_files(dir);
    let conf = dir.join("nginx.conf");
    let location =
        "    location / {\n      proxy_pass http://app;\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         proxy_set_header X-Forwarded-Proto $scheme;\n\
         proxy_set_header X-Forwarded-Host $host;\n    }\n";
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  upstream app {{ server {backend}; keepalive 128; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n{location}  }}\n\
               server {{\n    listen 127.0.0.1:{tls_port} ssl;\n\
                   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                   ssl_protocols TLSv1.3;\n    ssl_session_cache off;\n\
                   ssl_session_tickets off;\n{location}  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("nginx-error.log").display(),
            cert = cert.display(),
            key = key.display(),
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

/// HAProxy as a reverse proxy to `backend` on `port`, and with TLS 1.3 on `tls_port` (no
/// session cache, no tickets).
pub fn start_haproxy(dir: &Path, port: u16, tls_port: u16, backend: &str) -> KillOnDrop {
    let (_, _, both) = tls_files(dir);
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 4096\n  tune.ssl.cachesize 0\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
               option http-keep-alive\n  http-reuse always\n  option forwardfor\n\
             frontend web\n  bind 127.0.0.1:{port}\n\
               http-request set-header X-Forwarded-Proto http\n\
               http-request set-header X-Forwarded-Host %[req.hdr(host)]\n  default_backend app\n\
             frontend webtls\n\
               bind 127.0.0.1:{tls_port} ssl crt {both} ssl-min-ver TLSv1.3 no-tls-tickets\n\
               http-request set-header X-Forwarded-Proto https\n  default_backend app\n\
             backend app\n  server s1 {backend}\n",
            both = both.display()
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

/// New TLS 1.3 handshakes per second against `127.0.0.1:port`: four `openssl s_time -new`
/// clients on CPU 0 for 10 s, each making full handshakes one after another (no resumption,
/// no request). Returns the rate over all four.
pub fn handshakes(port: u16) -> f64 {
    let clients: Vec<_> = (0..4)
        .map(|_| {
            Command::new("taskset")
                .args([
                    "-c", "0", "openssl", "s_time", "-new", "-tls1_3", "-time", "10",
                ])
                .args(["-connect", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("openssl")
        })
        .collect();
    clients
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            // "1234 connections in 10.01 real seconds, ..."
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|l| l.contains("connections in") && l.contains("real seconds"))
                .and_then(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    let n: f64 = words.first()?.parse().ok()?;
                    let secs: f64 = words.get(3)?.parse().ok()?;
                    Some(n / secs)
                })
                .unwrap_or(0.0)
        })
        .sum()
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
