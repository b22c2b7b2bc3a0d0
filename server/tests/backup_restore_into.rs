//! Restoring a backup into another deployment of the project (for example one made to
//! receive it) on the real Docker engine: the files arrive byte for byte in the target's
//! volume while the backed-up deployment keeps its own data; a target in another project, a
//! volume map that names volumes neither side has, and strangers are refused with messages
//! that say what is accepted.

#[macro_use]
mod common;

use common::{backups::*, deploy::*, *};
use reqwest::StatusCode;
use serde_json::json;

async fn restore_into_another_deployment(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (web, job) = create(&owner, &project_id, "web", 1, greeting_spec("kept")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let container = instance(&owner, &web).await;
    exec(
        &container,
        "B=/bin/busybox; $B mkdir -p /data/sub; $B printf 'orders\\n' > /data/sub/orders.csv; \
         $B dd if=/dev/urandom of=/data/blob.bin bs=1024 count=1200 2>/dev/null",
    );
    let sums = "cd /data && /bin/busybox md5sum sub/orders.csv blob.bin";
    let original = exec(&container, sums);
    let b = backup(&owner, &web).await;
    assert_eq!(b["status"], "succeeded", "{b:#}");
    let backup_id = b["id"].as_str().unwrap();
    // The source moves on after the backup.
    exec(
        &container,
        "/bin/busybox printf later > /data/sub/orders.csv",
    );

    let mut spec = greeting_spec("copy");
    spec["volumes"] = json!([{"name": "data-copy", "mount_path": "/data"}]);
    let (copy, job) = create(&owner, &project_id, "copy", 1, spec).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let restore_path = format!("/api/v1/backups/{backup_id}/restore");

    // Refusals first: nothing is queued for them.
    let r = owner
        .post_json(
            &restore_path,
            &json!({"target_deployment_id": copy, "volumes": {"logs": "data-copy"}}),
        )
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(r["error"]["code"], "invalid_restore_target", "{r:#}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("'data'"),
        "{r:#}"
    );
    let r = owner
        .post_json(
            &restore_path,
            &json!({"target_deployment_id": copy, "volumes": {"data": "nope"}}),
        )
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'data-copy'"),
        "{r:#}"
    );
    let (other_owner, other_project) = project(&app, &admin, "other@example.com", "other").await;
    let (foreign, _) = create(&other_owner, &other_project, "x", 1, greeting_spec("x")).await;
    // The owner cannot see the other project's deployment; an admin can, and is still refused.
    let r = owner
        .post_json(&restore_path, &json!({"target_deployment_id": foreign}))
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(r["error"]["code"], "invalid_restore_target", "{r:#}");
    let r = admin
        .post_json(&restore_path, &json!({"target_deployment_id": foreign}))
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("own project"),
        "{r:#}"
    );
    assert_eq!(
        other_owner
            .post_json(&restore_path, &json!({"target_deployment_id": foreign}))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a stranger to the backup"
    );
    let none = owner
        .get(&format!("/api/v1/deployments/{copy}/restores"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(none, json!([]), "refusals queued nothing");

    // One volume on each side: no map needed.
    let queued = owner
        .post_json(&restore_path, &json!({"target_deployment_id": copy}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    assert_eq!(queued["deployment_id"], copy.as_str(), "{queued:#}");
    let done = wait_until_final(
        &owner,
        &format!("/api/v1/restores/{}", queued["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let copied = instance(&owner, &copy).await;
    assert_eq!(exec(&copied, sums), original, "restored byte for byte");
    assert_eq!(
        exec(&container, "/bin/busybox cat /data/sub/orders.csv"),
        "later",
        "the backed-up deployment keeps its own data"
    );
    let volumes = project_volumes(&project_id);
    assert!(
        volumes.contains(&format!("berth-{project_id}-data-copy-g1")),
        "{volumes}"
    );
    app.stop().await;
}

on_both_databases!(restore_into_another_deployment);
