//! Deployments when things go wrong, on the real Docker engine: bad input, images that are
//! missing, apps that exit, crash loops, removed and orphaned containers, project isolation,
//! health checks failing after the rollout. (`kill -9` of Berth mid-rollout: `deployment_kill9.rs`.)

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::json;

/// Runs `docker exec` and returns (success, stdout).
fn exec(container: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .arg("exec")
        .arg(container)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// `GET /` on `ip:8080` from inside `container` (busybox nc); the body, or `None` when the
/// connection fails.
fn http_get_from(container: &str, ip: &str) -> Option<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args([
            "exec",
            "-i",
            container,
            "/bin/busybox",
            "nc",
            "-w",
            "2",
            ip,
            "8080",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_running_release_stays() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (b, project) = project(&app, &admin, "dev@example.com", "faults").await;

    // Refused before anything is recorded.
    let mut spec = command_spec(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]);
    spec["env"] = json!([{"name": "BAD-NAME", "value": "x"}]);
    let e = create_raw(&b, &project, "web", 1, spec)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_env_name")
        .await;
    assert_eq!(e["field"], "env.0.name");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("letters, digits and '_'"),
        "{e}"
    );
    let mut spec = command_spec(&["x"]);
    spec["plan_id"] = json!("plan-nope");
    let e = create_raw(&b, &project, "web", 1, spec)
        .await
        .expect_error(StatusCode::NOT_FOUND, "plan_not_found")
        .await;
    assert_eq!(e["field"], "plan_id");
    create_raw(&b, &project, "Web_1", 1, command_spec(&["x"]))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_name")
        .await;
    create_raw(&b, &project, "web", 0, command_spec(&["x"]))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value")
        .await;
    let list = b
        .get(&format!("/api/v1/projects/{project}/deployments"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(list, json!([]), "nothing half-written");

    // A working deployment to compare against.
    let serve = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"];
    let mut spec = command_spec(&serve);
    spec["volumes"] = json!([{"name": "data", "mount_path": "/data"}]);
    let (web, job) = create(&b, &project, "web", 1, spec.clone()).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let address = healthy(&detail(&b, &web).await)[0]["address"]
        .as_str()
        .unwrap()
        .to_owned();

    // Name and volume taken.
    create_raw(&b, &project, "web", 1, command_spec(&serve))
        .await
        .expect_error(StatusCode::CONFLICT, "name_taken")
        .await;
    let e = create_raw(&b, &project, "other", 1, spec)
        .await
        .expect_error(StatusCode::CONFLICT, "volume_taken")
        .await;
    assert!(e["message"].as_str().unwrap().contains("'data'"), "{e}");

    // An image that is not there and cannot be pulled: the update fails, web keeps serving.
    let mut missing = command_spec(&serve);
    missing["image"] = json!("berth-test/not-built:1");
    let job = act(&b, &web, json!({"action": "update", "spec": missing})).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("'berth-test/not-built:1' is not on the node and cannot be pulled"),
        "{job:#}"
    );
    assert_eq!(fetch(&address).await.as_deref(), Some("berth test image"));

    // An app that exits at once: exit code and output in the job; web keeps serving.
    let job = act(&b, &web, json!({"action": "update", "spec": command_spec(&["/bin/busybox", "sh", "-c", "echo boom >&2; exit 3"])})).await;
    assert_eq!(job["status"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("exited with code 3") && error.contains("boom"),
        "{error}"
    );
    let d = detail(&b, &web).await;
    assert_eq!(d["deployment"]["status"], "running");
    assert_eq!(d["deployment"]["current_release"], 1);
    assert_eq!(fetch(&address).await.as_deref(), Some("berth test image"));

    // A plan no node can hold.
    let plan = admin.post_json("/api/v1/plans", &json!({"name": "huge", "cpu_millicores": 256000, "memory_bytes": 1u64 << 40, "storage_bytes": 0}))
        .await.expect_status(StatusCode::CREATED).await;
    let mut huge = command_spec(&serve);
    huge["plan_id"] = plan["id"].clone();
    let job = act(&b, &web, json!({"action": "update", "spec": huge})).await;
    assert_eq!(job["status"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("No node can take an instance of plan 'huge' (256.00 cores, 1048576 MiB)")
            && error.contains("node 'local'"),
        "{error}"
    );

    // Per region, resource-based placement refuses to overcommit: two instances of a plan
    // with 60% of the node's memory do not fit, and the error says what is free.
    let regions = admin
        .get("/api/v1/regions")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(
        regions,
        json!([{"name": "default", "placement_strategy": "least-loaded"}])
    );
    admin
        .http
        .put(admin.url("/api/v1/regions/default/placement-strategy"))
        .header("origin", &admin.base)
        .json(&json!({"placement_strategy": "fastest"}))
        .send()
        .await
        .unwrap()
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        .await;
    b.http
        .put(b.url("/api/v1/regions/default/placement-strategy"))
        .header("origin", &b.base)
        .json(&json!({"placement_strategy": "round-robin"}))
        .send()
        .await
        .unwrap()
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    let set = admin
        .http
        .put(admin.url("/api/v1/regions/default/placement-strategy"))
        .header("origin", &admin.base)
        .json(&json!({"placement_strategy": "resource-based"}))
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(set["placement_strategy"], "resource-based");
    let nodes = admin
        .get("/api/v1/nodes")
        .await
        .expect_status(StatusCode::OK)
        .await;
    let memory = nodes[0]["memory_bytes"].as_i64().unwrap() / 10 * 6 / (1 << 20) * (1 << 20);
    let plan = admin
        .post_json("/api/v1/plans", &json!({"name": "most", "cpu_millicores": 100, "memory_bytes": memory, "storage_bytes": 0}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let mut pair = command_spec(&serve);
    pair["plan_id"] = plan["id"].clone();
    let (_, job) = create(&b, &project, "pair", 2, pair).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("No node can take an instance of plan 'most'") && error.contains("MiB free"),
        "{error}"
    );

    // A first release that never gets healthy leaves the deployment failed, with the reason.
    let (never, job) = create(
        &b,
        &project,
        "never",
        1,
        command_spec(&["/bin/busybox", "sleep", "600"]),
    )
    .await;
    assert_eq!(job["status"], "failed");
    let d = detail(&b, &never).await;
    assert_eq!(d["deployment"]["status"], "failed");
    assert!(
        d["deployment"]["status_message"]
            .as_str()
            .unwrap()
            .contains("nothing accepts connections on port 8080"),
        "{d:#}"
    );
    assert!(containers_with(&format!("berth.deployment={never}")).is_empty());
    assert_eq!(fetch(&address).await.as_deref(), Some("berth test image"));
    app.stop().await;
}

/// The health monitor keeps probing after the rollout: an instance whose HTTP check starts
/// failing is shown unhealthy with the reason (and the deployment degraded), and healthy
/// again once the check passes, without a restart.
#[tokio::test]
async fn an_instance_that_stops_answering_its_check_is_shown_unhealthy_until_it_recovers() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (b, p) = project(&app, &admin, "probe@example.com", "probe").await;
    let (id, job) = create(&b, &p, "web", 1, greeting_spec("up")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = detail(&b, &id).await;
    let container = healthy(&d)[0]["container_id"].as_str().unwrap().to_owned();

    // The page the check asks for disappears: GET / now answers 404.
    assert!(exec(&container, &["/bin/busybox", "rm", "/tmp/index.html"]).0);
    let d = wait_for(&b, &id, "the instance to be seen unhealthy", |d| {
        d["instances"][0]["health"] == "unhealthy" && d["deployment"]["status"] == "degraded"
    })
    .await;
    let note = d["deployment"]["status_message"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("answered 404"), "{d:#}");
    assert_eq!(d["instances"][0]["status"], "running");

    // It comes back: healthy again, same container, never restarted.
    assert!(
        exec(
            &container,
            &["/bin/busybox", "sh", "-c", "echo up > /tmp/index.html"]
        )
        .0
    );
    let d = wait_for(&b, &id, "the instance to be healthy again", |d| {
        d["instances"][0]["health"] == "healthy" && d["deployment"]["status"] == "running"
    })
    .await;
    assert_eq!(d["instances"][0]["health"], "healthy");
    assert_eq!(d["instances"][0]["container_id"], container.as_str());
    assert_eq!(d["instances"][0]["restart_count"], 0, "{d:#}");
    app.stop().await;
}

#[tokio::test]
async fn projects_are_isolated_and_reach_their_own_deployments_by_name() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (a, pa) = project(&app, &admin, "a@example.com", "alpha").await;
    let (b, pb) = project(&app, &admin, "b@example.com", "beta").await;
    let serve = command_spec(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]);
    let (web, _) = create(&a, &pa, "web", 1, serve.clone()).await;
    let (client, _) = create(&a, &pa, "client", 1, serve.clone()).await;
    let (other, _) = create(&b, &pb, "other", 1, serve).await;
    let web_ip = healthy(&detail(&a, &web).await)[0]["address"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let client_c = healthy(&detail(&a, &client).await)[0]["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_c = healthy(&detail(&b, &other).await)[0]["container_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Static busybox's wget crashes on glibc's resolver in a scratch image (no NSS), so names
    // are looked up with busybox's own nslookup against Docker's embedded DNS, and the page
    // is fetched with nc.
    let resolve = |c: &str, name: &str| {
        let (ok, out) = exec(c, &["/bin/busybox", "nslookup", name]);
        ok.then(|| {
            out.lines()
                .filter_map(|l| l.strip_prefix("Address:"))
                .map(str::trim)
                .find(|a| !a.contains(':') && !a.starts_with("127."))
                .map(str::to_owned)
        })
        .flatten()
    };
    let resolved = resolve(&client_c, "web").expect("web resolves inside its project");
    assert_eq!(resolved, web_ip, "the name leads to the web instance");
    assert_eq!(
        http_get_from(&client_c, &resolved).as_deref(),
        Some("berth test image")
    );
    assert_eq!(
        resolve(&other_c, "web"),
        None,
        "another project's deployment name must not resolve"
    );
    assert_eq!(
        http_get_from(&other_c, &web_ip),
        None,
        "another project's instance must not be reachable by address"
    );
    let networks = docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label=berth.project={pa}"),
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(networks, format!("berth-{pa}"));
    app.stop().await;
}

#[tokio::test]
async fn the_reconciler_recreates_removes_orphans_and_shows_crash_loops() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (b, project) = project(&app, &admin, "ops@example.com", "ops").await;
    let (web, _) = create(
        &b,
        &project,
        "web",
        1,
        command_spec(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]),
    )
    .await;
    let first = healthy(&detail(&b, &web).await)[0]["container_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A removed container is created again.
    docker(&["rm", "-f", &first]);
    let d = wait_for(&b, &web, "a new container", |d| {
        healthy(d)
            .first()
            .is_some_and(|i| i["container_id"].as_str() != Some(first.as_str()))
    })
    .await;
    assert_eq!(
        fetch(healthy(&d)[0]["address"].as_str().unwrap())
            .await
            .as_deref(),
        Some("berth test image")
    );
    assert_eq!(containers_with(&format!("berth.deployment={web}")).len(), 1);

    // A container with this installation's label but no record is removed; another
    // installation's is left alone.
    let orphan = docker(&[
        "run",
        "-d",
        "--label",
        &format!("berth.installation={}", app.installation),
        "--label",
        "berth.test=1",
        TEST_IMAGE,
    ]);
    let foreign = docker(&[
        "run",
        "-d",
        "--label",
        "berth.installation=someone-else",
        "--label",
        "berth.test=1",
        TEST_IMAGE,
    ]);
    // (The periodic resync may get there first; either way the reconciler removed it.)
    let report = app.reconciler.resync().await.unwrap();
    assert!(report.docker_calls >= 1, "{report:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::process::Command::new("docker")
        .args(["inspect", &orphan])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "orphan not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        docker(&["inspect", "-f", "{{.State.Running}}", &foreign]) == "true",
        "foreign container untouched"
    );
    docker(&["rm", "-f", &foreign]);

    // An app that serves, then exits 3 after two seconds, again and again: crash loop.
    let flaky = command_spec(&[
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox httpd -p 8080 -h /www; sleep 2; echo giving up; exit 3",
    ]);
    let (id, job) = create(&b, &project, "flaky", 1, flaky).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = wait_for(&b, &id, "a crash loop", |d| {
        d["deployment"]["status"] == "crash_loop"
    })
    .await;
    let message = d["deployment"]["status_message"].as_str().unwrap();
    assert!(
        message.contains("exit code 3") && message.contains("giving up"),
        "{message}"
    );
    assert!(
        d["instances"][0]["restart_count"].as_u64().unwrap() >= 3,
        "{d:#}"
    );
    app.stop().await;
}
