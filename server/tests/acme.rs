//! Automatic TLS against a real ACME CA: `pebble` (Debian package) on loopback, with
//! `pebble-challtestsrv` as the DNS server both pebble and Berth ask. Pebble's HTTPS uses a
//! CA this test makes with rcgen; its validation connects to Berth's ingress (its `httpPort`
//! and `tlsPort` are the ingress's ports).
//!
//! The flow, run with HTTP-01 twice (pebble's defaults: 5 % of nonces rejected, half the
//! authorizations reused, validation after a random sleep of up to 15 s; and with
//! `PEBBLE_VA_NOSLEEP=1`) and with TLS-ALPN-01 once: a verified domain gets a certificate
//! from pebble and is served over HTTPS with it; the redirect sends HTTP to HTTPS; moving the
//! manager's clock to the renewal date renews it; a renewal while the CA is down fails,
//! is shown, and the working certificate keeps being served; a domain the CA cannot reach
//! fails with the CA's reason. The generated hostnames are served with the self-signed
//! `*.localhost` certificate; under a public base domain without DNS-01 each one gets its own
//! certificate from the CA.

#[macro_use]
mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use berth::ingress::acme::ChallengeKind;
use common::{acme::*, deploy::*, dns::*, *};
use reqwest::StatusCode;
use serde_json::json;

const DAY_MS: i64 = 86_400_000;

/// Adds `hostname` to `deployment`, sets its DNS (TXT proof, A `address`, which must be one
/// of the ingress's public addresses) and waits until Berth has verified it.
async fn verified_domain(
    b: &Browser,
    deployment: &str,
    hostname: &str,
    address: &str,
    dns_management: u16,
) -> String {
    let added = b
        .post_json(
            &format!("/api/v1/deployments/{deployment}/domains"),
            &json!({ "hostname": hostname }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let id = added["id"].as_str().unwrap().to_owned();
    let token = added["dns_records"][0]["value"].as_str().unwrap();
    dns_set(
        dns_management,
        "/set-txt",
        json!({"host": format!("_berth-challenge.{hostname}."), "value": token}),
    )
    .await;
    dns_set(
        dns_management,
        "/add-a",
        json!({"host": format!("{hostname}."), "addresses": [address]}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        b.post_json(&format!("/api/v1/domains/{id}/verify"), &json!({}))
            .await
            .expect_status(StatusCode::ACCEPTED)
            .await;
        let list = b
            .get(&format!("/api/v1/deployments/{deployment}/domains"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        if list
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id.as_str() && d["status"] == "verified")
        {
            break;
        }
        assert!(Instant::now() < deadline, "never verified: {list:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    id
}

/// What every ACME test runs against: the DNS server, pebble's TLS files and ports, and a
/// fresh database. Pebble itself starts once Berth's ingress ports are known.
struct Lab {
    dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    dns_port: u16,
    dns_management: u16,
    acme_port: u16,
    acme_management: u16,
    _dns: KillOnDrop,
    db: TestDb,
}

impl Lab {
    async fn new() -> Lab {
        ensure_test_image();
        let dir = tempfile::tempdir().unwrap();
        let ca = pebble_tls(dir.path());
        let (dns_port, dns_management) = (free_port(), free_port());
        let dns = start_dns(dns_port, dns_management);
        Lab {
            ca,
            dir,
            dns_port,
            dns_management,
            acme_port: free_port(),
            acme_management: free_port(),
            _dns: dns,
            db: fresh_db(Db::Sqlite).await,
        }
    }

    /// Berth's configuration: this DNS server, pebble as the CA.
    fn config(&self) -> berth::config::Config {
        let mut config = test_config(&self.db);
        config.dns_resolver = Some(SocketAddr::from(([127, 0, 0, 1], self.dns_port)));
        config.acme_directory_url = format!("https://127.0.0.1:{}/dir", self.acme_port);
        config.acme_ca_roots = Some(self.ca.clone());
        config
    }

    /// Starts pebble, validating on `app`'s ingress ports.
    fn pebble(&self, app: &TestApp, nosleep: bool) -> KillOnDrop {
        start_pebble(
            self.dir.path(),
            self.acme_port,
            self.acme_management,
            app.ingress.unwrap(),
            app.ingress_https.unwrap(),
            self.dns_port,
            nosleep,
        )
    }
}

async fn certificates_from_a_real_ca(challenge: ChallengeKind, nosleep: bool) {
    let lab = Lab::new().await;
    let mut config = lab.config();
    config.acme_contact = vec!["mailto:ops@shop.example".into()];
    config.acme_challenge = challenge;
    let app = TestApp::start(config).await;
    let (ingress, ingress_https) = (app.ingress.unwrap(), app.ingress_https.unwrap());
    let pebble = lab.pebble(&app, nosleep);
    let dns_management = lab.dns_management;
    let root = pebble_root(lab.acme_management, &lab.ca).await;
    let manager = app.certificates.clone().unwrap();

    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (web, job) = create(&owner, &project_id, "web", 1, greeting_spec("release one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");

    // The generated hostname is served over HTTPS with the self-signed *.localhost (which
    // strict clients, rustls's webpki among them, refuse for a wildcard under a single
    // label: this client checks which certificate is served, not whether it is trusted).
    let fallback = app
        .store
        .certificates()
        .by_hostname("*.localhost")
        .await
        .unwrap()
        .expect("the self-signed certificate exists from the start");
    let fallback_der = rustls_pki_types_der(fallback.cert_pem.as_deref().unwrap());
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("web-shop.localhost", ingress_https)
        .tls_info(true)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = insecure
            .get(format!(
                "https://web-shop.localhost:{}/",
                ingress_https.port()
            ))
            .send()
            .await;
        if let Ok(r) = r {
            let leaf = r
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate())
                .map(<[u8]>::to_vec);
            assert_eq!(leaf, Some(fallback_der.clone()));
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().await.unwrap().trim(), "release one");
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A self-signed certificate is not offered as the app's HTTPS address.
    let detail = owner
        .get(&format!("/api/v1/deployments/{web}"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(detail["https_url"].is_null(), "{detail:#}");

    // A verified domain gets a certificate from the CA and is served with it.
    let host = "www.shop.example";
    let domain_id = verified_domain(&owner, &web, host, "127.0.0.1", dns_management).await;
    let d = wait_certificate(&owner, &web, host, "issued").await;
    let cert = &d["certificate"];
    assert_eq!(cert["source"], "acme");
    assert_eq!(cert["last_error"], "");
    let not_after = cert["not_after_ms"].as_i64().unwrap();
    assert!(not_after > berth::store::now_ms() + DAY_MS, "{d:#}");
    assert_eq!(
        d["https_url"],
        format!("https://{host}:{}/", ingress_https.port())
    );
    let stored = app
        .store
        .certificates()
        .by_hostname(host)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.key_sealed.as_deref().unwrap().starts_with("enc:v1:"),
        "the key is sealed at rest"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_leaf = loop {
        match https_get(ingress_https, host, &root).await {
            Ok((200, body, leaf)) => {
                assert_eq!(body.trim(), "release one");
                break leaf;
            }
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The certificate is never sent back by the API.
    assert!(!d.to_string().contains("PRIVATE KEY") && !d.to_string().contains("enc:v1:"));

    // HTTP -> HTTPS redirect, per route; off by default.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get_plain = || {
        plain
            .get(format!("http://{ingress}/?x=1"))
            .header("host", host)
            .send()
    };
    assert_eq!(get_plain().await.unwrap().status(), 200);
    let updated = owner
        .patch_json(
            &format!("/api/v1/domains/{domain_id}"),
            &json!({"redirect_https": true}),
        )
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(updated["redirect_https"], true);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get_plain().await.unwrap();
        if r.status() == 308 {
            assert_eq!(
                r.headers()["location"],
                format!("https://{host}:{}/?x=1", ingress_https.port()).as_str()
            );
            break;
        }
        assert!(Instant::now() < deadline, "no redirect: {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The generated hostname is not redirected (its certificate is the self-signed one).
    let r = plain
        .get(format!("http://{ingress}/"))
        .header("host", "web-shop.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Renewal, by moving the clock to 29 days before expiry: a new certificate is served.
    let report = manager.tick(not_after - 29 * DAY_MS).await.unwrap();
    assert_eq!(report.issued, vec![host.to_owned()], "{report:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let second_leaf = loop {
        let (status, _, leaf) = https_get(ingress_https, host, &root).await.unwrap();
        assert_eq!(status, 200);
        if leaf != first_leaf {
            break leaf;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let renewed = wait_certificate(&owner, &web, host, "issued").await;
    let renewed_after = renewed["certificate"]["not_after_ms"].as_i64().unwrap();
    assert!(renewed_after >= not_after, "{renewed:#}");

    // The CA is down at the next renewal: the failure is shown, the certificate stays.
    drop(pebble);
    let report = manager.tick(renewed_after - 29 * DAY_MS).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let failing = wait_certificate(&owner, &web, host, "renewal_failing").await;
    let error = failing["certificate"]["last_error"].as_str().unwrap();
    assert!(error.contains("next attempt in 60 s"), "{error}");
    assert!(
        failing["certificate"]["next_attempt_at_ms"]
            .as_i64()
            .unwrap()
            > renewed_after - 29 * DAY_MS
    );
    let (status, _, leaf) = https_get(ingress_https, host, &root).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        leaf, second_leaf,
        "a failed renewal never replaces the working certificate"
    );

    // The portal shows the state, the expiry and the error.
    let (_, _, page) = owner.html(&format!("/deployments/{web}")).await;
    assert!(
        page.contains("renewal failing") && page.contains("cert-error"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_with_pebble_defaults() {
    certificates_from_a_real_ca(ChallengeKind::Http01, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_without_validation_delay() {
    certificates_from_a_real_ca(ChallengeKind::Http01, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_without_validation_delay() {
    certificates_from_a_real_ca(ChallengeKind::TlsAlpn01, true).await;
}

/// A public base domain without DNS-01 (so no wildcard from the CA): each deployment's
/// generated hostname gets a certificate of its own by HTTP-01 and is served with it, the
/// wildcard stays self-signed, and deleting the deployment removes the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostnames_get_their_own_certificates_without_dns_01() {
    let lab = Lab::new().await;
    let mut config = lab.config();
    config.base_domain = "apps.example".into();
    config.acme_challenge = ChallengeKind::Http01;
    let app = TestApp::start(config).await;
    let ingress_https = app.ingress_https.unwrap();
    let _pebble = lab.pebble(&app, true);
    let root = pebble_root(lab.acme_management, &lab.ca).await;
    let host = "web-shop.apps.example";
    // The name must resolve to the ingress before the order, or the CA validates elsewhere.
    dns_set(
        lab.dns_management,
        "/add-a",
        json!({"host": format!("{host}."), "addresses": ["127.0.0.1"]}),
    )
    .await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (web, job) = create(&owner, &project_id, "web", 1, greeting_spec("release one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");

    let certificates = app.store.certificates();
    let deadline = Instant::now() + Duration::from_secs(120);
    let slot = loop {
        let slot = certificates.by_hostname(host).await.unwrap();
        match slot {
            Some(s) if s.cert_pem.is_some() => break s,
            other => assert!(Instant::now() < deadline, "never issued: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (slot.source.as_str(), slot.domain_id.as_deref()),
        ("acme", None)
    );
    assert_eq!(slot.last_error, "");
    assert!(slot.key_sealed.as_deref().unwrap().starts_with("enc:v1:"));
    let issued = rustls_pki_types_der(slot.cert_pem.as_deref().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match https_get(ingress_https, host, &root).await {
            Ok((200, body, leaf)) if leaf == issued => {
                assert_eq!(body.trim(), "release one");
                break;
            }
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API and the deployment page give the HTTPS address; the wildcard stays
    // self-signed, so another deployment's would not.
    let detail = owner
        .get(&format!("/api/v1/deployments/{web}"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let https_url = format!("https://{host}:{}/", ingress_https.port());
    assert_eq!(detail["https_url"], https_url.as_str(), "{detail:#}");
    let (_, _, page) = owner.html(&format!("/deployments/{web}")).await;
    assert!(page.contains(&https_url), "{page}");
    let wildcard = certificates
        .by_hostname("*.apps.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wildcard.source, "self_signed");

    // The deployment goes, and its certificate with it.
    let job = owner
        .delete(&format!("/api/v1/deployments/{web}"))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let job = wait_job(&owner, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while certificates.by_hostname(host).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the certificate outlived its deployment"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// A domain whose DNS sends the CA elsewhere: the order fails with the CA's reason, shown on
/// the domain; the running app is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_domain_fails_with_the_cas_reason() {
    let lab = Lab::new().await;
    let mut config = lab.config();
    // Berth's address, as far as DNS checks go: loopback, but nothing of Berth listens there.
    config.ingress_public_ips = vec!["127.0.0.2".parse().unwrap()];
    let app = TestApp::start(config).await;
    let ingress = app.ingress.unwrap();
    let _pebble = lab.pebble(&app, true);
    let dns_management = lab.dns_management;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (web, _) = create(&owner, &project_id, "web", 1, greeting_spec("release one")).await;
    let host = "lost.shop.example";
    verified_domain(&owner, &web, host, "127.0.0.2", dns_management).await;
    let d = wait_certificate(&owner, &web, host, "failed").await;
    let error = d["certificate"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("the CA did not validate {host}")) && error.contains("127.0.0.2"),
        "{error}"
    );
    assert!(d["https_url"].is_null());
    // The app is still served over HTTP.
    let r = reqwest::Client::new()
        .get(format!("http://{ingress}/"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}
