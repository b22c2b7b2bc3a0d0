//! Backup schedules and retention: bad schedules are refused on their field; a schedule
//! that fell due while Berth was "down" (its next run moved three days back in the store)
//! queues one scheduled backup and counts the runs it stands in for as missed; retention
//! (keep the last 2) removes the oldest snapshot from the repository, as stock `restic`
//! sees, and a removed backup cannot be restored; `/metrics` counts backups and missed runs.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use berth::store::Store;
use common::{backups::*, deploy::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DAY_MS: i64 = 24 * 3600 * 1000;

async fn schedule_and_retention(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let mut config = test_config(&tdb);
    config.metrics_token = Some("prometheus token 1".into());
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (id, _) = create(&owner, &project_id, "web", 1, greeting_spec("hi")).await;
    let container = instance(&owner, &id).await;
    exec(&container, "/bin/busybox printf one > /data/file");
    let path = format!("/api/v1/deployments/{id}/backup-schedule");

    // Refused, each on its field, and nothing stored.
    for (body, field) in [
        (json!({"cron": "every night"}), "cron"),
        (json!({"cron": "*/5 * * * *"}), "cron"),
        (json!({"cron": "0 0 3 * * *"}), "cron"),
        (json!({"cron": "0 3 * * *", "keep_last": 5000}), "keep_last"),
    ] {
        let r = owner
            .put_json(&path, &body)
            .await
            .expect_status(StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(r["error"]["field"], field, "{body}: {r:#}");
    }
    assert_eq!(owner.get(&path).await.status(), StatusCode::NOT_FOUND);

    let set = owner
        .put_json(&path, &json!({"cron": "0 3 * * *", "keep_last": 2}))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let next = set["next_run_at_ms"].as_i64().unwrap();
    assert!(
        next > berth::store::now_ms() && next % DAY_MS == 3 * 3600 * 1000,
        "{set:#}"
    );
    assert_eq!(set["missed"], 0);
    let stranger = app.customer(&admin, "nosy@example.com").await;
    assert_eq!(stranger.get(&path).await.status(), StatusCode::NOT_FOUND);

    // Two manual backups, then the schedule falls due as if Berth had been down for three
    // days: one backup runs for it, and the two runs in between count as missed.
    let first = backup(&owner, &id).await;
    exec(&container, "/bin/busybox printf two > /data/file");
    let second = backup(&owner, &id).await;
    assert_eq!(second["status"], "succeeded", "{second:#}");
    let store = Store::connect(&tdb.url, 2).await.unwrap();
    let mut record = store.backup_schedules().get(&id).await.unwrap().unwrap();
    record.next_run_at_ms = next - 3 * DAY_MS;
    store.backup_schedules().put(&record).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let scheduled = loop {
        let list = owner
            .get(&format!("/api/v1/deployments/{id}/backups"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        let found = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["trigger"] == "schedule")
            .cloned();
        if let Some(b) = found {
            break wait_until_final(
                &owner,
                &format!("/api/v1/backups/{}", b["id"].as_str().unwrap()),
            )
            .await;
        }
        assert!(Instant::now() < deadline, "no scheduled backup: {list:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(scheduled["status"], "succeeded", "{scheduled:#}");
    let after = owner.get(&path).await.expect_status(StatusCode::OK).await;
    assert_eq!(after["missed"], 2, "{after:#}");
    assert_eq!(after["next_run_at_ms"], next, "{after:#}");
    assert!(after["last_run_at_ms"].is_i64(), "{after:#}");
    let job = wait_job(&owner, scheduled["job_id"].as_str().unwrap()).await;
    assert!(
        job["steps"]
            .to_string()
            .contains("1 older snapshot(s) removed"),
        "{job:#}"
    );

    // Retention kept the last two: the first backup's snapshot is gone from the repository.
    let first_now = owner
        .get(&format!(
            "/api/v1/backups/{}",
            first["id"].as_str().unwrap()
        ))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(first_now["removed_at_ms"].is_i64(), "{first_now:#}");
    let r = owner
        .post_json(
            &format!("/api/v1/backups/{}/restore", first["id"].as_str().unwrap()),
            &json!({}),
        )
        .await
        .expect_status(StatusCode::CONFLICT)
        .await;
    assert_eq!(r["error"]["code"], "backup_not_restorable", "{r:#}");
    let (location, password) = reveal(&owner, &project_id).await;
    let out = restic(&location, &password, &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{snaps:#}");
    assert!(
        !ids.contains(&first["snapshot_id"].as_str().unwrap()),
        "{snaps:#}"
    );
    assert!(
        ids.contains(&scheduled["snapshot_id"].as_str().unwrap()),
        "{snaps:#}"
    );
    let out = restic(&location, &password, &["check"]);
    assert!(
        out.status.success(),
        "after prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // /metrics counts the backups by status and trigger, and the missed runs.
    let text = metrics_text(&app, "prometheus token 1").await;
    for line in [
        "berth_backups_total{status=\"succeeded\",trigger=\"manual\"} 2",
        "berth_backups_total{status=\"succeeded\",trigger=\"schedule\"} 1",
        "berth_backup_runs_missed_total 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }

    // The schedule goes; its backups stay.
    owner
        .delete(&path)
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    assert_eq!(owner.delete(&path).await.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

on_both_databases!(schedule_and_retention);
