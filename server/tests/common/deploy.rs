//! Helpers for deployment tests: specs for the test image, job polling, instance fetches.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

/// A spec serving `$GREETING` at `/` with busybox httpd on 8080, healthy when `/` answers.
pub fn greeting_spec(greeting: &str) -> Value {
    json!({
        "image": TEST_IMAGE,
        "http_port": 8080,
        "plan_id": "plan-small",
        "env": [
            {"name": "GREETING", "value": greeting},
            {"name": "API_KEY", "value": "s3cret-value", "secret": true},
        ],
        "command": ["/bin/busybox", "sh", "-c",
            "echo \"$GREETING\" > /tmp/index.html && exec /bin/busybox httpd -f -p 8080 -h /tmp"],
        "volumes": [{"name": "data", "mount_path": "/data"}],
        "health_check": {"probe": {"kind": "http", "path": "/"},
            "interval_ms": 200, "timeout_ms": 500, "retries": 5, "start_period_ms": 1000},
    })
}

/// Polls a job until it ends; returns it.
pub async fn wait_job(b: &Browser, job_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let job = b
            .get(&format!("/api/v1/jobs/{job_id}"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn detail(b: &Browser, id: &str) -> Value {
    b.get(&format!("/api/v1/deployments/{id}"))
        .await
        .expect_status(StatusCode::OK)
        .await
}

pub async fn act(b: &Browser, id: &str, action: Value) -> Value {
    let job = b
        .post_json(&format!("/api/v1/deployments/{id}/actions"), &action)
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    wait_job(b, job["id"].as_str().unwrap()).await
}

/// GET http://address/ straight at an instance; `None` when it does not answer.
pub async fn fetch(address: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .get(format!("http://{address}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.text().await.ok().map(|t| t.trim().to_owned())
}

/// The healthy instances of the current release.
pub fn healthy(d: &Value) -> Vec<Value> {
    let current = d["deployment"]["current_release"].clone();
    d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["release_number"] == current && i["health"] == "healthy" && i["status"] == "running"
        })
        .cloned()
        .collect()
}

pub async fn wait_for(b: &Browser, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = detail(b, id).await;
        if ok(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn project(app: &TestApp, admin: &Browser, owner: &str, name: &str) -> (Browser, String) {
    let b = app.customer(admin, owner).await;
    let p = b
        .post_json("/api/v1/projects", &json!({"name": name}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    (b, p["id"].as_str().unwrap().to_owned())
}

pub async fn create(
    b: &Browser,
    project: &str,
    name: &str,
    replicas: u32,
    spec: Value,
) -> (String, Value) {
    let d = b
        .post_json(
            &format!("/api/v1/projects/{project}/deployments"),
            &json!({"name": name, "replicas": replicas, "spec": spec}),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let id = d["deployment"]["id"].as_str().unwrap().to_owned();
    let job = wait_job(b, d["jobs"][0]["id"].as_str().unwrap()).await;
    (id, job)
}

/// Posts a new deployment and returns the raw response (for error cases).
pub async fn create_raw(
    b: &Browser,
    project: &str,
    name: &str,
    replicas: u32,
    spec: Value,
) -> reqwest::Response {
    b.post_json(
        &format!("/api/v1/projects/{project}/deployments"),
        &json!({"name": name, "replicas": replicas, "spec": spec}),
    )
    .await
}

/// A spec for the test image with `command` and a fast TCP health check on 8080.
pub fn command_spec(command: &[&str]) -> Value {
    json!({
        "image": TEST_IMAGE,
        "http_port": 8080,
        "plan_id": "plan-small",
        "command": command,
        "health_check": {"probe": {"kind": "http", "path": "/"},
            "interval_ms": 200, "timeout_ms": 500, "retries": 3, "start_period_ms": 1000},
    })
}

/// The ids of containers carrying `label` (`key=value`), running or not.
pub fn containers_with(label: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}
