//! A user's first visit, in headless Chromium: sign in with the one-time password, choose a
//! new one, create a project and see it listed without a page reload (the wasm is running),
//! switch the theme, and see a field error; then deploy the local demo image, see it healthy
//! with its node and container id, `docker kill` it and watch Berth bring it back, follow
//! its logs live, redeploy a broken image while the old release keeps running, and open the
//! app at its generated hostname; then connect it to a git repository, push, have a signed
//! webhook delivery build it (a forged one is refused), follow the build log live and open
//! the new release; then add a custom domain, see it verified and served over HTTPS with a
//! certificate from a local ACME CA (pebble); then back up a deployment's volume, restore it
//! from the card and read the file back (and with stock restic). Saves
//! `target/e2e-projects.png`, `target/e2e-deployment.png`, `target/e2e-app.png`,
//! `target/e2e-build.png`, `target/e2e-build-app.png`, `target/e2e-backups.png`,
//! `target/e2e-domain.png` and `target/e2e-https.png`.
//!
//! Needs `BERTH_BIN` (the built binary) and `BERTH_SITE_ROOT` (with `pkg/`), as
//! scripts/test.sh sets them, plus `chromedriver` and `chromium` on PATH.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod acme_lab;
mod backups_flow;
mod git_builds;
mod live_charts;

use fantoccini::{error::CmdError, Client, ClientBuilder, Locator};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped, so a failing test leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Starts berth on a fresh data dir; returns it with its URL and the first admin's password,
/// read from its standard output as a new user would read it.
fn start_berth(data: &std::path::Path, extra_env: &[(&str, String)]) -> (Guard, String, String) {
    let bin = std::env::var("BERTH_BIN").expect("BERTH_BIN: path of the built berth binary");
    let site = std::env::var("BERTH_SITE_ROOT").expect("BERTH_SITE_ROOT: the built site");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(bin)
        .arg("serve")
        .env("BERTH_DATA_DIR", data)
        .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("BERTH_INGRESS_HTTP_LISTEN", "127.0.0.1:0")
        .env("BERTH_INGRESS_HTTPS_LISTEN", "127.0.0.1:0")
        .env("BERTH_ACME_DIRECTORY_URL", "")
        .env("BERTH_PUBLIC_URL", &url)
        .env("BERTH_SITE_ROOT", site)
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .spawn()
        .expect("berth starts");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let mut password = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(p) = line.trim().strip_prefix("one-time password:") {
            password = Some(p.trim().to_owned());
        }
        if line.starts_with("Berth portal:") {
            break;
        }
    }
    (
        guard,
        url,
        password.expect("first start prints the admin's one-time password"),
    )
}

fn start_chromedriver() -> (Guard, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .spawn()
        .expect("chromedriver on PATH (Debian package chromium-driver)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Guard(child), port)
}

async fn connect(driver_port: u16, profile: &std::path::Path, extra_args: &[String]) -> Client {
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.extend_from_slice(extra_args);
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("WebDriver session")
}

async fn wait_for_url(c: &Client, suffix: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await?;
        if url.as_str().ends_with(suffix) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("expected URL ending {suffix}, at {url}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn is_dark(c: &Client) -> std::result::Result<bool, CmdError> {
    let v = c
        .execute(
            "return document.documentElement.classList.contains('dark');",
            vec![],
        )
        .await?;
    Ok(v.as_bool().unwrap_or(false))
}

/// Clicks the theme toggle until the page reacts: the toggle only works once the wasm has
/// hydrated the page, so this both waits for and proves hydration.
async fn wait_for_hydration_via_theme_toggle(c: &Client) -> Result<bool> {
    let before = is_dark(c).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        c.find(Locator::Id("theme-toggle")).await?.click().await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        if is_dark(c).await? != before {
            return Ok(!before);
        }
    }
    Err("the theme toggle never reacted: the page did not hydrate".into())
}

async fn fill(c: &Client, form: &str, field: &str, value: &str) -> Result<()> {
    let input = c
        .find(Locator::Css(&format!("{form} input[name={field}]")))
        .await?;
    input.clear().await?;
    input.send_keys(value).await?;
    Ok(())
}

async fn first_visit(c: &Client, url: &str, password: &str) -> Result<()> {
    c.goto(&format!("{url}/projects")).await?;
    wait_for_url(c, "/sign-in").await?;
    fill(c, "#sign-in-form", "email", "admin@berth.localhost").await?;
    fill(c, "#sign-in-form", "password", password).await?;
    c.find(Locator::Css("#sign-in-form button[type=submit]"))
        .await?
        .click()
        .await?;
    // A one-time password leads to the account page to choose a new one.
    wait_for_url(c, "/account?first=1").await?;
    c.wait().for_element(Locator::Id("user-menu")).await?;
    wait_for_hydration_via_theme_toggle(c).await?;
    fill(c, "form", "current_password", password).await?;
    fill(c, "form", "new_password", "my own long password").await?;
    c.find(Locator::XPath("//button[text()='Change password']"))
        .await?
        .click()
        .await?;
    c.wait()
        .for_element(Locator::XPath("//p[text()='Password changed.']"))
        .await?;

    c.goto(&format!("{url}/projects")).await?;
    c.wait().for_element(Locator::Id("projects-empty")).await?;
    let dark = wait_for_hydration_via_theme_toggle(c).await?;
    let stored = c
        .execute("return localStorage.getItem('berth-theme');", vec![])
        .await?;
    if stored != json!(if dark { "dark" } else { "light" }) {
        return Err(format!("theme not remembered: {stored}").into());
    }

    // A marker on `window` survives only if the page is not reloaded.
    c.execute("window.__berthMarker = 'still-here';", vec![])
        .await?;
    fill(c, "#create-project-form", "name", "e2e-shop").await?;
    c.find(Locator::Css("#create-project-form button[type=submit]"))
        .await?
        .click()
        .await?;
    let link = c
        .wait()
        .for_element(Locator::XPath(
            "//a[contains(@class,'project-link') and text()='e2e-shop']",
        ))
        .await?;
    let marker = c.execute("return window.__berthMarker;", vec![]).await?;
    if marker != json!("still-here") {
        return Err("creating a project reloaded the page: the action did not run in wasm".into());
    }
    let shot = c.screenshot().await?;
    let path = workspace_target().join("e2e-projects.png");
    std::fs::write(&path, shot)?;

    // A bad name shows the server's message next to the field, still without a reload.
    fill(c, "#create-project-form", "name", "Bad_Name").await?;
    c.find(Locator::Css("#create-project-form button[type=submit]"))
        .await?
        .click()
        .await?;
    let err = c
        .wait()
        .for_element(Locator::Css("#create-project-form .field-error"))
        .await?;
    let text = err.text().await?;
    if !text.contains("1–30 characters") {
        return Err(format!("unexpected field error: {text}").into());
    }

    // The project page opens from the list.
    link.click().await?;
    let title = c.wait().for_element(Locator::Id("project-name")).await?;
    if title.text().await? != "e2e-shop" {
        return Err("project page shows another name".into());
    }
    deploy_and_watch(c).await?;
    git_builds::push_to_deploy(c, url).await
}

/// Deploys the local demo image from the project page, sees it healthy with its node and
/// container id, kills the container with `docker kill` and watches Berth bring it back.
async fn deploy_and_watch(c: &Client) -> Result<()> {
    fill(c, "#new-deployment-form", "name", "hello").await?;
    fill(
        c,
        "#new-deployment-form",
        "image",
        "berth-demo/httpd:latest",
    )
    .await?;
    fill(c, "#new-deployment-form", "http_port", "8080").await?;
    c.find(Locator::Css("#new-deployment-form button[type=submit]"))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(
            "//table[@id='deployments']//a[text()='hello']",
        ))
        .await?
        .click()
        .await?;
    let healthy = "//tr[@class='instance'][td[@class='health' and text()='healthy']]";
    let row = c
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(healthy))
        .await?;
    let node = row.find(Locator::Css("td.node")).await?.text().await?;
    let container = row
        .find(Locator::Css("td.container-id"))
        .await?
        .attr("title")
        .await?
        .unwrap_or_default();
    if node != "local" || container.len() < 12 {
        return Err(format!("instance row shows node '{node}', container '{container}'").into());
    }
    let killed = Command::new("docker").args(["kill", &container]).output()?;
    if !killed.status.success() {
        return Err(format!("docker kill failed: {killed:?}").into());
    }
    // The page refreshes itself (wasm) and shows the instance healthy again, restarted once.
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(&format!("{healthy}[td[8][text()='1']]")))
        .await?;
    // Follow the logs live (a WebSocket from the wasm page), then write a line to the
    // instance's stdout and watch it arrive without a reload.
    c.find(Locator::Id("follow-logs")).await?.click().await?;
    let current = healthy_container(c, healthy, "after following the logs").await?;
    // The socket opens asynchronously; write until the line shows up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let live = "//pre[@id='live-logs'][contains(., 'e2e-live-line')]";
    loop {
        Command::new("docker")
            .args([
                "exec",
                &current,
                "/bin/busybox",
                "sh",
                "-c",
                "echo e2e-live-line > /proc/1/fd/1",
            ])
            .output()?;
        if c.find(Locator::XPath(live)).await.is_ok() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err("the written line never reached the live log view".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    live_charts::watch(c, &current, &workspace_target()).await?;
    // A broken release (an image that is not there and cannot be pulled) fails and says why;
    // the running instance is left alone.
    fill(c, "#settings-form", "image", "berth-demo/missing:1").await?;
    c.find(Locator::Css("#settings-form button[type=submit]"))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(
            "//pre[@id='status-message'][contains(., 'keeps running')]",
        ))
        .await?;
    let still = healthy_container(c, healthy, "after the broken release").await?;
    if still != current {
        return Err(format!("the running instance changed: {current} -> {still}").into());
    }
    let shot = c.screenshot().await?;
    std::fs::write(workspace_target().join("e2e-deployment.png"), shot)?;
    // The app at its generated hostname, through the ingress (Chromium resolves *.localhost
    // to the loopback address by itself).
    let app_url = c
        .find(Locator::Id("app-url"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    if !app_url.starts_with("http://hello-") || !app_url.contains(".localhost:") {
        return Err(format!("unexpected app address '{app_url}'").into());
    }
    c.goto(&app_url).await?;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//h1[text()='Hello from Berth']"))
        .await?;
    let shot = c.screenshot().await?;
    std::fs::write(workspace_target().join("e2e-app.png"), shot)?;
    Ok(())
}

/// The full container id of the healthy instance row (`healthy` is its XPath), waiting for
/// it: the table is re-rendered every 2 s. On failure saves `target/e2e-failure.png`.
async fn healthy_container(c: &Client, healthy: &str, when: &str) -> Result<String> {
    let cell = format!("{healthy}/td[contains(@class, 'container-id')]");
    match c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(&cell))
        .await
    {
        Ok(e) => Ok(e.attr("title").await?.unwrap_or_default()),
        Err(e) => {
            if let Ok(shot) = c.screenshot().await {
                let _ = std::fs::write(workspace_target().join("e2e-failure.png"), shot);
            }
            let mut rows = Vec::new();
            for row in c.find_all(Locator::Css("tr.instance")).await? {
                rows.push(row.text().await?);
            }
            Err(format!("no healthy instance row {when} ({e}); rows: {rows:?}").into())
        }
    }
}

/// Removes containers and networks carrying `label`.
fn remove_test_containers(label: &str) {
    let filter = format!("label={label}");
    for (list, remove) in [
        (vec!["ps", "-aq", "--filter", &filter], vec!["rm", "-f"]),
        (
            vec!["network", "ls", "-q", "--filter", &filter],
            vec!["network", "rm"],
        ),
        // Images built from git carry the operator's labels too.
        (vec!["images", "-q", "--filter", &filter], vec!["rmi", "-f"]),
    ] {
        let Ok(out) = Command::new("docker").args(&list).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(&remove).arg(id).output();
        }
    }
}

#[tokio::test]
async fn a_new_admin_signs_in_and_creates_a_project() {
    let data = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    // Containers this Berth creates carry berth.test=e2e, removed at the end.
    let config = data.path().join("berth.toml");
    std::fs::write(&config, "[docker_labels]\n\"berth.test\" = \"e2e\"\n").unwrap();
    let lab = acme_lab::AcmeLab::start();
    let mut env = lab.berth_env();
    env.push(("BERTH_CONFIG", config.display().to_string()));
    // The test's git server is on loopback.
    env.push(("BERTH_BUILD_ALLOW_PRIVATE_REPOSITORIES", "true".to_owned()));
    let (berth, url, password) = start_berth(data.path(), &env);
    let (_driver, driver_port) = start_chromedriver();
    let client = connect(driver_port, profile.path(), &lab.chromium_args()).await;
    let mut result = first_visit(&client, &url, &password).await;
    if result.is_ok() {
        result = acme_lab::custom_domain_over_https(&client, &lab).await;
    }
    if result.is_ok() {
        result = backups_flow::protect_and_restore(&client, &url).await;
    }
    if result.is_err() {
        // What the browser showed when the test failed.
        if let Ok(shot) = client.screenshot().await {
            let _ = std::fs::write(workspace_target().join("e2e-failure.png"), shot);
        }
    }
    // Close the browser before failing so that no Chromium is left running.
    let _ = client.close().await;
    drop(berth);
    remove_test_containers("berth.test=e2e");
    result.unwrap();
}

/// Starts `oidc-provider-mock` (PyPI) on a free port; `BERTH_OIDC_MOCK_PYTHON` names the
/// Python that has it.
fn start_oidc_provider() -> (Guard, String) {
    let python = std::env::var("BERTH_OIDC_MOCK_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = free_port();
    let child = Command::new(&python)
        .args([
            "-m",
            "oidc_provider_mock",
            "--port",
            &port.to_string(),
            "--require-nonce",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("oidc-provider-mock starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "oidc-provider-mock did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Guard(child), format!("http://127.0.0.1:{port}"))
}

async fn sso_visit(c: &Client, url: &str) -> Result<()> {
    c.goto(&format!("{url}/sign-in")).await?;
    let button = c.wait().for_element(Locator::Id("sso-sign-in")).await?;
    if !button.text().await?.contains("Test IdP") {
        return Err("SSO button does not name the provider".into());
    }
    button.click().await?;
    // The provider's own page: type the subject and authorize.
    let sub = c
        .wait()
        .for_element(Locator::Css("input[name=sub]"))
        .await?;
    sub.send_keys("erin").await?;
    c.find(Locator::XPath("//button[text()='Authorize']"))
        .await?
        .click()
        .await?;
    wait_for_url(c, "/projects").await?;
    let menu = c.wait().for_element(Locator::Id("user-menu")).await?;
    let who = menu.text().await?;
    if !who.contains("erin@example.com") {
        return Err(format!("signed in as someone else: {who}").into());
    }
    Ok(())
}

#[tokio::test]
async fn a_customer_signs_in_with_sso() {
    let (_provider, issuer) = start_oidc_provider();
    let claims =
        serde_json::json!({"email": "erin@example.com", "email_verified": true, "name": "Erin"});
    let put = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "-d",
            &claims.to_string(),
        ])
        .arg(format!("{issuer}/users/erin"))
        .status()
        .expect("curl");
    assert!(put.success(), "mock provider accepted the user");
    let data = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (_berth, url, _) = start_berth(
        data.path(),
        &[
            ("BERTH_OIDC__ISSUER_URL", issuer),
            ("BERTH_OIDC__CLIENT_ID", "berth".into()),
            ("BERTH_OIDC__CLIENT_SECRET", "berth-client-secret".into()),
            ("BERTH_OIDC__LABEL", "Test IdP".into()),
        ],
    );
    let (_driver, driver_port) = start_chromedriver();
    let client = connect(driver_port, profile.path(), &[]).await;
    let result = sso_visit(&client, &url).await;
    let _ = client.close().await;
    result.unwrap();
}
