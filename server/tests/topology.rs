//! Topology and plans on the real Docker engine of this machine, on both databases.

#[macro_use]
mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// NCPU and MemTotal as the Docker CLI reports them: an independent reading of the same
/// engine that Berth registered.
fn docker_info() -> (i64, i64) {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.NCPU}} {{.MemTotal}}"])
        .output()
        .expect("docker CLI");
    assert!(out.status.success(), "docker info: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace().map(|p| p.parse::<i64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

async fn local_engine_registers_as_a_node(db: Db) {
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let nodes = admin
        .get("/api/v1/nodes")
        .await
        .expect_status(StatusCode::OK)
        .await;
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    let (cpus, memory) = docker_info();
    assert_eq!(node["name"], "local");
    assert_eq!(node["region"], "default");
    assert_eq!(node["availability_zone"], "default");
    assert_eq!(node["endpoint"], "unix:///var/run/docker.sock");
    assert_eq!(node["cpu_millicores"], cpus * 1000);
    assert_eq!(node["memory_bytes"], memory);
    assert_eq!(node["state"], "active");
    assert!(node["engine_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    let id = node["id"].as_str().unwrap().to_owned();
    let (_, _, page) = admin.html("/admin/nodes").await;
    assert!(
        page.contains(r#"<span class="font-medium">local</span>"#),
        "node listed: {page}"
    );
    assert!(
        page.contains(">Drain</button>") && page.contains(r#"value="medium""#),
        "{page}"
    );

    // A drain is kept across restarts; registration refreshes capacity only.
    let drained = admin
        .http
        .put(admin.url(&format!("/api/v1/nodes/{id}/state")))
        .header("origin", &admin.base)
        .json(&json!({"state": "draining"}))
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(drained["state"], "draining");
    let bad = admin
        .http
        .put(admin.url(&format!("/api/v1/nodes/{id}/state")))
        .header("origin", &admin.base)
        .json(&json!({"state": "sleeping"}))
        .send()
        .await
        .unwrap();
    let err = bad
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("draining"),
        "accepted values named: {err}"
    );
    app.stop().await;

    let app = TestApp::start(test_config(&tdb)).await;
    let admin = Browser {
        http: admin.http,
        base: app.base.clone(),
    };
    let nodes = admin.get("/api/v1/nodes").await.expect_ok().await;
    assert_eq!(
        nodes.as_array().unwrap().len(),
        1,
        "re-registration does not duplicate"
    );
    assert_eq!(nodes[0]["state"], "draining");
    app.stop().await;
}

async fn plans_are_seeded_and_managed_by_admins(db: Db) {
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let ann = app.customer(&admin, "ann@example.com").await;

    let plans = ann
        .get("/api/v1/plans")
        .await
        .expect_status(StatusCode::OK)
        .await;
    let names: Vec<_> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small", "medium", "large"]);
    assert_eq!(plans[0]["cpu_millicores"], 250);
    assert_eq!(plans[0]["memory_bytes"], 256 << 20);

    let spec = json!({"name": "xl", "cpu_millicores": 4000, "memory_bytes": 8_i64 << 30, "storage_bytes": 80_i64 << 30});
    ann.post_json("/api/v1/plans", &spec)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    ann.get("/api/v1/nodes")
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    let xl = admin
        .post_json("/api/v1/plans", &spec)
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    admin
        .post_json("/api/v1/plans", &spec)
        .await
        .expect_error(StatusCode::CONFLICT, "name_taken")
        .await;
    let err = admin
        .post_json("/api/v1/plans", &json!({"name": "tiny", "cpu_millicores": 100, "memory_bytes": 1024, "storage_bytes": 0}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "out_of_range")
        .await;
    assert_eq!(err["field"], "memory_bytes");
    assert!(err["message"].as_str().unwrap().contains("6 MiB"), "{err}");

    let updated = admin
        .http
        .put(admin.url(&format!("/api/v1/plans/{}", xl["id"].as_str().unwrap())))
        .header("origin", &admin.base)
        .json(&json!({"name": "xl", "cpu_millicores": 6000, "memory_bytes": 8_i64 << 30, "storage_bytes": 80_i64 << 30}))
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(updated["cpu_millicores"], 6000);
    let plans = ann.get("/api/v1/plans").await.expect_ok().await;
    assert_eq!(plans.as_array().unwrap().len(), 4);

    // The portal's form takes display units and names its own fields in errors.
    let err = admin
        .rpc(
            "create_plan",
            &[
                ("name", "form"),
                ("cpu_cores", "0.5"),
                ("memory_mib", "1"),
                ("storage_gib", "1"),
            ],
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "out_of_range")
        .await;
    assert_eq!(err["field"], "memory_mib");
    let err = admin
        .rpc(
            "create_plan",
            &[
                ("name", "form"),
                ("cpu_cores", "lots"),
                ("memory_mib", "512"),
                ("storage_gib", "1"),
            ],
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "not_a_number")
        .await;
    assert_eq!(err["field"], "cpu_cores");
    let made = admin
        .rpc(
            "create_plan",
            &[
                ("name", "form"),
                ("cpu_cores", "0.5"),
                ("memory_mib", "512"),
                ("storage_gib", "1.5"),
            ],
        )
        .await
        .expect_ok()
        .await;
    assert_eq!(made["cpu_millicores"], 500);
    assert_eq!(made["memory_bytes"], 512_i64 << 20);
    assert_eq!(made["storage_bytes"], 1536_i64 << 20);
    // The console's edit form: same units, same field names in errors.
    let id = made["id"].as_str().unwrap();
    let err = admin
        .rpc(
            "edit_plan",
            &[
                ("id", id),
                ("name", "form"),
                ("cpu_cores", "0.5"),
                ("memory_mib", "0"),
                ("storage_gib", "1"),
            ],
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "out_of_range")
        .await;
    assert_eq!(err["field"], "memory_mib");
    let edited = admin
        .rpc(
            "edit_plan",
            &[
                ("id", id),
                ("name", "form-2"),
                ("cpu_cores", "1.5"),
                ("memory_mib", "768"),
                ("storage_gib", "2"),
            ],
        )
        .await
        .expect_ok()
        .await;
    assert_eq!(edited["name"], "form-2");
    assert_eq!(edited["cpu_millicores"], 1500);
    assert_eq!(edited["memory_bytes"], 768_i64 << 20);
    let (_, _, page) = admin.html("/admin/nodes").await;
    assert!(page.contains(r#"value="form-2""#), "{page}");
    ann.rpc(
        "edit_plan",
        &[
            ("id", id),
            ("name", "mine"),
            ("cpu_cores", "1"),
            ("memory_mib", "512"),
            ("storage_gib", "1"),
        ],
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden")
    .await;
    let audit = admin.get("/api/v1/audit-events").await.expect_ok().await;
    assert!(audit.to_string().contains("plan.update"));
    app.stop().await;
}

on_both_databases!(
    local_engine_registers_as_a_node,
    plans_are_seeded_and_managed_by_admins
);

#[tokio::test]
async fn berth_starts_without_a_docker_engine() {
    let tdb = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&tdb);
    config.docker_host = format!("unix://{}/no-docker.sock", tdb.dir.path().display());
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    assert_eq!(
        admin.get("/api/v1/nodes").await.expect_ok().await,
        json!([])
    );
    admin
        .get("/healthz")
        .await
        .expect_status(StatusCode::OK)
        .await;
    app.stop().await;
}
