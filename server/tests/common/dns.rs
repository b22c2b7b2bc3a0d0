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

/// A loopback port (TCP and UDP) that was free a moment ago, for a server the test starts
/// itself. It comes from 20000–32767, below Linux's ephemeral range (32768–60999, where
/// `bind(0)` and outgoing connections take their ports), so no connection can take it
/// before the server binds it, and no port is handed out twice in one test process (the
/// tests of a file run in parallel).
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap();
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0u32.. {
        assert!(attempt < 10_000, "no free loopback port in 20000-32767");
        let port = 20_000 + (random.hash_one((std::process::id(), attempt)) % 12_768) as u16;
        let free = !given.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            given.insert(port);
            return port;
        }
    }
    unreachable!()
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
