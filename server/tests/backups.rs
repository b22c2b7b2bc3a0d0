//! Backups of a deployment's named volume on the real Docker engine: files of every kind are
//! written into the volume, backed up into the project's restic repository, damaged, and
//! restored byte for byte (contents, sizes, modes, owners, times, symlinks); stock `restic`
//! (Debian's package) lists, checks and restores the same repository. Refusals: a stranger,
//! a deployment without volumes, a failed backup; a repository that lost its data fails the
//! restore and leaves the live volume as it was.

#[macro_use]
mod common;

use std::{path::Path, process::Command};

use common::{backups::*, deploy::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Fills /data in the instance: nested directories, a 3 MiB random file (over the in-memory
/// limit, so it is spilled) with a hard link to it (read again for its second name, restored
/// as a file of its own with the same content and metadata), an empty file and directory, odd modes and owners, a relative
/// and an absolute symlink, a name with spaces.
const FILL: &str = r#"B=/bin/busybox
$B mkdir -p /data/sub/deep /data/empty
$B printf 'first file\n' > /data/a.txt
$B chmod 0600 /data/a.txt
$B dd if=/dev/urandom of=/data/sub/big.bin bs=1024 count=3072 2>/dev/null
$B ln /data/sub/big.bin /data/sub/deep/big-link.bin
$B printf 'deep\n' > '/data/sub/deep/name with spaces.txt'
$B chown 1000:2000 '/data/sub/deep/name with spaces.txt'
: > /data/sub/empty.txt
$B chmod 0751 /data/sub
$B ln -s a.txt /data/link
$B ln -s /etc/passwd /data/outside
$B touch -d '2020-01-02 03:04:05' /data/a.txt
"#;

/// One line per entry of /data: type, mode, owner, size, mtime, name, and the md5 of a file
/// or the target of a symlink (directories and symlinks without size and times, which the
/// file system decides).
const MANIFEST: &str = r#"B=/bin/busybox
cd /data && $B find . | $B sort | while read -r p; do
  if [ -L "$p" ]; then extra="-> $($B readlink "$p")";
  elif [ -f "$p" ]; then extra=$($B md5sum "$p" | $B cut -d' ' -f1);
  else extra=""; fi
  echo "$($B stat -c '%F %a %u:%g %s %Y' "$p" | $B sed 's/^directory \([0-7]* [0-9:]*\) .*/directory \1/;s/^symbolic link [0-7]* \([0-9:]*\) .*/symlink \1/') $p $extra"
done"#;

fn md5(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

async fn backup_and_restore(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("kept")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let container = instance(&owner, &id).await;
    exec(&container, FILL);
    let original = exec(&container, MANIFEST);
    assert!(
        original.contains("symlink 0:0") && original.contains("-> /etc/passwd"),
        "{original}"
    );
    assert!(
        original.contains("1000:2000") && original.contains("directory 751"),
        "{original}"
    );

    // A backup: one snapshot holding the volume, with restic's figures.
    let first = backup(&owner, &id).await;
    assert_eq!(first["status"], "succeeded", "{first:#}");
    assert_eq!(first["volumes"], json!(["data"]));
    // Files as restic counts them: the five files (the hard link is one) and the two symlinks.
    assert_eq!(first["files"], 7, "{first:#}");
    assert!(
        first["bytes_total"].as_i64().unwrap() >= 3 * 1024 * 1024,
        "{first:#}"
    );
    let snapshot = first["snapshot_id"].as_str().unwrap().to_owned();
    assert_eq!(snapshot.len(), 64, "{first:#}");
    let job = wait_job(&owner, first["job_id"].as_str().unwrap()).await;
    let steps = job["steps"].to_string();
    assert!(
        steps.contains("read volumes") && steps.contains("7 files"),
        "{job:#}"
    );
    // The backup helper is gone (it ran Berth's volume agent, nothing of the deployment's
    // image).
    let helpers = || {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=berth.helper",
            "--filter",
            &format!("label=berth.project={project_id}"),
        ])
    };
    assert_eq!(helpers(), "", "helper containers left");

    // A second backup of unchanged data stores (almost) nothing new.
    let second = backup(&owner, &id).await;
    assert_eq!(second["status"], "succeeded", "{second:#}");
    assert!(
        second["bytes_added"].as_i64().unwrap() < 64 * 1024,
        "unchanged data stored again: {second:#}"
    );
    // It was listed by Berth's volume agent and compared with the first: no file was read.
    assert_eq!(second["files"], 7, "{second:#}");
    let steps = wait_job(&owner, second["job_id"].as_str().unwrap()).await["steps"].to_string();
    assert!(
        steps.contains("listed by the volume agent, fetched 0 changed files"),
        "{steps}"
    );
    // A change that keeps the size and puts the mtime back (as `touch -d` does) shows only
    // in the ctime, which the second backup's listing recorded: the third fetches that file
    // and no other.
    exec(
        &container,
        "B=/bin/busybox; $B printf 'FIRST FILE\\n' > /data/a.txt; $B touch -d '2020-01-02 03:04:05' /data/a.txt",
    );
    let third = backup(&owner, &id).await;
    assert_eq!(third["status"], "succeeded", "{third:#}");
    let steps = wait_job(&owner, third["job_id"].as_str().unwrap()).await["steps"].to_string();
    assert!(steps.contains("fetched 1 changed file (11 B)"), "{steps}");
    let third_snapshot = third["snapshot_id"].as_str().unwrap().to_owned();
    let listed = owner
        .get(&format!("/api/v1/deployments/{id}/backups"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["id"], third["id"], "newest first");

    // Strangers see nothing of it, and cannot restore or reveal.
    let stranger = app.customer(&admin, "nosy@example.com").await;
    let first_id = first["id"].as_str().unwrap();
    for r in [
        stranger.get(&format!("/api/v1/backups/{first_id}")).await,
        stranger
            .post_json(&format!("/api/v1/backups/{first_id}/restore"), &json!({}))
            .await,
        stranger
            .post_json(&format!("/api/v1/deployments/{id}/backups"), &json!({}))
            .await,
        stranger
            .post_json(
                &format!("/api/v1/projects/{project_id}/backup-repository/reveal"),
                &json!({}),
            )
            .await,
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    // Damage the data, then restore the first backup.
    exec(
        &container,
        "B=/bin/busybox; $B rm -rf /data/sub /data/a.txt; $B printf junk > /data/junk; $B ln -sf junk /data/link",
    );
    assert_ne!(exec(&container, MANIFEST), original);
    let restored = restore(&owner, first_id).await;
    assert_eq!(restored["status"], "succeeded", "{restored:#}");
    assert_eq!(restored["files"], 7, "{restored:#}");
    let after = instance(&owner, &id).await;
    assert_ne!(
        after, container,
        "the instance was recreated on the new volume"
    );
    assert_eq!(exec(&after, MANIFEST), original, "restored byte for byte");
    let d = detail(&owner, &id).await;
    assert_eq!(d["deployment"]["status"], "running", "{d:#}");
    let address = healthy(&d)[0]["address"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&address).await.as_deref(), Some("kept"));
    // The volume was replaced by its next generation; the old one is gone.
    let volumes = project_volumes(&project_id);
    assert!(
        volumes.contains(&format!("berth-{project_id}-data-g1")),
        "{volumes}"
    );
    assert!(
        !volumes
            .lines()
            .any(|v| v == format!("berth-{project_id}-data")),
        "{volumes}"
    );
    assert_eq!(helpers(), "", "helper containers left");
    let restores = owner
        .get(&format!("/api/v1/deployments/{id}/restores"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(restores[0]["id"], restored["id"]);

    // The backup's files can be browsed and downloaded; paths outside it are refused.
    let files = |path: &str| format!("/api/v1/backups/{first_id}/files?path={path}");
    let listed = owner
        .get(&files("/volumes/data"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let names: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("empty", "dir"),
            ("sub", "dir"),
            ("a.txt", "file"),
            ("link", "symlink"),
            ("outside", "symlink")
        ],
        "{listed:#}"
    );
    assert_eq!(listed[2]["size"], 11);
    assert_eq!(listed[4]["link_target"], "/etc/passwd");
    let download = owner
        .get(&format!(
            "/api/v1/backups/{first_id}/download?path=/volumes/data/sub/big.bin"
        ))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("filename=\"big.bin\""));
    let body = download.bytes().await.unwrap();
    assert_eq!(body.len(), 3 * 1024 * 1024);
    let downloaded = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(downloaded.path(), &body).unwrap();
    assert!(
        original.contains(&md5(downloaded.path())),
        "the download is the file"
    );
    for bad in ["/volumes/../etc", "/etc/passwd", "/volumes/data/a.txt"] {
        let r = owner
            .get(&files(bad))
            .await
            .expect_status(StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(r["error"]["code"], "invalid_path", "{bad}: {r:#}");
    }
    let r = owner.get(&files("/volumes/data/nothing")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "{:?}", r.text().await);
    assert_eq!(
        stranger.get(&files("/volumes/data")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Stock restic reads the repository: the snapshots with their tags, a full check, and
    // a restore equal to the original files.
    let (location, password) = reveal(&owner, &project_id).await;
    let plain = owner
        .get(&format!("/api/v1/projects/{project_id}/backup-repository"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(
        plain["password"].is_null(),
        "the listing never holds the password"
    );
    let out = restic(&location, &password, &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 3, "{snaps:#}");
    let mine = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == snapshot.as_str())
        .unwrap_or_else(|| panic!("restic lists {snapshot}: {snaps:#}"));
    let tags = mine["tags"].to_string();
    assert!(
        tags.contains(&format!("deployment:{id}")) && tags.contains("kind:volumes"),
        "{mine:#}"
    );
    let out = restic(&location, &password, &["check", "--read-data"]);
    assert!(
        out.status.success(),
        "restic check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The snapshot made from the agent's listing: the changed file as fetched, the others
    // as the first snapshot stored them.
    let target = tempfile::tempdir().unwrap();
    let out = restic(
        &location,
        &password,
        &[
            "restore",
            &third_snapshot,
            "--target",
            target.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = target.path().join("volumes/data");
    assert_eq!(
        std::fs::read_to_string(data.join("a.txt")).unwrap(),
        "FIRST FILE\n"
    );
    assert_eq!(
        std::fs::read_link(data.join("outside")).unwrap(),
        Path::new("/etc/passwd")
    );
    let big_md5 = md5(&data.join("sub/big.bin"));
    assert!(
        original.contains(&big_md5),
        "restic's big.bin {big_md5} in {original}"
    );

    // Refusals: a deployment without volumes, and a wrong or missing repository.
    let mut plain_spec = greeting_spec("no volumes");
    plain_spec["volumes"] = json!([]);
    let (bare, _) = create(&owner, &project_id, "bare", 1, plain_spec).await;
    let r = owner
        .post_json(&format!("/api/v1/deployments/{bare}/backups"), &json!({}))
        .await
        .expect_status(StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(r["error"]["code"], "no_volumes", "{r:#}");

    // The repository's key gets another password (with stock restic): Berth's backup fails
    // and says the key does not open; with the password back, backups work again.
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), "another password").unwrap();
    let out = restic(
        &location,
        &password,
        &[
            "key",
            "passwd",
            "--new-password-file",
            other.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = backup(&owner, &id).await;
    assert_eq!(refused["status"], "failed", "{refused:#}");
    let why = refused["failure"].as_str().unwrap();
    assert!(
        why.contains("password opens none of the repository's keys"),
        "{refused:#}"
    );
    let original_password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(original_password.path(), &password).unwrap();
    let out = restic(
        &location,
        "another password",
        &[
            "key",
            "passwd",
            "--new-password-file",
            original_password.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The repository loses its data: the restore fails before anything is switched, and
    // the live volume keeps serving what it had.
    for dir in ["data", "index"] {
        std::fs::remove_dir_all(Path::new(&location).join(dir)).unwrap();
        std::fs::create_dir(Path::new(&location).join(dir)).unwrap();
    }
    let failed = restore(&owner, first_id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert!(
        !failed["failure"].as_str().unwrap().is_empty(),
        "{failed:#}"
    );
    assert_eq!(
        instance(&owner, &id).await,
        after,
        "the instance was not touched"
    );
    assert_eq!(
        exec(&after, MANIFEST),
        original,
        "the live data is as it was"
    );
    let volumes = project_volumes(&project_id);
    assert!(
        !volumes.contains("-data-g2"),
        "no new volume is left behind: {volumes}"
    );

    // A repository whose config is damaged fails the backup with the reason; a failed
    // backup cannot be restored; an unknown one is not found.
    std::fs::write(Path::new(&location).join("config"), b"not a restic config").unwrap();
    let broken = backup(&owner, &id).await;
    assert_eq!(broken["status"], "failed", "{broken:#}");
    assert!(
        broken["failure"]
            .as_str()
            .unwrap()
            .contains("backup repository"),
        "{broken:#}"
    );
    let r = owner
        .post_json(
            &format!("/api/v1/backups/{}/restore", broken["id"].as_str().unwrap()),
            &json!({}),
        )
        .await
        .expect_status(StatusCode::CONFLICT)
        .await;
    assert_eq!(r["error"]["code"], "backup_not_restorable", "{r:#}");
    let unknown = owner
        .post_json(
            &format!("/api/v1/backups/{}/restore", "0".repeat(36)),
            &json!({}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    app.stop().await;
}

on_both_databases!(backup_and_restore);
