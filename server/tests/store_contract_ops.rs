//! The repository contract, continued: metrics rollups, leader leases, builds and webhook
//! deliveries, the same checks against SQLite and PostgreSQL.

#[macro_use]
mod common;

use berth::store::MinuteRollup;
use common::{contract::*, *};

/// A minute written in two parts adds up (sums add, maxima take the larger) and its hour
/// receives both parts once; pruning goes by age.
async fn rollups_merge_minutes_and_feed_the_hour(db: Db) {
    let (s, _db) = store(db).await;
    let hour = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
    let part = |minute: i64, samples: i64, cpu_max: f64, rx: i64| MinuteRollup {
        instance_id: "i1".into(),
        deployment_id: "d1".into(),
        project_id: "p1".into(),
        minute_ms: hour + minute * 60_000,
        samples,
        seconds: samples as f64,
        cpu_seconds: samples as f64 * 0.5,
        cpu_percent_max: cpu_max,
        memory_byte_seconds: samples as f64 * 1024.0,
        memory_bytes_max: 2048,
        memory_limit_bytes: 4096,
        net_rx_bytes: rx,
        pids_max: 3,
        ..MinuteRollup::default()
    };
    let rollups = s.rollups();
    assert!(rollups
        .write(&[part(0, 20, 80.0, 100)], None)
        .await
        .unwrap());
    rollups
        .write(&[part(0, 30, 60.0, 50), part(1, 60, 10.0, 7)], None)
        .await
        .unwrap();
    let minutes = rollups.minutes("d1", hour, hour + 3_600_000).await.unwrap();
    assert_eq!(minutes.len(), 2);
    let first = &minutes[0];
    assert_eq!((first.samples, first.net_rx_bytes), (50, 150));
    assert_eq!(first.cpu_percent_max, 80.0);
    assert!((first.cpu_seconds - 25.0).abs() < 1e-9);
    let hours = rollups.usage_hours("p1", hour, hour + 1).await.unwrap();
    assert_eq!(hours.len(), 1);
    assert!((hours[0].cpu_seconds - 55.0).abs() < 1e-9, "{hours:?}");
    assert!((hours[0].memory_byte_hours - 110.0 * 1024.0 / 3600.0).abs() < 1e-9);
    assert_eq!(hours[0].net_rx_bytes, 157);
    let totals = rollups.usage_totals("p1", 0, i64::MAX).await.unwrap();
    assert_eq!(
        (totals.len(), totals[0].hours, totals[0].net_rx_bytes),
        (1, 1, 157)
    );
    assert!(rollups
        .usage_totals("p2", 0, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    // Minute 0 is older than the cut, minute 1 and the hour are not.
    assert_eq!(rollups.prune(hour + 60_000, hour).await.unwrap(), (1, 0));
    assert_eq!(rollups.minutes("d1", 0, i64::MAX).await.unwrap().len(), 1);
}

/// A lease goes to one owner at a time: renewed by its holder, refused to others until it
/// runs out or is given up, taken by force by a sole controller; its mark advances only
/// inside the holder's write and never goes back.
async fn leases_elect_one_holder(db: Db) {
    let (s, _db) = store(db).await;
    let leases = s.leases();
    let a = leases.claim("loop", "a", 1_000, 100, false).await.unwrap();
    assert_eq!(a.map(|l| (l.expires_at_ms, l.mark_ms)), Some((1_100, 0)));
    assert_eq!(
        leases.claim("loop", "b", 1_050, 100, false).await.unwrap(),
        None
    );
    // Renewed by its holder; still refused to b at its old deadline.
    assert!(leases
        .claim("loop", "a", 1_090, 100, false)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        leases.claim("loop", "b", 1_150, 100, false).await.unwrap(),
        None
    );
    // The holder writes under it: the mark advances, and not backwards.
    let rollups = s.rollups();
    let under = |owner: &'static str, now_ms, mark_ms| berth::store::WriterLease {
        name: "loop",
        owner,
        now_ms,
        mark_ms,
    };
    assert!(rollups
        .write(&[], Some(&under("a", 1_100, 60_000)))
        .await
        .unwrap());
    assert!(rollups
        .write(&[], Some(&under("a", 1_100, 30_000)))
        .await
        .unwrap());
    // b's write is refused (nothing is written) while a holds it.
    let minute = MinuteRollup {
        instance_id: "i1".into(),
        deployment_id: "d1".into(),
        project_id: "p1".into(),
        samples: 1,
        seconds: 1.0,
        ..MinuteRollup::default()
    };
    assert!(!rollups
        .write(
            std::slice::from_ref(&minute),
            Some(&under("b", 1_100, 90_000))
        )
        .await
        .unwrap());
    assert!(rollups.minutes("d1", 0, i64::MAX).await.unwrap().is_empty());
    // Run out: b takes it over with a's mark; a's late write is refused.
    let b = leases.claim("loop", "b", 1_200, 100, false).await.unwrap();
    assert_eq!(b.map(|l| l.mark_ms), Some(60_000));
    assert!(!rollups
        .write(&[], Some(&under("a", 1_210, 120_000)))
        .await
        .unwrap());
    // Given up: taken at once; a sole controller takes it whatever its state.
    leases.release("loop", "b").await.unwrap();
    assert!(leases
        .claim("loop", "c", 1_210, 100, false)
        .await
        .unwrap()
        .is_some());
    assert!(leases
        .claim("loop", "d", 1_220, 100, true)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        leases.claim("loop", "c", 1_230, 100, false).await.unwrap(),
        None
    );
    s.close().await;
}

/// Builds are numbered per deployment and a queued one is cancelled at once; a delivery id
/// counts as seen only when accepted and inside the window; old deliveries are pruned.
async fn builds_number_and_deliveries_expire(db: Db) {
    let (s, _db) = store(db).await;
    let owner = s.users().create(user("b@example.com")).await.unwrap();
    let p = s.projects().create("apps", &owner.id).await.unwrap();
    let (d, ..) = s
        .deployments()
        .create(
            &p.id,
            "web",
            1,
            berth::store::NewRelease {
                spec: "{}".into(),
                image_digest: None,
                cause: "test".into(),
                created_by: None,
            },
            &[],
            berth::store::NewJob {
                kind: "deploy".into(),
                project_id: Some(p.id.clone()),
                payload: "{}".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let queue = || async {
        s.builds()
            .queue(
                berth::store::NewBuild {
                    deployment_id: d.id.clone(),
                    project_id: p.id.clone(),
                    trigger_kind: "manual".into(),
                    branch: "main".into(),
                    requested_commit: None,
                    created_by: None,
                },
                berth::store::NewJob {
                    kind: "build".into(),
                    deployment_id: Some(d.id.clone()),
                    payload: r#"{"build_id":"{build_id}"}"#.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    };
    let (first, second) = (queue().await, queue().await);
    assert_eq!((first.number, second.number), (1, 2));
    let job = s
        .jobs()
        .by_id(first.job_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.payload, format!(r#"{{"build_id":"{}"}}"#, first.id));
    assert_eq!(s.builds().cancel(&first.id).await.unwrap(), "cancelled");
    s.builds().start(&second.id).await.unwrap();
    assert_eq!(s.builds().cancel(&second.id).await.unwrap(), "running");
    assert!(s.builds().cancel_requested(&second.id).await.unwrap());

    let delivery = |outcome: &str| berth::store::DeliveryRecord {
        id: String::new(),
        deployment_id: d.id.clone(),
        provider: "github".into(),
        event: "push".into(),
        delivery_id: Some("d-1".into()),
        branch: None,
        commit_sha: None,
        outcome: outcome.into(),
        reason: String::new(),
        build_id: None,
        received_at_ms: 0,
    };
    let deliveries = s.deliveries();
    deliveries.record(delivery("rejected")).await.unwrap();
    assert!(!deliveries.seen(&d.id, "github", "d-1", 0).await.unwrap());
    let kept = deliveries.record(delivery("build_queued")).await.unwrap();
    assert!(deliveries.seen(&d.id, "github", "d-1", 0).await.unwrap());
    assert!(!deliveries.seen(&d.id, "gitlab", "d-1", 0).await.unwrap());
    assert!(!deliveries
        .seen(&d.id, "github", "d-1", kept.received_at_ms + 1)
        .await
        .unwrap());
    assert_eq!(deliveries.for_deployment(&d.id, 10).await.unwrap().len(), 2);
    assert_eq!(deliveries.prune(kept.received_at_ms + 1).await.unwrap(), 2);
    assert!(deliveries
        .for_deployment(&d.id, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Writers that read before they write, run at once on a pool of four connections: releases
/// and builds numbered `MAX + 1` all succeed with distinct numbers (SQLite once failed such
/// a transaction with `SQLITE_BUSY_SNAPSHOT` when another commit came between its read and
/// its write; PostgreSQL let two read the same maximum), and of two owners removed at once,
/// one stays.
async fn concurrent_writers_take_turns(db: Db) {
    let (s, _db) = store(db).await;
    let owner = s.users().create(user("c@example.com")).await.unwrap();
    let second = s.users().create(user("c2@example.com")).await.unwrap();
    let p = s.projects().create("busy", &owner.id).await.unwrap();
    s.projects()
        .add_member(&p.id, &second.id, "owner")
        .await
        .unwrap();
    let release = || berth::store::NewRelease {
        spec: "{}".into(),
        image_digest: None,
        cause: "test".into(),
        created_by: None,
    };
    let job = |kind: &str| berth::store::NewJob {
        kind: kind.into(),
        project_id: Some(p.id.clone()),
        payload: "{}".into(),
        ..Default::default()
    };
    let (d, ..) = s
        .deployments()
        .create(&p.id, "web", 1, release(), &[], job("deploy"))
        .await
        .unwrap()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, deployment, release, deploy) = (s.clone(), d.clone(), release(), job("deploy"));
        tasks.spawn(async move {
            let (r, _) = store
                .deployments()
                .add_release(&deployment, release, &[], deploy)
                .await
                .expect("add_release")
                .unwrap();
            ("release", r.number)
        });
        let (store, build, job) = (
            s.clone(),
            berth::store::NewBuild {
                deployment_id: d.id.clone(),
                project_id: p.id.clone(),
                trigger_kind: "manual".into(),
                branch: "main".into(),
                requested_commit: None,
                created_by: None,
            },
            job("build"),
        );
        tasks.spawn(async move {
            let queued = store.builds().queue(build, job).await.expect("queue");
            ("build", queued.number)
        });
    }
    for user_id in [owner.id.clone(), second.id.clone()] {
        let (store, project_id) = (s.clone(), p.id.clone());
        tasks.spawn(async move {
            let removed = store.projects().remove_member(&project_id, &user_id).await;
            match removed {
                Ok(()) => ("removed", 1),
                Err(berth::store::StoreError::Conflict(c)) if c == "last_owner" => ("kept", 1),
                Err(e) => panic!("remove_member: {e}"),
            }
        });
    }
    let mut numbers = std::collections::BTreeMap::<&str, Vec<i64>>::new();
    while let Some(done) = tasks.join_next().await {
        let (kind, n) = done.unwrap();
        numbers.entry(kind).or_default().push(n);
    }
    for v in numbers.values_mut() {
        v.sort_unstable();
    }
    assert_eq!(numbers["release"], (2..=9).collect::<Vec<_>>());
    assert_eq!(numbers["build"], (1..=8).collect::<Vec<_>>());
    assert_eq!((numbers["removed"].len(), numbers["kept"].len()), (1, 1));
    assert_eq!(s.projects().members(&p.id).await.unwrap().len(), 1);
}

/// The streamer's one-row check of the instances (`Locations::fingerprint`): it changes with
/// every insert, write and delete of a row, so the streamer lists them again then and only
/// then. Writes are a few milliseconds apart, as the fingerprint's doc asks.
async fn location_fingerprint_follows_every_write(db: Db) {
    let (s, _db) = store(db).await;
    let owner = s.users().create(user("f@example.com")).await.unwrap();
    let p = s.projects().create("fp", &owner.id).await.unwrap();
    let release = berth::store::NewRelease {
        spec: "{}".into(),
        image_digest: None,
        cause: "test".into(),
        created_by: None,
    };
    let job = berth::store::NewJob {
        kind: "deploy".into(),
        project_id: Some(p.id.clone()),
        payload: "{}".into(),
        ..Default::default()
    };
    let (d, r, _) = s
        .deployments()
        .create(&p.id, "web", 1, release, &[], job)
        .await
        .unwrap()
        .unwrap();
    let zone = s
        .topology()
        .ensure_zone("default", "default")
        .await
        .unwrap();
    let capacity = berth::store::NodeCapacity {
        cpu_millicores: 2000,
        memory_bytes: 1 << 30,
        engine_version: "test".into(),
    };
    let node = s
        .topology()
        .register_node("local", &zone, "unix:///var/run/docker.sock", &capacity, 10)
        .await
        .unwrap();
    let locations = s.locations();
    let mut seen = vec![locations.fingerprint().await.unwrap()];
    assert_eq!(seen[0], (0, 0), "no instance yet");
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    let loc = berth::store::LocationRecord {
        id: "loc-1".into(),
        deployment_id: d.id.clone(),
        release_id: r.id.clone(),
        node_id: node.id.clone(),
        container_name: "fp-web-1".into(),
        status: "creating".into(),
        health: "none".into(),
        ..Default::default()
    };
    pause().await;
    locations.insert_or_get(&loc).await.unwrap();
    seen.push(locations.fingerprint().await.unwrap());
    assert_eq!(seen[1].0, 1);
    pause().await;
    locations
        .mark_running("loc-1", "c1", Some("10.0.0.5"), Some(32768))
        .await
        .unwrap();
    seen.push(locations.fingerprint().await.unwrap());
    // Nothing written: the same fingerprint, so the streamer skips its listing.
    assert_eq!(locations.fingerprint().await.unwrap(), seen[2]);
    pause().await;
    locations.set_health("loc-1", "healthy", "").await.unwrap();
    seen.push(locations.fingerprint().await.unwrap());
    pause().await;
    locations.delete("loc-1").await.unwrap();
    seen.push(locations.fingerprint().await.unwrap());
    assert_eq!(seen[4].0, 0);
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "{seen:?}");
    }
}

on_both_databases!(
    location_fingerprint_follows_every_write,
    concurrent_writers_take_turns,
    leases_elect_one_holder,
    builds_number_and_deliveries_expire,
    rollups_merge_minutes_and_feed_the_hour,
);
