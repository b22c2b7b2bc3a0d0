//! Helpers of the build tests: a Dockerfile on the test image, deliveries signed as each
//! provider signs them, and waiting for a build to end or a release to serve.

use std::time::{Duration, Instant};

use app::model::GitProvider;
use berth::webhooks::sign;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{deploy::*, *};

/// A Dockerfile on the test image that serves `page` and records the build argument.
pub fn dockerfile(extra: &str) -> String {
    format!(
        "FROM {TEST_IMAGE}\nARG GREETING\nCOPY site /www/\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo arg=$GREETING; echo $GREETING > /www/arg.txt\"]\n{extra}"
    )
}

pub const ARG_VALUE: &str = "hello-from-a-build-arg";

/// Posts a delivery as `provider` signs it (with `secret`; `None` sends no signature).
pub async fn deliver(
    app: &TestApp,
    provider: GitProvider,
    webhook_id: &str,
    secret: Option<&str>,
    event: &str,
    delivery: &str,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!(
            "{}/webhooks/{}/{webhook_id}",
            app.base,
            provider.as_str()
        ))
        .header("content-type", "application/json")
        .body(body.to_owned());
    let (event_header, delivery_header) = match provider {
        GitProvider::Github => ("X-GitHub-Event", "X-GitHub-Delivery"),
        GitProvider::Gitlab => ("X-Gitlab-Event", "X-Gitlab-Event-UUID"),
        GitProvider::Gitea => ("X-Gitea-Event", "X-Gitea-Delivery"),
        GitProvider::Bitbucket => ("X-Event-Key", "X-Request-UUID"),
    };
    req = req
        .header(event_header, event)
        .header(delivery_header, delivery);
    if let Some(secret) = secret {
        let (name, value) = sign(provider, secret, body.as_bytes());
        req = req.header(name, value);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub fn push_body(branch: &str, commit: &str) -> String {
    json!({"ref": format!("refs/heads/{branch}"), "after": commit}).to_string()
}

/// Polls a build until it ends.
pub async fn wait_build(b: &Browser, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = b
            .get(&format!("/api/v1/builds/{id}"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        let status = d["build"]["status"].as_str().unwrap().to_owned();
        if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
            return d;
        }
        assert!(Instant::now() < deadline, "build never ended: {d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the deployment's healthy instance serves `want` at `path`.
pub async fn wait_serving(b: &Browser, id: &str, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let d = detail(b, id).await;
        for inst in healthy(&d) {
            let address = inst["address"].as_str().unwrap();
            let page = reqwest::get(format!("http://{address}{path}")).await;
            if let Ok(r) = page {
                if r.text().await.unwrap_or_default().trim() == want {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "never served {want:?}: {d:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Commits, on `main`, the Dockerfile of [`dockerfile`] and a site serving `page`, with a file
/// unique to this run (it keeps the engine's layer cache from skipping the RUN step); returns
/// the commit.
pub fn commit_site(repo: &super::git::Repo, page: &str) -> String {
    repo.commit(
        "main",
        &[
            ("Dockerfile", &dockerfile("")),
            ("site/index.html", page),
            ("site/run.txt", &berth::store::new_id()),
        ],
        "first",
    )
}

/// A customer's project with a deployment of the test image serving its page; returns the
/// customer and the deployment's id once it serves.
pub async fn site_deployment(app: &TestApp, admin: &Browser) -> (Browser, String) {
    let (owner, project_id) = project(app, admin, "dev@example.com", "apps").await;
    let (id, job) = create(
        &owner,
        &project_id,
        "site",
        1,
        command_spec(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    wait_serving(&owner, &id, "/", "berth test image").await;
    (owner, id)
}
