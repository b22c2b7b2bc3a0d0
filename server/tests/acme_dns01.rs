//! Wildcard certificates through DNS-01. BIND (`named`, Debian package `bind9`) on loopback
//! is the primary server of the zone `wild.test` and accepts RFC 2136 updates signed with a
//! TSIG key; pebble asks it when validating and Berth's domain checks ask it too. Berth
//! publishes its DNS-01 answers there by dynamic update and withdraws them afterwards.
//!
//! The customer's own records (the ownership TXT, the wildcard A record) are created with
//! `nsupdate` (Debian package `bind9-dnsutils`), as a customer's DNS tooling would.

#[macro_use]
mod common;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use berth::ingress::dns_update::{DnsUpdateConfig, DnsUpdater};
use common::{acme::*, deploy::*, dns::*, *};
use reqwest::StatusCode;
use serde_json::json;

const KEY_NAME: &str = "berth-acme";
/// A test-only TSIG key (32 bytes, base64).
const KEY_SECRET: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMi1ieXRlcw==";
const OTHER_SECRET: &str = "b3RoZXIta2V5LXRoYXQtdGhlLXNlcnZlci1kb2Vzbm90";
const ZONE: &str = "wild.test";

/// `named` serving `wild.test` on `127.0.0.1:port` (UDP and TCP), updatable with the key.
/// Every file it writes is in `dir`, so that several can run at once.
fn start_bind(dir: &Path, port: u16) -> KillOnDrop {
    let d = dir.display();
    std::fs::write(
        dir.join("named.conf"),
        format!(
            r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  lock-file "{d}/named.lock";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  // Containers started by other tests add and remove interfaces; a rescan may drop and
  // reopen the listeners, refusing connections for a moment. 127.0.0.1 is all this needs.
  automatic-interface-scan no;
  interface-interval 0;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{KEY_SECRET}"; }};
zone "{ZONE}" {{
  type primary;
  file "{d}/{ZONE}.zone";
  update-policy {{ grant {KEY_NAME} zonesub ANY; }};
}};
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{ZONE}.zone")),
        format!(
            "$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\nwho IN TXT \"{d}\"\n"
        ),
    )
    .unwrap();
    let child = Command::new("named")
        .args(["-g", "-n", "1", "-c"])
        .arg(dir.join("named.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("named (scripts/install-deps.sh --test installs bind9)");
    let child = KillOnDrop(child);
    // Listening is not enough: wait until the zone is loaded and answers over TCP, and
    // make sure the answer is this server's (its own directory in `who`), not another
    // test's that happens to hold the port.
    let deadline = Instant::now() + Duration::from_secs(10);
    let who = format!("who.{ZONE}");
    loop {
        if txt(port, &who) == [d.to_string()] {
            return child;
        }
        assert!(Instant::now() < deadline, "named did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `commands` (nsupdate's language) to the server, signed with the key.
fn nsupdate(port: u16, commands: &str) {
    use std::io::Write;
    let mut child = Command::new("nsupdate")
        .args(["-y", &format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsupdate (bind9-dnsutils)");
    let script = format!("server 127.0.0.1 {port}\nzone {ZONE}\n{commands}\nsend\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nsupdate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The TXT values at `name`, straight from the server.
fn txt(port: u16, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            "+short",
            "+tcp",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            name,
            "TXT",
        ])
        .output()
        .expect("dig (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_matches('"').to_owned())
        .collect()
}

fn updater(port: u16, key_name: &str, secret: &str) -> DnsUpdater {
    DnsUpdater::new(&DnsUpdateConfig {
        server: SocketAddr::from(([127, 0, 0, 1], port)),
        key_name: key_name.into(),
        key_algorithm: "hmac-sha256".into(),
        key_secret: secret.into(),
    })
    .unwrap()
}

/// The updater against a real server: a record added and removed with the right key; a wrong
/// key, an unknown key and a zone the server does not hold are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_updates_are_signed_and_refusals_explained() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _bind = start_bind(dir.path(), port);
    let name = format!("_acme-challenge.shop.{ZONE}");

    let good = updater(port, KEY_NAME, KEY_SECRET);
    good.add_txt(&name, "first").await.unwrap();
    good.add_txt(&name, "second").await.unwrap();
    let mut found = txt(port, &name);
    found.sort();
    assert_eq!(found, ["first", "second"]);
    good.remove_txt(&name, "first").await.unwrap();
    assert_eq!(txt(port, &name), ["second"], "only that value goes");

    let wrong = updater(port, KEY_NAME, OTHER_SECRET)
        .add_txt(&name, "forged")
        .await
        .unwrap_err();
    assert!(
        wrong.contains("not signed with the key") && wrong.contains("key_secret"),
        "{wrong}"
    );
    let unknown = updater(port, "nobody", KEY_SECRET)
        .add_txt(&name, "forged")
        .await
        .unwrap_err();
    assert!(unknown.contains("NOTAUTH"), "{unknown}");
    assert_eq!(
        txt(port, &name),
        ["second"],
        "a refused update changes nothing"
    );

    let elsewhere = good
        .add_txt("_acme-challenge.example.org", "x")
        .await
        .unwrap_err();
    assert!(elsewhere.contains("example.org"), "{elsewhere}");

    let closed = updater(free_port(), KEY_NAME, KEY_SECRET)
        .add_txt(&name, "x")
        .await
        .unwrap_err();
    assert!(closed.contains("cannot reach the DNS server"), "{closed}");
}

/// A wildcard domain, verified by DNS, gets a wildcard certificate from pebble by DNS-01 and
/// serves every name one label below it; the challenge record is withdrawn afterwards. The
/// generated hostnames (under `apps.wild.test`) get a wildcard from pebble the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_domain_gets_a_certificate_by_dns_01() {
    ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let ca = pebble_tls(dir.path());
    let dns_port = free_port();
    let _bind = start_bind(dir.path(), dns_port);
    let (acme_port, acme_management) = (free_port(), free_port());
    let db = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&db);
    // Generated hostnames under a real domain: their wildcard comes from the CA too.
    config.base_domain = format!("apps.{ZONE}");
    config.dns_resolver = Some(SocketAddr::from(([127, 0, 0, 1], dns_port)));
    config.acme_directory_url = format!("https://127.0.0.1:{acme_port}/dir");
    config.acme_ca_roots = Some(ca.clone());
    config.acme_dns_update = Some(DnsUpdateConfig {
        server: SocketAddr::from(([127, 0, 0, 1], dns_port)),
        key_name: KEY_NAME.into(),
        key_algorithm: "hmac-sha256".into(),
        key_secret: KEY_SECRET.into(),
    });
    let app = TestApp::start(config).await;
    let (ingress, ingress_https) = (app.ingress.unwrap(), app.ingress_https.unwrap());
    let _pebble = start_pebble(
        dir.path(),
        acme_port,
        acme_management,
        ingress,
        ingress_https,
        dns_port,
        true,
    );
    let root = pebble_root(acme_management, &ca).await;

    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (web, job) = create(&owner, &project_id, "web", 1, greeting_spec("release one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");

    let wildcard = format!("*.{ZONE}");
    let added = owner
        .post_json(
            &format!("/api/v1/deployments/{web}/domains"),
            &json!({ "hostname": wildcard }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(
        added["dns_records"][0]["name"],
        format!("_berth-challenge.{ZONE}")
    );
    let token = added["dns_records"][0]["value"].as_str().unwrap();
    nsupdate(
        dns_port,
        &format!(
            "update add _berth-challenge.{ZONE} 60 TXT \"{token}\"\nupdate add *.{ZONE} 60 A 127.0.0.1"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        owner
            .post_json(&format!("/api/v1/domains/{id}/verify"), &json!({}))
            .await
            .expect_status(StatusCode::ACCEPTED)
            .await;
        let d = domain(&owner, &web).await;
        if d["status"] == "verified" {
            break;
        }
        assert!(Instant::now() < deadline, "never verified: {d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let d = wait_certificate(&owner, &web, &wildcard, "issued").await;
    assert_eq!(d["certificate"]["source"], "acme", "{d:#}");
    let stored = app
        .store
        .certificates()
        .by_hostname(&wildcard)
        .await
        .unwrap()
        .unwrap();
    let issued_der = rustls_pki_types_der(stored.cert_pem.as_deref().unwrap());
    for host in [format!("shop.{ZONE}"), format!("blog.{ZONE}")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match https_get(ingress_https, &host, &root).await {
                Ok((200, body, leaf)) => {
                    assert_eq!(body.trim(), "release one");
                    assert_eq!(leaf, issued_der, "{host} gets the wildcard certificate");
                    break;
                }
                other => assert!(Instant::now() < deadline, "{host}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The generated hostname is served with `*.apps.wild.test`, from the CA as well.
    let base = app
        .store
        .certificates()
        .by_hostname(&format!("*.apps.{ZONE}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(base.source, "acme");
    let generated = format!("web-shop.apps.{ZONE}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match https_get(ingress_https, &generated, &root).await {
            Ok((200, body, _)) => {
                assert_eq!(body.trim(), "release one");
                break;
            }
            other => assert!(Instant::now() < deadline, "{generated}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A name two labels down is neither routed nor covered.
    let r = reqwest::Client::new()
        .get(format!("http://{ingress}/"))
        .header("host", format!("a.b.{ZONE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        txt(dns_port, &format!("_acme-challenge.{ZONE}")).is_empty(),
        "the DNS-01 answer is withdrawn"
    );
    app.stop().await;
}
