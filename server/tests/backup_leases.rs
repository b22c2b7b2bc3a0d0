//! Several controllers sharing a PostgreSQL database take turns at a project's repository
//! through the lease `backup-repository:<project>`: while another controller holds it, a
//! backup waits (and says so on its job) without touching the repository; once it is given
//! back the backup runs, and Berth gives the lease back when done. With SQLite there is one
//! controller and no lease: the same backup runs at once.

#[macro_use]
mod common;

use std::time::Duration;

use common::{backups::*, deploy::*, *};
use reqwest::StatusCode;
use serde_json::json;

const OTHER: &str = "another-controller";

async fn repository_turns(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("kept")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let container = instance(&owner, &id).await;
    exec(&container, "/bin/busybox printf kept > /data/a.txt");

    let lease = format!("backup-repository:{project_id}");
    let now = berth::store::now_ms();
    let held = app
        .store
        .leases()
        .claim(&lease, OTHER, now, 600_000, false)
        .await
        .unwrap();
    assert!(held.is_some());
    let queued = owner
        .post_json(&format!("/api/v1/deployments/{id}/backups"), &json!({}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let path = format!("/api/v1/backups/{}", queued["id"].as_str().unwrap());
    if matches!(db, Db::Sqlite) {
        let done = wait_until_final(&owner, &path).await;
        assert_eq!(
            done["status"], "succeeded",
            "one controller: no lease: {done:#}"
        );
        app.stop().await;
        return;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = owner.get(&path).await.expect_status(StatusCode::OK).await;
    assert!(
        waiting["status"] == "queued" || waiting["status"] == "running",
        "ran while another controller held the repository: {waiting:#}"
    );
    let job = owner
        .get(&format!(
            "/api/v1/jobs/{}",
            queued["job_id"].as_str().unwrap()
        ))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(
        job["steps"]
            .to_string()
            .contains("waiting for another controller"),
        "{job:#}"
    );
    app.store.leases().release(&lease, OTHER).await.unwrap();
    let done = wait_until_final(&owner, &path).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // Berth gave the lease back: another controller takes it at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = app
            .store
            .leases()
            .claim(&lease, OTHER, berth::store::now_ms(), 600_000, false)
            .await
            .unwrap();
        if again.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lease was kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

on_both_databases!(repository_turns);
