//! Backup repositories in S3-compatible storage, against a real S3 server (moto) on
//! loopback: an admin sets the region's destination (bad settings, a missing bucket and an
//! endpoint that does not answer are refused and nothing is saved; customers may not set it;
//! the secret never comes back, except in an admin's reveal); a project's new repository is
//! made in the bucket; a backup and a restore go through it byte for byte; stock `restic`
//! lists and checks it with the revealed keys; new keys for the same bucket are given to the
//! existing repository (key rotation); removing the destination moves no existing
//! repository.

#[macro_use]
mod common;

use common::{backups::*, deploy::*, *};
use reqwest::StatusCode;
use serde_json::json;

const BUCKET: &str = "berth-backups";
const SECRET: &str = "moto-secret-key-0123456789";

async fn s3_repository(db: Db) {
    ensure_test_image();
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let path = "/api/v1/regions/default/backup-destination";

    let local = admin.get(path).await.expect_status(StatusCode::OK).await;
    assert_eq!(local["kind"], "local", "{local:#}");
    assert_eq!(
        admin
            .get("/api/v1/regions/nowhere/backup-destination")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let good = json!({
        "endpoint": s3.endpoint, "bucket": BUCKET, "prefix": "/eu/",
        "access_key_id": "AKIDBERTH", "secret_access_key": SECRET,
    });
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut body = good.clone();
        change(&mut body);
        body
    };
    // Refusals, each saying what was wrong; nothing is saved.
    let r = admin
        .put_json(path, &with(&|b| b["bucket"] = json!("Not_A_Bucket")))
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(r["error"]["field"], "bucket", "{r:#}");
    let r = admin
        .put_json(path, &with(&|b| b["bucket"] = json!("no-such-bucket")))
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(
        r["error"]["code"], "backup_destination_unreachable",
        "{r:#}"
    );
    let closed = format!("http://127.0.0.1:{}", dns::free_port());
    let r = admin
        .put_json(path, &with(&|b| b["endpoint"] = json!(closed)))
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(
        r["error"]["code"], "backup_destination_unreachable",
        "{r:#}"
    );
    let still = admin.get(path).await.expect_status(StatusCode::OK).await;
    assert_eq!(still["kind"], "local", "{still:#}");
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    assert_eq!(
        owner.put_json(path, &good).await.status(),
        StatusCode::FORBIDDEN
    );

    // The destination is saved; its secret never comes back.
    let set = admin.put_json(path, &good).await;
    let status = set.status();
    let text = set.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let view: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["kind"], "s3", "{view:#}");
    assert_eq!(view["prefix"], "eu", "{view:#}");
    let audit = admin
        .get("/api/v1/audit-events")
        .await
        .text()
        .await
        .unwrap();
    assert!(!audit.contains(SECRET), "the secret is in the audit log");

    // The project's repository is made in the bucket at its first backup.
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("kept")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let container = instance(&owner, &id).await;
    exec(
        &container,
        "B=/bin/busybox; $B printf 'in the bucket\\n' > /data/a.txt; \
         $B dd if=/dev/urandom of=/data/big.bin bs=1024 count=2048 2>/dev/null",
    );
    let sums = "/bin/busybox md5sum /data/a.txt /data/big.bin";
    let original = exec(&container, sums);
    let first = backup(&owner, &id).await;
    assert_eq!(first["status"], "succeeded", "{first:#}");
    let reveal_path = format!("/api/v1/projects/{project_id}/backup-repository/reveal");
    // The owner gets the location and password, not the region's keys (good for every
    // project's repository in the bucket); an admin gets those too.
    let by_owner = owner
        .post_json(&reveal_path, &json!({}))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(by_owner["password"].is_string(), "{by_owner:#}");
    assert!(by_owner["secret_access_key"].is_null(), "{by_owner:#}");
    assert!(by_owner["access_key_id"].is_null(), "{by_owner:#}");
    let repo = admin
        .post_json(&reveal_path, &json!({}))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let location = format!("s3:{}/{BUCKET}/eu/{project_id}", s3.endpoint);
    assert_eq!(repo["kind"], "s3", "{repo:#}");
    assert_eq!(repo["location"], location, "{repo:#}");
    assert_eq!(repo["secret_access_key"], SECRET, "{repo:#}");
    assert_eq!(repo["password"], by_owner["password"]);
    let listed = owner
        .get(&format!("/api/v1/projects/{project_id}/backup-repository"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(SECRET), "{listed}");

    // Stock restic reads the same bucket with the revealed keys.
    let password = repo["password"].as_str().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDBERTH"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let out = restic_with(&location, password, &env, &["snapshots", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let snapshots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snapshots[0]["id"], first["snapshot_id"], "{snapshots:#}");
    let out = restic_with(&location, password, &env, &["check", "--read-data"]);
    assert!(out.status.success(), "{out:?}");

    // Damage, and restore from the bucket.
    exec(&container, "/bin/busybox rm -f /data/a.txt /data/big.bin");
    let restored = restore(&owner, first["id"].as_str().unwrap()).await;
    assert_eq!(restored["status"], "succeeded", "{restored:#}");
    let after = instance(&owner, &id).await;
    assert_eq!(exec(&after, sums), original, "restored byte for byte");

    // Key rotation: the same bucket again with new keys gives them to the existing
    // repository too (made with the old key id); its location and password stay.
    const ROTATED: &str = "rotated-secret-kept-out-of-sight";
    let rotated = with(&|b| {
        b["access_key_id"] = json!("AKIDROTATED");
        b["secret_access_key"] = json!(ROTATED);
    });
    let set = admin.put_json(path, &rotated).await;
    assert_eq!(set.status(), StatusCode::OK);
    assert!(!set.text().await.unwrap().contains(ROTATED));
    let repo = admin
        .post_json(&reveal_path, &json!({}))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(repo["access_key_id"], "AKIDROTATED", "{repo:#}");
    assert_eq!(repo["secret_access_key"], ROTATED, "{repo:#}");
    assert_eq!(repo["location"], location, "{repo:#}");
    let audit = admin
        .get("/api/v1/audit-events")
        .await
        .expect_status(StatusCode::OK)
        .await;
    let set_event = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "region.backup_destination_set")
        .unwrap();
    let detail: serde_json::Value =
        serde_json::from_str(set_event["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["repositories_rekeyed"], 1, "{detail}");
    assert_eq!(detail["access_key_id"], "AKIDROTATED", "{detail}");
    assert!(
        !audit.to_string().contains(ROTATED),
        "the new secret is in the audit log"
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDROTATED"),
        ("AWS_SECRET_ACCESS_KEY", ROTATED),
    ];

    // Back to local: the existing repository stays in the bucket and keeps working.
    let local = admin.delete(path).await.expect_status(StatusCode::OK).await;
    assert_eq!(local["kind"], "local", "{local:#}");
    let second = backup(&owner, &id).await;
    assert_eq!(second["status"], "succeeded", "{second:#}");
    let out = restic_with(&location, password, &env, &["snapshots", "--json"]);
    let snapshots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 2, "{snapshots:#}");

    app.stop().await;
}

on_both_databases!(s3_repository);
