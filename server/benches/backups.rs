//! Backup throughput against stock restic in the same run (figures go in the README):
//! a Docker volume of 500 files per directory × 10 directories × 100 KiB of random data
//! (5,000 files, 488 MiB) is backed up
//! 1. by Berth's path, as a backup job takes it (`backups::volumes::snapshot_volumes`): the
//!    volume agent lists the volume in a helper container; a first backup reads the
//!    engine's archive stream through the tar source, a later one fetches only the files
//!    that differ from the parent snapshot; rustic_core writes a fresh local repository;
//! 2. by stock `restic backup` of the volume's directory on this host (the way restic is
//!    normally run; Berth never reads customers' volumes by host path);
//!
//! each once more with nothing changed, and once more after one file was rewritten. Two
//! rounds, alternating.
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
    sync::Arc,
    time::{Duration, Instant},
};

use berth::{
    backups::{listing, repo, volumes},
    runtime::Engine,
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
    busybox_on_volume(&["sh", "-c", &script]);
    // Files written in the last seconds before a backup count as possibly changed at the
    // next one (`listing::CLOCK_SLACK_S`); a volume is rarely written just before its first
    // backup, so neither is this one.
    std::thread::sleep(Duration::from_secs(listing::CLOCK_SLACK_S as u64 + 1));
}

/// Berth's backup of the volume into `repository`, as a backup job takes it (agent listing,
/// then the archive stream or only the changed files); returns (seconds, files, bytes,
/// files fetched one by one or `None` for the whole stream).
async fn berth_backup(
    engine: &Arc<Engine>,
    repository: &Path,
    spill: &Path,
) -> (f64, u64, u64, Option<u64>) {
    let started = Instant::now();
    let job = volumes::VolumeSnapshot {
        helper: volumes::agent_helper(
            format!("berth-bench-helper-{}", std::process::id()),
            vec![(VOLUME.into(), "/berth-volumes/data".into())],
            HashMap::from([("berth.test".into(), "1".into())]),
        ),
        fallback_image: TEST_IMAGE.into(),
        location: repo::Location::Local(repository.to_owned()),
        password: PASSWORD.into(),
        may_init: true,
        tags: repo::SnapshotTags {
            label: "bench".into(),
            tags: vec!["kind:volumes".into()],
        },
        spill_dir: spill.join("spill"),
    };
    let done = volumes::snapshot_volumes(engine.clone(), job, Default::default())
        .await
        .unwrap();
    assert_eq!(done.agent_failure, None, "the agent lists the volume");
    let seconds = started.elapsed().as_secs_f64();
    (
        seconds,
        done.summary.files,
        done.summary.bytes_total,
        done.fetched.map(|(files, _)| files),
    )
}

/// Runs busybox with `args` in a throwaway container that mounts the volume at `/v`.
fn busybox_on_volume(args: &[&str]) {
    let mount = format!("{VOLUME}:/v");
    let mut all = vec!["run", "--rm", "--label", "berth.test=1", "-v", &mount];
    all.extend([TEST_IMAGE, "/bin/busybox"]);
    all.extend(args);
    docker(&all);
}

/// Rewrites one file of the volume with new random data (same size).
fn change_one_file(round: usize) {
    busybox_on_volume(&[
        "dd",
        "if=/dev/urandom",
        &format!("of=/v/d1/f{round}"),
        "bs=1024",
        &format!("count={FILE_KIB}"),
    ]);
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
    let engine = Arc::new(
        Engine::connect("unix:///var/run/docker.sock", &Default::default())
            .await
            .unwrap(),
    );
    // The agent's image is built at the first backup on a node; not timed here.
    let warm = volumes::agent_helper(
        format!("berth-bench-warm-{}", std::process::id()),
        vec![(VOLUME.into(), "/berth-volumes/data".into())],
        HashMap::from([("berth.test".into(), "1".into())]),
    );
    listing::list_volumes(&engine, &warm).await.unwrap();
    engine.remove_container(&warm.name).await.unwrap();
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

        let (berth_first, files, bytes, fetched) = berth_backup(&engine, &berth_repo, &spill).await;
        assert_eq!(fetched, None, "a first backup reads the archive stream");
        let restic_first = restic_backup(&restic_repo, &mountpoint, &cache);
        let (berth_again, _, _, fetched) = berth_backup(&engine, &berth_repo, &spill).await;
        assert_eq!(fetched, Some(0), "nothing changed, nothing fetched");
        let restic_again = restic_backup(&restic_repo, &mountpoint, &cache);
        change_one_file(round);
        let (berth_one, _, _, fetched) = berth_backup(&engine, &berth_repo, &spill).await;
        assert_eq!(fetched, Some(1), "one file changed, one fetched");
        let restic_one = restic_backup(&restic_repo, &mountpoint, &cache);
        println!("round {round}: {files} files, {:.0} MiB", mib(bytes));
        for (who, first, again, one) in [
            ("berth", berth_first, berth_again, berth_one),
            ("restic", restic_first, restic_again, restic_one),
        ] {
            println!(
                "  {who:6} first backup {first:6.2} s ({:6.1} MiB/s), no-change backup \
                 {again:5.2} s, one file changed {one:5.2} s",
                mib(bytes) / first
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("docker")
        .args(["volume", "rm", VOLUME])
        .output();
}
