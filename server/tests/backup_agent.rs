//! The volume agent's two paths on the real Docker engine, below the job layer
//! (`backups::volumes::snapshot_volumes`, what a backup job runs): with the agent, a first
//! snapshot reads the archive stream and a second fetches only the rewritten file; when
//! the agent cannot run, the same snapshot is taken from the archive stream of a
//! never-started helper, says why, and leaves no helper behind. Building this version's
//! agent image removes the agent images of other versions.

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::{collections::HashMap, sync::Arc};

use berth::{
    backups::{listing, repo, volumes},
    runtime::Engine,
};
use common::*;

const PASSWORD: &str = "agent test password";

/// A labelled volume with three small files, named after this process.
fn volume() -> String {
    let name = format!("berth-test-agent-{}", std::process::id());
    docker(&["volume", "create", "--label", "berth.test=1", &name]);
    on_volume(&name, "for f in a b c; do echo $f > /v/$f; done");
    name
}

fn on_volume(volume: &str, script: &str) {
    let mount = format!("{volume}:/v");
    docker(&[
        "run",
        "--rm",
        "--label",
        "berth.test=1",
        "-v",
        &mount,
        TEST_IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]);
}

fn job(volume: &str, repository: &std::path::Path, agent: Option<&str>) -> volumes::VolumeSnapshot {
    let mut helper = volumes::agent_helper(
        format!("berth-test-agent-helper-{}", std::process::id()),
        vec![(volume.into(), "/berth-volumes/data".into())],
        HashMap::from([("berth.test".into(), "1".into())]),
    );
    if let Some(command) = agent {
        // An image without the agent: the start fails as a broken agent image would.
        helper.image = TEST_IMAGE.into();
        helper.agent = Some(vec![command.into(), "/berth-volumes".into()]);
    }
    volumes::VolumeSnapshot {
        helper,
        fallback_image: TEST_IMAGE.into(),
        location: repo::Location::Local(repository.to_owned()),
        password: PASSWORD.into(),
        may_init: true,
        tags: repo::SnapshotTags {
            label: "agent-test".into(),
            tags: vec!["kind:volumes".into()],
        },
        spill_dir: repository.with_extension("spill"),
    }
}

fn helpers_left() -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("name=berth-test-agent-helper-{}", std::process::id()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_lists_and_a_broken_agent_falls_back_to_the_stream() {
    ensure_test_image();
    let engine = Arc::new(
        Engine::connect("unix:///var/run/docker.sock", &Default::default())
            .await
            .unwrap(),
    );
    let volume = volume();
    let work = tempfile::tempdir().unwrap();
    // An older Berth's agent image, and none of this version's yet.
    let stale = "berth-volume-lister:000000000000";
    std::fs::write(
        work.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nLABEL berth.helper=volume-lister\n"),
    )
    .unwrap();
    docker(&["build", "-q", "-t", stale, work.path().to_str().unwrap()]);
    let image_exists = |image: &str| {
        std::process::Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .unwrap()
            .status
            .success()
    };
    let current = listing::agent_image();
    if image_exists(&current) {
        docker(&["rmi", &current]);
    }

    // With the agent: the first snapshot reads the stream, the next ones only what changed.
    let repository = work.path().join("with-agent");
    let snap = |agent| {
        volumes::snapshot_volumes(
            engine.clone(),
            job(&volume, &repository, agent),
            Default::default(),
        )
    };
    let first = snap(None).await.unwrap();
    assert_eq!(first.agent_failure, None);
    assert_eq!((first.summary.files, first.fetched), (3, None));
    assert!(image_exists(&current), "{current} is built");
    assert!(!image_exists(stale), "{stale} is removed");
    let second = snap(None).await.unwrap();
    assert_eq!((second.summary.files, second.fetched), (3, Some((0, 0))));
    on_volume(&volume, "echo changed > /v/b");
    let third = snap(None).await.unwrap();
    assert_eq!(third.fetched, Some((1, 8)), "only b, 8 bytes");
    assert_eq!(helpers_left(), "", "the helper is removed");

    // A broken agent: the snapshot is still taken, from the stream, and says why.
    let repository = work.path().join("broken-agent");
    let broken = volumes::snapshot_volumes(
        engine.clone(),
        job(&volume, &repository, Some("/no-such-agent")),
        Default::default(),
    )
    .await
    .unwrap();
    let why = broken.agent_failure.expect("the failure is reported");
    assert!(why.contains("no-such-agent"), "{why}");
    assert_eq!((broken.summary.files, broken.fetched), (3, None));
    assert_eq!(helpers_left(), "", "both helpers are removed");
    let restored =
        repo::snapshots(&repo::open(&repo::Location::Local(repository), PASSWORD).unwrap())
            .unwrap();
    assert_eq!(restored.len(), 1, "one complete snapshot");

    docker(&["volume", "rm", &volume]);
}
