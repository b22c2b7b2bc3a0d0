//! Starts the real Berth on port 0 against a fresh database (a SQLite file in a temp dir, or
//! a new database on the PostgreSQL server named by `BERTH_TEST_POSTGRES_URL`), and a client
//! that behaves like a browser (cookie jar, same-site `Origin`).
#![allow(dead_code)]

pub mod acme;
pub mod backups;
pub mod builds;
pub mod contract;
pub mod deploy;
pub mod dns;
pub mod git;
pub mod postgres;
pub mod ws;

use std::{net::SocketAddr, path::PathBuf};

use berth::{auth::bootstrap::GeneratedCredentials, config::Config, store::Store, Application};
use reqwest::{header, Client, Response, StatusCode};
use serde_json::Value;
use sqlx::{Connection, Executor};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of the given kind, and the URL Berth should use.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

/// Creates an empty database. For PostgreSQL a new database on the test server.
///
/// # Panics
/// When `BERTH_TEST_POSTGRES_URL` is not set for a PostgreSQL test: scripts/test.sh sets it.
pub async fn fresh_db(db: Db) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite:{}", dir.path().join("berth.db").display()),
        Db::Postgres => {
            let admin = std::env::var("BERTH_TEST_POSTGRES_URL").expect(
                "BERTH_TEST_POSTGRES_URL must point at a PostgreSQL server (scripts/test.sh starts one)",
            );
            let name = format!("berth_test_{}", uuid_simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            conn.close().await.unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            format!("{base}/{name}")
        }
    };
    TestDb { url, dir }
}

fn uuid_simple() -> String {
    berth::store::new_id().replace('-', "")
}

/// Configuration for a test instance on a free port.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::load_from(None, Vec::<(String, String)>::new()).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = db.dir.path().to_path_buf();
    config.database_url = Some(db.url.clone());
    config.site_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/site");
    config.shutdown_grace_secs = 1;
    config
        .docker_labels
        .insert(TEST_LABEL_KEY.into(), TEST_LABEL_VALUE.into());
    config.reconcile_interval_secs = 2;
    config.ingress_http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.ingress_https_listen = Some("127.0.0.1:0".parse().unwrap());
    // No test reaches Let's Encrypt; the ACME tests name their own pebble.
    config.acme_directory_url = String::new();
    config
}

/// Label on every Docker object the tests make (scripts/test.sh removes leftovers by it).
pub const TEST_LABEL_KEY: &str = "berth.test";
pub const TEST_LABEL_VALUE: &str = "1";

/// A running Berth.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub store: Store,
    pub admin: Option<GeneratedCredentials>,
    /// The installation id that labels this instance's Docker objects.
    pub installation: String,
    pub reconciler: std::sync::Arc<berth::orchestrator::reconciler::Reconciler>,
    /// The orchestrator (the metrics bench runs collectors on it).
    pub orchestrator: std::sync::Arc<berth::orchestrator::Orchestrator>,
    /// Where the ingress listens (`None` when the config has no ingress).
    pub ingress: Option<SocketAddr>,
    /// Where the ingress accepts HTTPS.
    pub ingress_https: Option<SocketAddr>,
    /// The certificate manager (tests move its clock).
    pub certificates: Option<std::sync::Arc<berth::ingress::acme::CertificateManager>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts Berth with `config` on a free port. The cross-site check accepts the bound
    /// address because `Origin` then equals `Host`.
    pub async fn start(config: Config) -> TestApp {
        if let Ok(filter) = std::env::var("BERTH_TEST_LOG") {
            // Debug aid: BERTH_TEST_LOG=berth=debug cargo test ... -- --nocapture
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let app = Application::build(config).await.expect("berth starts");
        let addr = app.local_addr();
        let store = app.store();
        let admin = app.first_admin.clone();
        let installation = store.deployments().installation_id().await.unwrap();
        let reconciler = app.reconciler();
        let orchestrator = app.orchestrator();
        let ingress = app.ingress_addr();
        let ingress_https = app.ingress_https_addr();
        let certificates = app.certificates();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            store,
            admin,
            installation,
            reconciler,
            orchestrator,
            ingress,
            ingress_https,
            certificates,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops serving and waits until the pool is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(60), t)
                .await
                .expect("Berth stops within 60 s")
                .unwrap();
        }
    }

    /// A browser-like client with its own cookie jar.
    pub fn client(&self) -> Browser {
        Browser {
            http: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                // A request that never gets its answer fails the test (naming the request)
                // instead of hanging the run.
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .unwrap(),
            base: self.base.clone(),
        }
    }

    /// A browser signed in as the first admin, who has replaced the one-time password with
    /// [`ADMIN_PASSWORD`].
    pub async fn admin_client(&self) -> Browser {
        let admin = self.admin.clone().expect("first start created the admin");
        let b = self.client();
        b.sign_in(&admin.email, &admin.password)
            .await
            .expect_ok()
            .await;
        b.change_password(&admin.password, ADMIN_PASSWORD).await;
        b
    }

    /// Creates a customer through the API as `admin` and returns a browser signed in as them.
    pub async fn customer(&self, admin: &Browser, email: &str) -> Browser {
        let password = "initial password 1";
        admin
            .post_json(
                "/api/v1/users",
                &serde_json::json!({"email": email, "display_name": email, "role": "customer", "password": password}),
            )
            .await
            .expect_status(StatusCode::CREATED)
            .await;
        let b = self.client();
        b.sign_in(email, password).await.expect_ok().await;
        b.change_password(password, CUSTOMER_PASSWORD).await;
        b
    }
}

impl Drop for TestApp {
    /// Removes every container, network and volume this instance created.
    fn drop(&mut self) {
        docker_cleanup(&format!("berth.installation={}", self.installation));
    }
}

/// Runs the docker CLI with `args`; returns stdout, panicking with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes containers, then networks and volumes, carrying `label` (`key=value`).
pub fn docker_cleanup(label: &str) {
    let filter = format!("label={label}");
    let ids = docker(&["ps", "-aq", "--filter", &filter]);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", id])
            .output();
    }
    for kind in ["network", "volume"] {
        let names = docker(&[kind, "ls", "-q", "--filter", &filter]);
        for n in names.lines().filter(|l| !l.is_empty()) {
            let _ = std::process::Command::new("docker")
                .args([kind, "rm", n])
                .output();
        }
    }
}

/// The test image: `FROM scratch` with Debian's static busybox (package `busybox-static`),
/// serving `/www` with `httpd` on port 8080 by default. Busybox as PID 1 ignores SIGTERM, so
/// the image asks for SIGKILL on stop (`STOPSIGNAL`) rather than have every stop wait out
/// the grace period. Built once per machine; tests pick
/// other behaviour (crash, never listen) with a command override.
pub const TEST_IMAGE: &str = "berth-test/httpd:2";

/// Builds [`TEST_IMAGE`] unless it exists.
pub fn ensure_test_image() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let exists = std::process::Command::new("docker")
            .args(["image", "inspect", TEST_IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if exists {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .expect("/bin/busybox from Debian's busybox-static (scripts/install-deps.sh installs it)");
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("www/index.html"), "berth test image\n").unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nLABEL berth.test=1\nSTOPSIGNAL SIGKILL\nCOPY busybox /bin/busybox\nCOPY www /www\nCOPY tmp /tmp\n\
             CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
        )
        .unwrap();
        // Concurrent builds of the same context are harmless: the last tag wins.
        docker(&["build", "-q", "-t", TEST_IMAGE, dir.path().to_str().unwrap()]);
    });
}

/// The first admin's password after the one-time password was replaced.
pub const ADMIN_PASSWORD: &str = "admin password 1";
/// Customers' password after their initial one was replaced.
pub const CUSTOMER_PASSWORD: &str = "customer password 1";

/// An HTTP client that keeps cookies and sends this site's `Origin` on state changes, as a
/// browser does for same-site requests.
pub struct Browser {
    pub http: Client,
    pub base: String,
}

impl Browser {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs in through the portal's server function, as the sign-in form does.
    pub async fn sign_in(&self, email: &str, password: &str) -> Response {
        self.rpc("sign_in", &[("email", email), ("password", password)])
            .await
    }

    /// Calls a server function with a form body (the no-JavaScript path of `ActionForm`).
    pub async fn rpc(&self, name: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(&format!("/rpc/{name}")))
            .header(header::ORIGIN, &self.base)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Replaces the signed-in user's password through the API.
    pub async fn change_password(&self, current: &str, new: &str) {
        self.post_json(
            "/api/v1/me/password",
            &serde_json::json!({"current_password": current, "new_password": new}),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    }

    /// GETs a page as a browser does (`Accept: text/html`): status, `Location`, body.
    pub async fn html(&self, path: &str) -> (StatusCode, Option<String>, String) {
        let r = self
            .http
            .get(self.url(path))
            .header(header::ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, location, r.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .header(header::ORIGIN, &self.base)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .put(self.url(path))
            .header(header::ORIGIN, &self.base)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .patch(self.url(path))
            .header(header::ORIGIN, &self.base)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http
            .delete(self.url(path))
            .header(header::ORIGIN, &self.base)
            .send()
            .await
            .unwrap()
    }
}

/// Assertions on responses that print the body when they fail.
#[allow(async_fn_in_trait)]
pub trait Expect {
    async fn expect_status(self, status: StatusCode) -> Value;
    async fn expect_ok(self) -> Value;
    /// Asserts an API error with this status and `code`; returns the error object.
    async fn expect_error(self, status: StatusCode, code: &str) -> Value;
}

impl Expect for Response {
    async fn expect_status(self, status: StatusCode) -> Value {
        let got = self.status();
        let text = self.text().await.unwrap();
        assert_eq!(got, status, "unexpected status; body: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn expect_ok(self) -> Value {
        let got = self.status();
        let text = self.text().await.unwrap();
        assert!(
            got.is_success() || got.is_redirection(),
            "expected success, got {got}: {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn expect_error(self, status: StatusCode, code: &str) -> Value {
        let body = self.expect_status(status).await;
        // REST wraps errors in {"error": …}; server functions return the error itself.
        let err = body.get("error").cloned().unwrap_or(body);
        assert_eq!(err["code"], code, "error code; error: {err}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "errors carry a message: {err}"
        );
        err
    }
}

/// Defines each listed `async fn NAME(db: Db)` as two tests, `sqlite::NAME` and
/// `postgres::NAME`: the same checks against both backends.
#[allow(unused_macros)] // not every test binary runs on both databases
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await } )*
        }
    };
}
