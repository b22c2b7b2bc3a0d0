//! An ACME CA for the certificate tests: `pebble` (Debian package) on loopback, with HTTPS
//! from a CA made here, and helpers to fetch through the ingress's TLS listener.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{dns::KillOnDrop, Browser, Expect};

/// A CA and a certificate for `127.0.0.1`/`localhost` signed by it, for pebble's HTTPS.
/// Returns the CA's PEM path.
pub fn pebble_tls(dir: &Path) -> std::path::PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test ACME server CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("pebble-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("pebble-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    ca_path
}

/// Starts pebble on `acme` (management on `management`), validating on the ingress's ports.
pub fn start_pebble(
    dir: &Path,
    acme: u16,
    management: u16,
    ingress: SocketAddr,
    ingress_https: SocketAddr,
    dns: u16,
    nosleep: bool,
) -> KillOnDrop {
    let config = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("pebble-cert.pem"),
        "privateKey": dir.join("pebble-key.pem"),
        "httpPort": ingress.port(),
        "tlsPort": ingress_https.port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    let path = dir.join("pebble-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut cmd = Command::new("pebble");
    // Its log goes to a file, shown if it does not start.
    let log = dir.join("pebble.log");
    cmd.arg("-config")
        .arg(&path)
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if nosleep {
        cmd.env("PEBBLE_VA_NOSLEEP", "1");
    }
    let mut child = cmd
        .spawn()
        .expect("pebble (scripts/install-deps.sh --test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", acme)).is_err() {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "pebble did not start ({exited:?}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    KillOnDrop(child)
}

/// Pebble's root (it makes a new one at every start), from its management API.
pub async fn pebble_root(management: u16, ca: &Path) -> reqwest::Certificate {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let pem = client
        .get(format!("https://127.0.0.1:{management}/roots/0"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    reqwest::Certificate::from_pem(&pem).unwrap()
}

/// GET `https://<host>/` through the ingress, trusting only `root`; the status, the body
/// and the leaf certificate the ingress presented.
pub async fn https_get(
    ingress_https: SocketAddr,
    host: &str,
    root: &reqwest::Certificate,
) -> Result<(u16, String, Vec<u8>), String> {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root.clone())
        .resolve(host, ingress_https)
        .tls_info(true)
        .build()
        .unwrap();
    let r = client
        .get(format!("https://{host}:{}/", ingress_https.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let leaf = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok((r.status().as_u16(), r.text().await.unwrap(), leaf))
}

/// The DER of the first certificate in `pem`.
pub fn rustls_pki_types_der(pem: &str) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Waits until the deployment's domain `hostname` has a certificate in `state`.
pub async fn wait_certificate(b: &Browser, deployment: &str, hostname: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = b
            .get(&format!("/api/v1/deployments/{deployment}/domains"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        let d = list
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["hostname"] == hostname)
            .cloned()
            .unwrap();
        if d["certificate"]["state"] == state {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "certificate never {state}: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
