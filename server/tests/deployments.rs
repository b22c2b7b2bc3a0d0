//! Deployments on the machine's real Docker engine: rollout, limits, secrets, the reconciler
//! bringing a killed instance back, a broken release leaving the old one serving, rollback,
//! scaling, stop/start, logs, delete. The image is built locally (`FROM scratch` + busybox).

#[macro_use]
mod common;

use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn lifecycle(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;

    // Deploy: the job records its steps and succeeds; one healthy instance on node `local`.
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("release one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let steps: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for step in [
        "placement",
        "image",
        "start",
        "health",
        "switch",
        "stop old",
    ] {
        assert!(steps.contains(&step), "step {step} in {steps:?}");
    }
    let d = detail(&owner, &id).await;
    assert_eq!(d["deployment"]["status"], "running", "{d:#}");
    let inst = healthy(&d);
    assert_eq!(inst.len(), 1, "{d:#}");
    assert_eq!(inst[0]["node_name"], "local");
    let container = inst[0]["container_id"].as_str().unwrap().to_owned();
    let address = inst[0]["address"].as_str().unwrap().to_owned();
    assert!(address.ends_with(":8080"), "{address}");
    assert_eq!(fetch(&address).await.as_deref(), Some("release one"));
    assert!(d["releases"][0]["image_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // The node counters follow what was placed: one small instance.
    let nodes = admin
        .get("/api/v1/nodes")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(nodes[0]["instances"], 1, "{nodes:#}");
    assert_eq!(nodes[0]["cpu_allocated_millicores"], 250);
    assert_eq!(nodes[0]["memory_allocated_bytes"], 268435456);

    // The secret reached the container, but never the API nor the database in clear.
    let text = owner
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("s3cret-value"), "secret leaked to the API");
    let api_key = d["deployment"]["spec"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "API_KEY")
        .unwrap()
        .clone();
    assert_eq!(api_key["value"], Value::Null);
    let stored = app.store.deployments().releases(&id).await.unwrap();
    assert!(stored
        .iter()
        .all(|r| !r.spec.contains("s3cret-value") && r.spec.contains("enc:v1:")));
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &container]);
    assert!(env.contains("API_KEY=s3cret-value"), "{env}");

    // Limits and confinement from the plan (small: 0.25 cores, 256 MiB).
    let host = docker(&["inspect", "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{json .HostConfig.SecurityOpt}} {{json .HostConfig.CapDrop}} {{json .HostConfig.Binds}} {{json .Mounts}}",
        &container]);
    let expected_prefix =
        format!("250000000 268435456 512 false berth-{project_id} [\"no-new-privileges:true\"]");
    assert!(host.starts_with(&expected_prefix), "{host}");
    assert!(
        host.contains("NET_RAW") && host.contains(" null "),
        "{host}"
    );
    assert!(
        host.contains("\"Type\":\"volume\"") && !host.contains("docker.sock"),
        "{host}"
    );
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &container]);
    assert!(
        labels.contains(&format!("\"berth.deployment\":\"{id}\""))
            && labels.contains("\"berth.test\":\"1\""),
        "{labels}"
    );

    // Logs: httpd's output is there (JSON and download).
    let logs = owner
        .get(&format!("/api/v1/deployments/{id}/logs?tail=50"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(logs.as_array().is_some(), "{logs}");
    let download = owner
        .get(&format!("/api/v1/deployments/{id}/logs?format=text"))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));

    // docker kill: the reconciler starts it again and it serves.
    docker(&["kill", &container]);
    let d = wait_for(&owner, &id, "the killed instance to be back", |d| {
        healthy(d)
            .first()
            .is_some_and(|i| i["restart_count"].as_u64() >= Some(1))
    })
    .await;
    let address = healthy(&d)[0]["address"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&address).await.as_deref(), Some("release one"));
    assert_eq!(d["instances"].as_array().unwrap().len(), 1);

    // A release that never listens fails; the old instance keeps serving.
    let mut broken = greeting_spec("never");
    broken["command"] = json!(["/bin/busybox", "sleep", "3600"]);
    let job = act(&owner, &id, json!({"action": "update", "spec": broken})).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("did not become healthy"),
        "{job:#}"
    );
    let d = detail(&owner, &id).await;
    assert_eq!(d["releases"][0]["status"], "failed");
    assert_eq!(d["releases"][0]["number"], 2);
    assert!(
        d["releases"][0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("nothing accepts connections on port 8080"),
        "{d:#}"
    );
    assert_eq!(d["deployment"]["status"], "running");
    assert!(
        d["deployment"]["status_message"]
            .as_str()
            .unwrap()
            .contains("Release #2 failed"),
        "{d:#}"
    );
    assert_eq!(d["deployment"]["current_release"], 1);
    assert_eq!(fetch(&address).await.as_deref(), Some("release one"));
    let r2 = d["releases"][0]["id"].as_str().unwrap();
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.release={r2}")
        ]),
        "",
        "failed release cleaned up"
    );

    // A good update replaces the instance; the secret (sent without a value) is kept.
    let mut two = greeting_spec("release two");
    two["env"][1]["value"] = Value::Null;
    let job = act(&owner, &id, json!({"action": "update", "spec": two})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&owner, &id).await;
    let inst = healthy(&d);
    assert_eq!(d["deployment"]["current_release"], 3);
    assert_eq!(
        fetch(inst[0]["address"].as_str().unwrap()).await.as_deref(),
        Some("release two")
    );
    assert_eq!(
        d["instances"].as_array().unwrap().len(),
        1,
        "old release stopped: {d:#}"
    );
    let env = docker(&[
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        inst[0]["container_id"].as_str().unwrap(),
    ]);
    assert!(env.contains("API_KEY=s3cret-value"), "{env}");

    // Rollback to #1: image and env of release 1.
    let r1 = d["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["number"] == 1)
        .unwrap()["id"]
        .clone();
    let job = act(&owner, &id, json!({"action": "rollback", "release_id": r1})).await;
    assert_eq!(job["kind"], "rollback");
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&owner, &id).await;
    assert_eq!(d["releases"][0]["cause"], "rollback to #1");
    assert_eq!(
        fetch(healthy(&d)[0]["address"].as_str().unwrap())
            .await
            .as_deref(),
        Some("release one")
    );

    // Scale to 2, stop, start.
    let job = act(&owner, &id, json!({"action": "scale", "replicas": 2})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&owner, &id).await;
    assert_eq!(healthy(&d).len(), 2, "{d:#}");
    let job = act(&owner, &id, json!({"action": "stop"})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&owner, &id).await;
    assert_eq!(d["deployment"]["status"], "stopped");
    assert!(d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "stopped"));
    let job = act(&owner, &id, json!({"action": "start"})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = wait_for(&owner, &id, "running again", |d| {
        d["deployment"]["status"] == "running"
    })
    .await;
    assert_eq!(healthy(&d).len(), 2);
    let job = act(&owner, &id, json!({"action": "restart"})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let restarts = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "restart")
        .count();
    assert_eq!(restarts, 2, "one instance after the other: {job:#}");
    assert_eq!(healthy(&detail(&owner, &id).await).len(), 2);

    // A stranger sees nothing; the owner cannot delete the project while it has deployments.
    let stranger = app.customer(&admin, "stranger@example.com").await;
    stranger
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
        .await;
    stranger
        .post_json(
            &format!("/api/v1/deployments/{id}/actions"),
            &json!({"action": "stop"}),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
        .await;
    owner
        .delete(&format!("/api/v1/projects/{project_id}?confirm_name=shop"))
        .await
        .expect_error(StatusCode::CONFLICT, "project_has_deployments")
        .await;

    // Delete with volumes: nothing of it is left on the engine.
    let job = owner
        .delete(&format!("/api/v1/deployments/{id}?remove_volumes=true"))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let job = wait_job(&owner, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.deployment={id}")
        ]),
        ""
    );
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=berth-{project_id}-data")
        ]),
        ""
    );
    owner
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
        .await;
    app.stop().await;
}

on_both_databases!(lifecycle);

/// The portal: the "New deployment" form posted as a browser without JavaScript would, the
/// project page listing it, the deployment page with node, container id and health.
#[tokio::test]
async fn portal_pages_create_and_show_a_deployment() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (b, project_id) = project(&app, &admin, "web@example.com", "site").await;
    let form = [
        ("project_id", project_id.as_str()),
        ("name", "front"),
        ("replicas", "1"),
        ("image", TEST_IMAGE),
        ("http_port", "8080"),
        ("plan_id", "plan-small"),
        ("env", "MODE=portal"),
        ("secret_env", "TOKEN=hidden-token"),
        ("volumes", ""),
        ("command", "/bin/busybox\nhttpd\n-f\n-p\n8080\n-h\n/www"),
        ("health_path", "/"),
        ("restart_policy", "always"),
    ];
    let r = b
        .http
        .post(b.url("/rpc/create_deployment"))
        .header("origin", &b.base)
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::OK)
        .await;
    let id = r["deployment"]["id"].as_str().unwrap().to_owned();
    wait_job(&b, r["jobs"][0]["id"].as_str().unwrap()).await;
    let d = wait_for(&b, &id, "healthy", |d| healthy(d).len() == 1).await;
    let container = healthy(&d)[0]["container_id"].as_str().unwrap().to_owned();

    // A bad line is reported on its field, and nothing is created.
    let mut bad = form;
    bad[1] = ("name", "second");
    bad[6] = ("env", "NOT A PAIR");
    let e = b
        .http
        .post(b.url("/rpc/create_deployment"))
        .header("origin", &b.base)
        .header("accept", "application/json")
        .form(&bad)
        .send()
        .await
        .unwrap()
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value")
        .await;
    assert_eq!(e["field"], "env");
    bad[6] = ("env", "1BAD=x");
    let e = b
        .http
        .post(b.url("/rpc/create_deployment"))
        .header("origin", &b.base)
        .header("accept", "application/json")
        .form(&bad)
        .send()
        .await
        .unwrap()
        .expect_error(StatusCode::BAD_REQUEST, "invalid_env_name")
        .await;
    assert_eq!(
        e["field"], "env",
        "mapped from env.0.name to the form field"
    );

    let (status, _, page) = b.html(&format!("/projects/{project_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("href=\"/deployments/{id}\"")) && page.contains(">front</a>"),
        "{page}"
    );
    assert!(
        page.contains("status-badge") && page.contains(">running</span>"),
        "{page}"
    );
    assert!(page.contains("id=\"new-deployment-form\""), "{page}");

    let (status, _, page) = b.html(&format!("/deployments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<td class=\"node\">local</td>"), "{page}");
    assert!(page.contains(&container[..12]), "short container id shown");
    assert!(page.contains("<td class=\"health\">healthy</td>"), "{page}");
    assert!(
        page.contains("MODE=portal") && page.contains("TOKEN"),
        "settings prefilled"
    );
    assert!(!page.contains("hidden-token"), "secret never sent back");
    assert!(
        page.contains("Roll back") || page.contains("id=\"releases\""),
        "{page}"
    );

    // Strangers get the not-found answer on the page too.
    let stranger = app.customer(&admin, "nosy@example.com").await;
    let (_, _, page) = stranger.html(&format!("/deployments/{id}")).await;
    assert!(
        page.contains("No deployment with this id is visible to you."),
        "{page}"
    );
    app.stop().await;
}
