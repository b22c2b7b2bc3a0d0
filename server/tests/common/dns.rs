//! A real DNS server for the custom-domain and ACME tests: `pebble-challtestsrv` (Debian
//! package `pebble`) on loopback, its records set through its management API.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{Browser, Expect};

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// pebble's challenge test server as a DNS server on `127.0.0.1:dns`, managed on
/// `127.0.0.1:management`. Unknown names answer A 203.0.113.7 (TEST-NET-3), never Berth's address.
pub fn start_dns(dns: u16, management: u16) -> KillOnDrop {
    let child = Command::new("pebble-challtestsrv")
        .args([
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-management",
            &format!("127.0.0.1:{management}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-defaultIPv4",
            "203.0.113.7",
            "-defaultIPv6",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv (scripts/install-deps.sh --test installs pebble)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", management)).is_err() {
        assert!(Instant::now() < deadline, "the DNS server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    KillOnDrop(child)
}

/// POSTs `body` to the DNS server's management API at `path` (`/set-txt`, `/add-a`, ...).
pub async fn dns_set(management: u16, path: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{management}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

/// A deployment's first domain.
pub async fn domain(b: &Browser, id: &str) -> Value {
    let list = b
        .get(&format!("/api/v1/deployments/{id}/domains"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    list[0].clone()
}

/// Asks for a check now and waits until one has run after the request.
pub async fn verify_now(b: &Browser, deployment: &str, domain_id: &str) -> Value {
    let before = domain(b, deployment).await["last_check_at_ms"].as_i64();
    b.post_json(&format!("/api/v1/domains/{domain_id}/verify"), &json!({}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d = domain(b, deployment).await;
        if d["status"] == "verified" || d["last_check_at_ms"].as_i64() != before {
            return d;
        }
        assert!(Instant::now() < deadline, "no check ran: {d:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
