//! Verification of backup repositories on the real Docker engine: a check (restic's `check`,
//! reading every pack file here) with a restore drill passes on a good repository and says
//! what it restored; the scheduled check is queued once per due time and carries the
//! project's drill setting; a repository whose pack files were damaged fails both the check
//! and the drill, with findings; strangers see none of it, and only owners change the drill.

#[macro_use]
mod common;

use common::{backups::*, deploy::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Queues a check of the project's repository and waits for its end.
async fn check(owner: &Browser, project_id: &str, restore_drill: bool) -> Value {
    let queued = owner
        .post_json(
            &format!("/api/v1/projects/{project_id}/backup-checks"),
            &json!({ "restore_drill": restore_drill }),
        )
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    assert_eq!(queued["status"], "queued", "{queued:#}");
    wait_until_final(
        owner,
        &format!("/api/v1/backup-checks/{}", queued["id"].as_str().unwrap()),
    )
    .await
}

/// Flips bytes in the middle of every pack file of the local repository at `location`.
fn damage_packs(location: &str) {
    let mut damaged = 0;
    let mut stack = vec![std::path::PathBuf::from(location).join("data")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            for b in &mut bytes[middle..middle + 16] {
                *b ^= 0xff;
            }
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "no pack files under {location}");
}

async fn checks_and_drills(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let mut config = test_config(&tdb);
    config.backup_check_read_data_percent = 100;
    config.metrics_token = Some("prometheus token 2".into());
    let staging = config.data_dir.join("backup-staging");
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("kept")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let repo_path = format!("/api/v1/projects/{project_id}/backup-repository");
    let none = owner
        .get(&repo_path)
        .await
        .expect_status(StatusCode::NOT_FOUND)
        .await;
    assert_eq!(
        none["error"]["code"], "backup_repository_not_found",
        "{none:#}"
    );
    let container = instance(&owner, &id).await;
    exec(
        &container,
        "B=/bin/busybox; $B mkdir -p /data/sub; $B printf 'one\\n' > /data/a.txt; \
         $B dd if=/dev/urandom of=/data/sub/big.bin bs=1024 count=1536 2>/dev/null; \
         $B ln -s a.txt /data/link",
    );
    let taken = backup(&owner, &id).await;
    assert_eq!(taken["status"], "succeeded", "{taken:#}");

    // A good repository: the check and the drill pass, and say what they did.
    let good = check(&owner, &project_id, true).await;
    assert_eq!(good["status"], "succeeded", "{good:#}");
    assert_eq!(good["snapshots"], 1, "{good:#}");
    assert_eq!(good["read_data_percent"], 100, "{good:#}");
    assert_eq!(good["drill_files"], taken["files"], "{good:#}");
    assert_eq!(good["drill_bytes"], taken["bytes_total"], "{good:#}");
    assert_eq!(good["findings"], "", "{good:#}");
    let job = wait_job(&owner, good["job_id"].as_str().unwrap()).await;
    assert!(
        job["steps"].to_string().contains("restored and equal"),
        "{job:#}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().starts_with("drill-")),
        "the drill's scratch directory was left: {leftovers:?}"
    );

    // Strangers see nothing and cannot check; only owners change the drill.
    let stranger = app.customer(&admin, "nosy@example.com").await;
    let good_id = good["id"].as_str().unwrap();
    assert_eq!(
        stranger
            .get(&format!("/api/v1/backup-checks/{good_id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger
            .post_json(
                &format!("/api/v1/projects/{project_id}/backup-checks"),
                &json!({}),
            )
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger
            .patch_json(&repo_path, &json!({"restore_drill": true}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let repo = owner
        .patch_json(&repo_path, &json!({"restore_drill": true}))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(repo["restore_drill"], true, "{repo:#}");

    // The schedule: due once the interval has passed, queued once per due time, with the
    // project's drill setting.
    let next = repo["next_check_at_ms"].as_i64().unwrap();
    let now = berth::store::now_ms();
    assert!(next > now + 6 * 86_400_000, "weekly by default: {repo:#}");
    let week = 7 * 86_400_000;
    let fire = |at: i64| berth::backups::fire_due_checks(&app.store, at, week, 100);
    assert_eq!(fire(next - 1).await.unwrap(), 0, "not due yet");
    assert_eq!(fire(next).await.unwrap(), 1);
    assert_eq!(fire(next).await.unwrap(), 0, "one check per due time");
    let listed = owner
        .get(&format!("/api/v1/projects/{project_id}/backup-checks"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let scheduled = &listed[0];
    assert_eq!(scheduled["trigger"], "schedule", "{listed:#}");
    assert_eq!(scheduled["restore_drill"], true, "{listed:#}");
    let scheduled = wait_until_final(
        &owner,
        &format!(
            "/api/v1/backup-checks/{}",
            scheduled["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(scheduled["status"], "succeeded", "{scheduled:#}");
    let repo = owner
        .get(&repo_path)
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(repo["next_check_at_ms"], next + week, "{repo:#}");

    // Damaged pack files: the check and the drill both fail and say so.
    let (location, _) = reveal(&owner, &project_id).await;
    damage_packs(&location);
    let bad = check(&owner, &project_id, true).await;
    assert_eq!(bad["status"], "failed", "{bad:#}");
    let findings = bad["findings"].as_str().unwrap();
    assert!(findings.contains("MAC check failed"), "{findings}");
    assert!(findings.contains("restore drill of web"), "{findings}");
    let failed_job = wait_job(&owner, bad["job_id"].as_str().unwrap()).await;
    assert_eq!(failed_job["status"], "failed", "{failed_job:#}");

    // One check at a time per repository.
    let queued = owner
        .post_json(
            &format!("/api/v1/projects/{project_id}/backup-checks"),
            &json!({"restore_drill": true}),
        )
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let again = owner
        .post_json(
            &format!("/api/v1/projects/{project_id}/backup-checks"),
            &json!({}),
        )
        .await
        .expect_status(StatusCode::CONFLICT)
        .await;
    assert_eq!(again["error"]["code"], "backup_check_running", "{again:#}");
    wait_until_final(
        &owner,
        &format!("/api/v1/backup-checks/{}", queued["id"].as_str().unwrap()),
    )
    .await;

    // A repository that lost its config is reported as lost, never made again empty.
    let config = std::path::Path::new(&location).join("config");
    std::fs::remove_file(&config).unwrap();
    let lost = check(&owner, &project_id, false).await;
    assert_eq!(lost["status"], "failed", "{lost:#}");
    assert!(
        lost["findings"]
            .as_str()
            .unwrap()
            .contains("holds no repository"),
        "{lost:#}"
    );
    assert!(
        !config.exists(),
        "a new repository was made over the lost one"
    );
    let refused = backup(&owner, &id).await;
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert!(
        !config.exists(),
        "a backup made a new repository over the lost one"
    );
    let metrics = metrics_text(&app, "prometheus token 2").await;
    assert!(
        metrics.contains("berth_backup_checks_total{status=\"failed\"} 3"),
        "{metrics}"
    );

    app.stop().await;
}

on_both_databases!(checks_and_drills);
