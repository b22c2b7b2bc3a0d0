//! A full disk, for real: the repository's directory and the restore's staging directory are
//! small tmpfs mounts (so this test needs root, as the CI machine has; without it the test
//! fails and says so). A backup that does not fit fails with the system's message and lists
//! no snapshot, the earlier snapshot still restores with stock restic; a restore whose staging
//! fills up fails before the switch and leaves the live volume as it was.

#[macro_use]
mod common;

use std::{path::PathBuf, process::Command};

use common::{backups::*, deploy::*, *};

/// A tmpfs of `size` mounted at `path`, unmounted when dropped (lazily, so a test that failed
/// with files open still lets go of it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (the CI machine runs the tests as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn full_disk(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let config = test_config(&tdb);
    let repositories = Tmpfs::mount(config.data_dir.join("backups"), "4m");
    let app = TestApp::start(config.clone()).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("kept")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let container = instance(&owner, &id).await;
    let dd = |kib: u32| {
        format!("/bin/busybox dd if=/dev/urandom of=/data/blob.bin bs=1024 count={kib} 2>/dev/null")
    };
    exec(&container, &dd(1024));
    let sums = "/bin/busybox md5sum /data/blob.bin";
    let first_sum = exec(&container, sums);
    let first = backup(&owner, &id).await;
    assert_eq!(first["status"], "succeeded", "{first:#}");

    // 8 MiB of random data do not fit in what is left of 4 MiB.
    exec(&container, &dd(8192));
    let live_sum = exec(&container, sums);
    let failed = backup(&owner, &id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let why = failed["failure"].as_str().unwrap();
    assert!(why.contains("No space left on device"), "{why}");
    assert!(!why.contains('\n'), "one line: {why}");
    let (location, password) = reveal(&owner, &project_id).await;
    let out = restic(&location, &password, &["snapshots", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let snapshots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        snapshots.as_array().map(Vec::len),
        Some(1),
        "no snapshot of the failed backup: {snapshots:#}"
    );
    assert_eq!(snapshots[0]["id"], first["snapshot_id"]);
    assert_eq!(
        exec(&container, sums),
        live_sum,
        "the live data is untouched"
    );

    // A restore whose staging directory fills up fails before the switch.
    let staging = Tmpfs::mount(config.data_dir.join("backup-staging"), "256k");
    let restored = restore(&owner, first["id"].as_str().unwrap()).await;
    assert_eq!(restored["status"], "failed", "{restored:#}");
    assert!(
        restored["failure"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{restored:#}"
    );
    let after = instance(&owner, &id).await;
    assert_eq!(after, container, "the instance was not touched");
    assert_eq!(exec(&after, sums), live_sum, "the live data is as it was");
    let volumes = project_volumes(&project_id);
    assert!(
        !volumes.contains("-g1"),
        "the new volume was removed: {volumes}"
    );

    // With room again, the same restore brings the first backup back.
    drop(staging);
    let restored = restore(&owner, first["id"].as_str().unwrap()).await;
    assert_eq!(restored["status"], "succeeded", "{restored:#}");
    let after = instance(&owner, &id).await;
    assert_eq!(exec(&after, sums), first_sum);

    app.stop().await;
    drop(repositories);
}

on_both_databases!(full_disk);
