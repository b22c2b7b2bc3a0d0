//! A local ACME set-up for the browser test: `pebble-challtestsrv` as the DNS server and
//! `pebble` as the CA (Debian package `pebble`), both on loopback, and what Berth and
//! Chromium need to use them. Chromium trusts the CA through
//! `--ignore-certificate-errors-spki-list` with the SHA-256 of pebble's root and intermediate
//! public keys (pebble makes new ones at each start), and finds the custom domain through
//! `--host-resolver-rules`.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use fantoccini::{Client, Locator};
use sha2::Digest as _;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The custom domain the test adds.
pub const DOMAIN: &str = "www.e2e-shop.example";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The DNS server, the CA, and the ports Berth's ingress must use (pebble validates there).
pub struct AcmeLab {
    _dns: KillOnDrop,
    _pebble: KillOnDrop,
    dir: tempfile::TempDir,
    dns_port: u16,
    dns_management: u16,
    acme_port: u16,
    pub ingress_http: u16,
    pub ingress_https: u16,
    /// Base64 SHA-256 of the subject public key info of pebble's root and intermediate.
    spki: Vec<String>,
}

fn port() -> u16 {
    super::free_port()
}

impl AcmeLab {
    pub fn start() -> AcmeLab {
        let dir = tempfile::tempdir().unwrap();
        let (dns_port, dns_management) = (port(), port());
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "203.0.113.7", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble)");
        let dns = KillOnDrop(dns);
        wait_listening(dns_management, "pebble-challtestsrv");

        // Pebble's own HTTPS: a CA and a certificate for 127.0.0.1 made here.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // OpenSSL (curl) needs an issuer name to find the CA by.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth e2e ACME server CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let d = dir.path();
        std::fs::write(d.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();

        let (acme_port, management) = (port(), port());
        let (ingress_http, ingress_https) = (port(), port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": d.join("cert.pem"),
            "privateKey": d.join("key.pem"),
            "httpPort": ingress_http,
            "tlsPort": ingress_https,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(d.join("pebble.json"), config.to_string()).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (Debian package pebble)");
        let pebble = KillOnDrop(pebble);
        wait_listening(acme_port, "pebble");
        wait_listening(management, "pebble's management API");
        let spki = ["roots/0", "intermediates/0"]
            .iter()
            .map(|path| spki_sha256(&fetch(d, &format!("https://127.0.0.1:{management}/{path}"))))
            .collect();
        AcmeLab {
            _dns: dns,
            _pebble: pebble,
            dir,
            dns_port,
            dns_management,
            acme_port,
            ingress_http,
            ingress_https,
            spki,
        }
    }

    /// Berth's settings: the ingress on the lab's ports, this DNS server and this CA.
    pub fn berth_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "BERTH_INGRESS_HTTP_LISTEN",
                format!("127.0.0.1:{}", self.ingress_http),
            ),
            (
                "BERTH_INGRESS_HTTPS_LISTEN",
                format!("127.0.0.1:{}", self.ingress_https),
            ),
            ("BERTH_DNS_RESOLVER", format!("127.0.0.1:{}", self.dns_port)),
            (
                "BERTH_ACME_DIRECTORY_URL",
                format!("https://127.0.0.1:{}/dir", self.acme_port),
            ),
            (
                "BERTH_ACME_CA_ROOTS",
                self.dir.path().join("ca.pem").display().to_string(),
            ),
        ]
    }

    /// Chromium's extra arguments: [`DOMAIN`] resolves to the loopback address, and pebble's
    /// chain is accepted.
    pub fn chromium_args(&self) -> Vec<String> {
        vec![
            format!("--host-resolver-rules=MAP {DOMAIN} 127.0.0.1"),
            format!(
                "--ignore-certificate-errors-spki-list={}",
                self.spki.join(",")
            ),
        ]
    }

    /// Creates the customer's records: the TXT proof and an A record to the ingress.
    fn set_dns(&self, token: &str) {
        let base = format!("http://127.0.0.1:{}", self.dns_management);
        for (path, body) in [
            (
                "set-txt",
                serde_json::json!({"host": format!("_berth-challenge.{DOMAIN}."), "value": token}),
            ),
            (
                "add-a",
                serde_json::json!({"host": format!("{DOMAIN}."), "addresses": ["127.0.0.1"]}),
            ),
        ] {
            let out = Command::new("curl")
                .args(["-sf", "-X", "POST", "--data-binary", &body.to_string()])
                .arg(format!("{base}/{path}"))
                .output()
                .expect("curl");
            assert!(out.status.success(), "{path}: {out:?}");
        }
    }
}

/// GET `url` trusting the lab's CA for pebble's management API (curl, Debian package).
fn fetch(dir: &Path, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(dir.join("ca.pem"))
        .arg(url)
        .output()
        .expect("curl");
    assert!(out.status.success(), "{url}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Base64 of the SHA-256 of the first certificate's SubjectPublicKeyInfo (the form of
/// Chromium's `--ignore-certificate-errors-spki-list`).
fn spki_sha256(pem: &str) -> String {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM certificate");
    let cert = parsed.parse_x509().expect("an X.509 certificate");
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(cert.public_key().raw))
}

/// On the deployment page: adds [`DOMAIN`], creates the records the Domains card shows,
/// asks for a check, waits for the domain to be verified and its certificate issued by the
/// test CA, then opens the HTTPS address and finds the app.
pub async fn custom_domain_over_https(c: &Client, lab: &AcmeLab) -> Result<()> {
    // From the app (the previous step) back to its deployment page.
    c.back().await?;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("add-domain-form"))
        .await?;
    super::fill(c, "#add-domain-form", "hostname", DOMAIN).await?;
    c.find(Locator::Css("#add-domain-form button[type=submit]"))
        .await?
        .click()
        .await?;
    let token = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//ul[@id='domains']//tr[td[1]='TXT']/td[3]"))
        .await?
        .text()
        .await?;
    if !token.starts_with("berth-verify-") {
        return Err(format!("unexpected TXT value '{token}'").into());
    }
    lab.set_dns(&token);
    c.find(Locator::XPath(
        "//ul[@id='domains']//button[text()='Verify now']",
    ))
    .await?
    .click()
    .await?;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath(
            "//ul[@id='domains']//span[text()='verified']",
        ))
        .await?;
    let link = c
        .wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css("#domains a.https-url"))
        .await?;
    let https_url = link.attr("href").await?.unwrap_or_default();
    if https_url != format!("https://{DOMAIN}:{}/", lab.ingress_https) {
        return Err(format!("unexpected HTTPS address '{https_url}'").into());
    }
    let shot = c.screenshot().await?;
    std::fs::write(super::workspace_target().join("e2e-domain.png"), shot)?;
    c.goto(&https_url).await?;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//h1[text()='Hello from Berth']"))
        .await?;
    let protocol = c
        .execute("return window.location.protocol;", vec![])
        .await?;
    if protocol != serde_json::json!("https:") {
        return Err(format!("served over {protocol}").into());
    }
    let shot = c.screenshot().await?;
    std::fs::write(super::workspace_target().join("e2e-https.png"), shot)?;
    Ok(())
}
