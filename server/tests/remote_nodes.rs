//! Remote nodes on real transports: a `tcp://` engine behind mutual TLS (nginx terminating
//! TLS in front of the machine's Docker socket, certificates made by openssl) and an `ssh://`
//! engine behind a real sshd on loopback. Both are the same Docker engine underneath, which
//! is all this machine has; Berth cannot tell and must not care. The Berth under test has no
//! local node, so everything it runs goes through these transports. Also: the engine going
//! away mid-life, and one that accepts connections but never answers.

#[macro_use]
mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A child process killed when the test ends, however it ends.
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

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signed, plus a
/// client certificate from another CA; P-256 keys, made by the openssl CLI.
fn make_certificates(dir: &Path) {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (key, pem) = (p(&format!("{ca}.key")), p(&format!("{ca}.pem")));
        let subject = format!("/CN=berth test {ca}");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ]);
        run("openssl", &args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ca) in [("server", "ca"), ("client", "ca"), ("stranger", "other-ca")] {
        let (key, csr, pem) = (
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.pem")),
        );
        let subject = format!("/CN={name}");
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        run("openssl", &args);
        let ext = if name == "server" {
            p("server.ext")
        } else {
            p("client.ext")
        };
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &p(&format!("{ca}.pem")),
                "-CAkey",
                &p(&format!("{ca}.key")),
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// nginx (stream module) terminating mutual TLS on `port` in front of the local Docker
/// socket, as `dockerd --tlsverify` would: a client certificate from `ca.pem` is required.
fn start_tls_proxy(dir: &Path, port: u16) -> KillOnDrop {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let conf = dir.join(format!("nginx-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             daemon off;\nmaster_process off;\nuser root;\npid {pid};\nerror_log {log} warn;\n\
             events {{}}\n\
             stream {{ server {{ listen 127.0.0.1:{port} ssl; \
             ssl_certificate {cert}; ssl_certificate_key {key}; \
             ssl_client_certificate {ca}; ssl_verify_client on; \
             proxy_pass unix:/var/run/docker.sock; }} }}\n",
            pid = p(&format!("nginx-{port}.pid")),
            log = p("nginx-error.log"),
            cert = p("server.pem"),
            key = p("server.key"),
            ca = p("ca.pem"),
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .args(["-c", conf.to_str().unwrap(), "-e", &p("nginx-error.log")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/install-deps.sh --test installs it)");
    wait_listening(port);
    KillOnDrop(child)
}

/// An sshd on 127.0.0.1:`port` that lets root in with `dir/client_ssh`'s key only.
fn start_sshd(dir: &Path, port: u16) -> KillOnDrop {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    for key in ["host_ssh", "client_ssh"] {
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", &p(key)],
        );
    }
    std::fs::copy(dir.join("client_ssh.pub"), dir.join("authorized_keys")).unwrap();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n",
            p("host_ssh"),
            p("authorized_keys"),
            p("sshd.pid")
        ),
    )
    .unwrap();
    // sshd's privilege-separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f", &p("sshd_config")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (scripts/install-deps.sh --test installs openssh-server)");
    wait_listening(port);
    KillOnDrop(child)
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tls_node(name: &str, port: u16, dir: &Path, client: &str) -> Value {
    json!({
        "name": name, "region": "remote", "availability_zone": "a",
        "endpoint": format!("tcp://127.0.0.1:{port}"),
        "tls_ca_pem": read(dir, "ca.pem"),
        "tls_cert_pem": read(dir, &format!("{client}.pem")),
        "private_key_pem": read(dir, &format!("{client}.key")),
    })
}

async fn node(admin: &Browser, name: &str) -> Value {
    let nodes = admin
        .get("/api/v1/nodes")
        .await
        .expect_status(StatusCode::OK)
        .await;
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_node(admin: &Browser, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = node(admin, name).await;
        if ok(&n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {n:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the container with this id is running, asked of the engine directly.
fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container]) == "true"
}

#[tokio::test]
async fn tls_and_ssh_nodes_run_deployments_and_survive_their_engine_going_away() {
    ensure_test_image();
    let db = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&db);
    // No local node: every instance goes through a remote transport.
    config.docker_host = "unix:///nonexistent/docker.sock".into();
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let tls_port = free_port();
    let mut proxy = start_tls_proxy(certs.path(), tls_port);

    // Bad input is refused with a message naming the field and what is accepted; nothing is
    // stored.
    let (customer, project_id) = project(&app, &admin, "remote@example.com", "remote").await;
    customer
        .post_json(
            "/api/v1/nodes",
            &tls_node("edge-tls", tls_port, certs.path(), "client"),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    let e = admin
        .post_json(
            "/api/v1/nodes",
            &json!({"name": "edge", "region": "remote",
            "availability_zone": "a", "endpoint": "http://127.0.0.1:2375"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_endpoint")
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("tcp://host:port"),
        "{e}"
    );
    let e = admin
        .post_json(
            "/api/v1/nodes",
            &json!({"name": "edge", "region": "remote",
            "availability_zone": "a", "endpoint": format!("tcp://127.0.0.1:{tls_port}")}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "required")
        .await;
    assert_eq!(e["field"], "tls_ca_pem");
    // A client certificate from a CA the engine does not trust: the handshake fails.
    let e = admin
        .post_json(
            "/api/v1/nodes",
            &tls_node("edge-tls", tls_port, certs.path(), "stranger"),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "engine_unreachable")
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("could not connect"),
        "{e}"
    );
    assert_eq!(node(&admin, "edge-tls").await, Value::Null);

    // The right certificate: the node is added with the engine's capacity; the key is stored
    // encrypted and never sent back.
    let body = tls_node("edge-tls", tls_port, certs.path(), "client");
    let added = admin
        .post_json("/api/v1/nodes", &body)
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert!(added["cpu_millicores"].as_i64().unwrap() >= 1000, "{added}");
    assert!(
        !added["engine_version"].as_str().unwrap().is_empty(),
        "{added}"
    );
    assert_eq!(added["has_credentials"], true);
    assert_eq!(added["state"], "active");
    let client_key = read(certs.path(), "client.key");
    let key_body = client_key.lines().nth(1).unwrap();
    assert!(!added.to_string().contains(key_body));
    let stored = app
        .store
        .topology()
        .node_by_name("edge-tls")
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.credentials.private_key_enc.unwrap();
    assert!(sealed.starts_with("enc:v1:") && !sealed.contains(key_body));
    admin
        .post_json("/api/v1/nodes", &body)
        .await
        .expect_error(StatusCode::CONFLICT, "name_taken")
        .await;

    // An ssh:// node through a real sshd, with an advertise address: its instances publish
    // their HTTP port there and are routed to it, as the ingress on another host would have
    // to (loopback stands in for the private network). A bad address is refused first.
    let ssh_port = free_port();
    let _sshd = start_sshd(certs.path(), ssh_port);
    let ssh_node = |address: &str| {
        json!({"name": "edge-ssh", "region": "remote", "availability_zone": "b",
        "endpoint": format!("ssh://root@127.0.0.1:{ssh_port}"),
        "private_key_pem": read(certs.path(), "client_ssh"), "advertise_address": address})
    };
    for (bad, says) in [
        ("0.0.0.0", "all of the node's interfaces"),
        ("::", "all of the node's interfaces"),
        ("node-1.internal", "not an IP address"),
        ("10.0.0.5:8080", "not an IP address"),
    ] {
        let e = admin
            .post_json("/api/v1/nodes", &ssh_node(bad))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_address")
            .await;
        assert_eq!(e["field"], "advertise_address", "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{bad}: {e}");
    }
    assert_eq!(node(&admin, "edge-ssh").await, Value::Null);
    let added = admin
        .post_json("/api/v1/nodes", &ssh_node("127.0.0.1"))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert_eq!(added["advertise_address"], "127.0.0.1", "{added}");
    let page = admin.html("/admin/nodes").await.2;
    assert!(page.contains("advertise-address"), "{page}");

    // Two replicas spread over both nodes, each serving, each saying which container it is.
    let mut spec = greeting_spec("over the wire");
    spec["command"][3] = json!(
        "echo \"$GREETING $(/bin/busybox hostname)\" > /tmp/index.html && \
         exec /bin/busybox httpd -f -p 8080 -h /tmp"
    );
    let (id, job) = create(&customer, &project_id, "spread", 2, spec).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&customer, &id).await;
    let inst = healthy(&d);
    let nodes: BTreeSet<&str> = inst
        .iter()
        .map(|i| i["node_name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, BTreeSet::from(["edge-ssh", "edge-tls"]), "{d:#}");
    let mut served = BTreeSet::new();
    for i in &inst {
        let address = i["address"].as_str().unwrap();
        let container = i["container_id"].as_str().unwrap();
        let body = fetch(address).await.unwrap_or_default();
        assert_eq!(body, format!("over the wire {}", &container[..12]), "{i:#}");
        served.insert(body);
        // The advertising node's instance is reached at the port the engine published on
        // 127.0.0.1 (probes and routes alike); the other one at its bridge address.
        let out = Command::new("docker")
            .args(["port", container, "8080/tcp"])
            .output()
            .unwrap();
        let published = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if i["node_name"] == "edge-ssh" {
            assert_eq!(published, address, "{i:#}");
            assert!(!address.ends_with(":8080"), "{i:#}");
        } else {
            assert!(published.is_empty(), "{published}");
            assert!(
                address.ends_with(":8080") && !address.starts_with("127."),
                "{i:#}"
            );
        }
    }
    // The ingress balances over both addresses (a failed one would be ejected and retried
    // on the other, so only seeing both proves both are routed).
    let ingress = app.ingress.expect("the test config runs an ingress");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen != served {
        assert!(
            Instant::now() < deadline,
            "the ingress served {seen:?}, not {served:?}"
        );
        let r = reqwest::Client::new()
            .get(format!("http://{ingress}/"))
            .header("host", "spread-remote.localhost")
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => {
                seen.insert(r.text().await.unwrap().trim().to_owned());
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The console shows what runs on each node.
    for name in ["edge-tls", "edge-ssh"] {
        let n = node(&admin, name).await;
        assert_eq!(n["instances"], 1, "{n:#}");
        assert_eq!(n["workloads"][0]["project_name"], "remote", "{n:#}");
        assert_eq!(n["workloads"][0]["deployment_name"], "spread", "{n:#}");
        assert_eq!(n["workloads"][0]["instances"], 1, "{n:#}");
    }
    let job = act(
        &customer,
        &id,
        json!({"action": "delete", "remove_volumes": true}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");

    // One replica on the TLS node only (the ssh node drained), then its engine goes away.
    let ssh_id = node(&admin, "edge-ssh").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .http
        .put(admin.url(&format!("/api/v1/nodes/{ssh_id}/state")))
        .header("origin", &admin.base)
        .json(&json!({"state": "draining"}))
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::OK)
        .await;
    let (id, job) = create(
        &customer,
        &project_id,
        "solo",
        1,
        greeting_spec("release one"),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&customer, &id).await;
    let inst = healthy(&d);
    assert_eq!(inst[0]["node_name"], "edge-tls", "{d:#}");
    let container = inst[0]["container_id"].as_str().unwrap().to_owned();
    let address = inst[0]["address"].as_str().unwrap().to_owned();

    drop(proxy);
    let down = wait_node(&admin, "edge-tls", "the node to be seen unreachable", |n| {
        n["last_error"].is_string()
    })
    .await;
    assert!(
        down["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the Docker engine"),
        "{down:#}"
    );
    let page = admin.html("/admin/nodes").await.2;
    let shown = page.split("node-error").nth(1).unwrap_or_default();
    assert!(shown.contains("cannot reach the Docker engine"), "{page}");
    // A redeploy cannot be placed and says why; the running release is not touched.
    let mut spec = greeting_spec("release two");
    spec["env"][1] = json!({"name": "API_KEY", "secret": true});
    let job = act(&customer, &id, json!({"action": "update", "spec": spec})).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("edge-tls") && error.contains("unreachable"),
        "{error}"
    );
    assert!(running(&container));
    assert_eq!(fetch(&address).await.as_deref(), Some("release one"));

    // The engine comes back: the node is seen again and the redeploy goes through.
    proxy = start_tls_proxy(certs.path(), tls_port);
    wait_node(&admin, "edge-tls", "the node to be reachable again", |n| {
        n["last_error"].is_null()
    })
    .await;
    let job = act(&customer, &id, json!({"action": "update", "spec": spec})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&customer, &id).await;
    let address = healthy(&d)[0]["address"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&address).await.as_deref(), Some("release two"));

    // An engine that accepts connections but never answers: refused after the call timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let e = admin
        .post_json(
            "/api/v1/nodes",
            &tls_node("edge-silent", silent_port, certs.path(), "client"),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "engine_unreachable")
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("did not answer"),
        "{e}"
    );
    drop(silent);
    drop(proxy);
    app.stop().await;
}
