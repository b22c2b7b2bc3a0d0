//! Backup throughput against stock restic in the same run (figures go in the README):
//! a Docker volume of 500 files per directory × 10 directories × 100 KiB of random data
//! (5,000 files, 488 MiB) is backed up
//! 1. by Berth's path: a never-started helper container, the engine's archive stream, the
//!    tar source and rustic_core into a fresh local repository (`backups::repo`);
//! 2. by stock `restic backup` of the volume's directory on this host (the way restic is
//!    normally run; Berth never reads customers' volumes by host path);
//!
//! and each once more with nothing changed. Two rounds, alternating.
//!
//! Run with `cargo bench -p server --bench backups` (needs Docker, busybox-static, restic).

#[path = "../tests/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use berth::{
    backups::{pipe::StreamReader, repo},
    runtime::{Engine, VolumeHelper},
};
use common::*;

const VOLUME: &str = "berth-bench-backup";
const DIRS: usize = 10;
const FILES_PER_DIR: usize = 500;
const FILE_KIB: usize = 100;
const PASSWORD: &str = "bench password";

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Fills the volume with random files (once; kept between runs of the bench).
fn fill_volume() {
    let exists = Command::new("docker")
        .args(["volume", "inspect", VOLUME])
        .output()
        .is_ok_and(|o| o.status.success());
    if exists {
        return;
    }
    docker(&["volume", "create", "--label", "berth.test=1", VOLUME]);
    let script = format!(
        "for d in $(/bin/busybox seq 1 {DIRS}); do /bin/busybox mkdir -p /v/d$d; \
         for f in $(/bin/busybox seq 1 {FILES_PER_DIR}); do \
         /bin/busybox dd if=/dev/urandom of=/v/d$d/f$f bs=1024 count={FILE_KIB} 2>/dev/null; \
         done; done"
    );
    docker(&[
        "run",
        "--rm",
        "--label",
        "berth.test=1",
        "-v",
        &format!("{VOLUME}:/v"),
        TEST_IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        &script,
    ]);
}

/// Berth's backup of the volume into `repository`; returns (seconds, files, bytes).
async fn berth_backup(engine: &Engine, repository: &Path, spill: &Path) -> (f64, u64, u64) {
    let started = Instant::now();
    let helper = VolumeHelper {
        name: format!("berth-bench-helper-{}", std::process::id()),
        image: TEST_IMAGE.into(),
        volumes: vec![(VOLUME.into(), "/berth-volumes/data".into())],
        read_only: true,
        agent: None,
        labels: HashMap::from([("berth.test".into(), "1".into())]),
    };
    let container = engine.create_volume_helper(&helper).await.unwrap();
    let reader = StreamReader::spawn(engine.download_archive(&container, "/berth-volumes"));
    let (location, spill) = (repository.to_owned(), spill.to_owned());
    let summary = tokio::task::spawn_blocking(move || {
        let r =
            repo::open_or_init(&repo::Location::Local(location.clone()), PASSWORD, true).unwrap();
        let tags = repo::SnapshotTags {
            label: "bench".into(),
            tags: vec!["kind:volumes".into()],
        };
        let input = berth::backups::tar_source::SourceInput::Tar {
            reader: Box::new(reader),
            tar_root: "berth-volumes".into(),
            links: None,
        };
        repo::backup(r, input, repo::SNAPSHOT_ROOT, &spill, &tags, &|_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    engine.remove_container(&helper.name).await.unwrap();
    (seconds, summary.files, summary.bytes_total)
}

/// `restic backup` of `dir` into `repository`; returns seconds.
fn restic_backup(repository: &Path, dir: &str, cache: &Path) -> f64 {
    let started = Instant::now();
    let out = Command::new("restic")
        .args(["-r", repository.to_str().unwrap(), "--cache-dir"])
        .arg(cache)
        .args(["backup", "--quiet", "--host", "bench", dir])
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("restic runs (apt-get install restic)");
    assert!(out.status.success(), "restic backup: {out:?}");
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    ensure_test_image();
    fill_volume();
    let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", VOLUME]);
    let engine = Engine::connect("unix:///var/run/docker.sock", &Default::default())
        .await
        .unwrap();
    let restic_version = Command::new("restic").arg("version").output().unwrap();
    println!(
        "volume: {DIRS} x {FILES_PER_DIR} files of {FILE_KIB} KiB; {}",
        String::from_utf8_lossy(&restic_version.stdout).trim()
    );
    for round in 1..=2 {
        let work = tempfile::tempdir().unwrap();
        let berth_repo = work.path().join("berth");
        let restic_repo = work.path().join("restic");
        let spill = work.path().join("spill");
        std::fs::create_dir_all(&spill).unwrap();
        // Each repository is created before its timed backup.
        drop(
            repo::open_or_init(&repo::Location::Local(berth_repo.clone()), PASSWORD, true).unwrap(),
        );
        let init = Command::new("restic")
            .args(["-r", restic_repo.to_str().unwrap(), "init"])
            .env("RESTIC_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(init.status.success(), "restic init: {init:?}");
        let cache = work.path().join("restic-cache");

        let (berth_first, files, bytes) = berth_backup(&engine, &berth_repo, &spill).await;
        let restic_first = restic_backup(&restic_repo, &mountpoint, &cache);
        let (berth_again, _, _) = berth_backup(&engine, &berth_repo, &spill).await;
        let restic_again = restic_backup(&restic_repo, &mountpoint, &cache);
        println!("round {round}: {files} files, {:.0} MiB", mib(bytes));
        for (who, first, again) in [
            ("berth", berth_first, berth_again),
            ("restic", restic_first, restic_again),
        ] {
            println!(
                "  {who:6} first backup {first:6.2} s ({:6.1} MiB/s), no-change backup {again:5.2} s",
                mib(bytes) / first
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("docker")
        .args(["volume", "rm", VOLUME])
        .output();
}
