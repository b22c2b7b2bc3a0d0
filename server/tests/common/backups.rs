//! Helpers for backup tests: running a command in an instance, taking and restoring
//! backups through the API and waiting for them, and stock `restic`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{deploy::*, *};

/// Runs `script` with the test image's busybox shell in `container`; its standard output.
pub fn exec(container: &str, script: &str) -> String {
    docker(&["exec", container, "/bin/busybox", "sh", "-c", script])
}

/// The container of the deployment's one healthy instance (waits for it).
pub async fn instance(b: &Browser, id: &str) -> String {
    let d = wait_for(b, id, "a healthy instance", |d| healthy(d).len() == 1).await;
    healthy(&d)[0]["container_id"].as_str().unwrap().to_owned()
}

/// Polls `path` (a backup or restore) until it succeeded or failed.
pub async fn wait_until_final(b: &Browser, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = b.get(path).await.expect_status(StatusCode::OK).await;
        if v["status"] == "succeeded" || v["status"] == "failed" {
            return v;
        }
        assert!(Instant::now() < deadline, "never finished: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes a backup of `deployment` through the API and waits for its end.
pub async fn backup(b: &Browser, deployment: &str) -> Value {
    let queued = b
        .post_json(
            &format!("/api/v1/deployments/{deployment}/backups"),
            &json!({}),
        )
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    assert_eq!(queued["status"], "queued", "{queued:#}");
    wait_until_final(
        b,
        &format!("/api/v1/backups/{}", queued["id"].as_str().unwrap()),
    )
    .await
}

/// Restores `backup_id` through the API and waits for its end.
pub async fn restore(b: &Browser, backup_id: &str) -> Value {
    let queued = b
        .post_json(&format!("/api/v1/backups/{backup_id}/restore"), &json!({}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    wait_until_final(
        b,
        &format!("/api/v1/restores/{}", queued["id"].as_str().unwrap()),
    )
    .await
}

/// Runs stock `restic` on the repository `repo`.
pub fn restic(repo: &str, password: &str, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(["--no-cache", "-r", repo])
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .output()
        .expect("restic runs (Debian package restic; scripts/install-deps.sh installs it)")
}

/// The project's repository location and password, as its owner reveals them.
pub async fn reveal(owner: &Browser, project_id: &str) -> (String, String) {
    let repo = owner
        .post_json(
            &format!("/api/v1/projects/{project_id}/backup-repository/reveal"),
            &json!({}),
        )
        .await
        .expect_status(StatusCode::OK)
        .await;
    (
        repo["location"].as_str().unwrap().to_owned(),
        repo["password"].as_str().unwrap().to_owned(),
    )
}

/// Runs stock `restic` on the repository `repo` with extra environment (S3 keys).
pub fn restic_with(
    repo: &str,
    password: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    Command::new("restic")
        .args(["--no-cache", "-r", repo])
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .envs(env.iter().copied())
        .output()
        .expect("restic runs (Debian package restic; scripts/install-deps.sh installs it)")
}

/// A real S3-compatible server: moto in server mode (PyPI `moto[server]`, installed by
/// `scripts/install-deps.sh --test` into a venv named by `BERTH_MOTO_SERVER`) on loopback.
/// moto accepts any access key; it is killed when dropped.
pub struct S3Server {
    pub endpoint: String,
    _child: super::dns::KillOnDrop,
}

impl S3Server {
    pub async fn start() -> Self {
        let program = std::env::var("BERTH_MOTO_SERVER").unwrap_or_else(|_| {
            format!(
                "{}/.cache/berth/moto-server/bin/moto_server",
                std::env::var("HOME").unwrap()
            )
        });
        let port = super::dns::free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} starts (scripts/install-deps.sh --test installs moto): {e}")
            });
        let server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: super::dns::KillOnDrop(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&server.endpoint).await.is_err() {
            assert!(Instant::now() < deadline, "moto never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// Creates `bucket` (moto takes an unsigned request).
    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{r:?}");
    }
}

/// The names of the project's Docker volumes, one a line.
pub fn project_volumes(project_id: &str) -> String {
    docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=berth.project={project_id}"),
    ])
}

/// `GET /metrics` with the bearer `token`; the Prometheus text.
pub async fn metrics_text(app: &TestApp, token: &str) -> String {
    reqwest::Client::new()
        .get(app.client().url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
