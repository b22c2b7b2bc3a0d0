//! Deployment benchmarks on the machine's real Docker engine (figures go in the README):
//! 1. deploy call → first healthy HTTP response, for a local image;
//! 2. `docker kill` of an instance → serving again (the reconciler's reaction);
//! 3. a reconciler resync of 200 instances: time and Docker API calls.
//!
//! Run with `cargo bench -p server --bench deploy` (needs Docker and busybox-static).

#[path = "../tests/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::time::{Duration, Instant};

use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} min={:.0} ms p50={:.0} ms p95={:.0} ms max={:.0} ms",
        samples.len(),
        samples[0].as_secs_f64() * 1000.0,
        percentile(&samples, 0.5).as_secs_f64() * 1000.0,
        percentile(&samples, 0.95).as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
    );
}

/// Polls `address` every 5 ms until `GET /` answers 200.
async fn until_serving(client: &reqwest::Client, address: &str) {
    loop {
        if let Ok(r) = client
            .get(format!("http://{address}/"))
            .timeout(Duration::from_millis(200))
            .send()
            .await
        {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    ensure_test_image();
    let tdb = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&tdb);
    config.local_node_max_instances = 400;
    config.reconcile_interval_secs = 3600; // resyncs are run by hand below
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (b, project_id) = project(&app, &admin, "bench@example.com", "bench").await;
    let http = reqwest::Client::new();
    let serve = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"];
    let mut spec = command_spec(&serve);
    // Probe every 100 ms (the least accepted): the rollout is gated on the first successful GET.
    spec["health_check"]["interval_ms"] = json!(100);
    spec["health_check"]["start_period_ms"] = json!(0);

    // 1. Deploy call → first healthy response.
    let mut deploys = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let d = create_raw(&b, &project_id, &format!("d{i}"), 1, spec.clone())
            .await
            .expect_status(StatusCode::CREATED)
            .await;
        let id = d["deployment"]["id"].as_str().unwrap().to_owned();
        let address = loop {
            let d = detail(&b, &id).await;
            if let Some(a) = d["instances"][0]["address"].as_str() {
                break a.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        until_serving(&http, &address).await;
        deploys.push(started.elapsed());
    }
    report("deploy call -> first healthy response", deploys);

    // 2. docker kill → serving again: each of the 10 deployments killed twice, so every
    // kill comes after the previous crash's backoff window (0.5 s) has passed.
    let list = b
        .get(&format!("/api/v1/projects/{project_id}/deployments"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let engine =
        berth::runtime::Engine::connect("unix:///var/run/docker.sock", &Default::default())
            .await
            .unwrap();
    let mut recoveries = Vec::new();
    for _round in 0..2 {
        for id in &ids {
            let d = wait_for(&b, id, "healthy", |d| healthy(d).len() == 1).await;
            let inst = &healthy(&d)[0];
            let container = inst["container_id"].as_str().unwrap().to_owned();
            let address = inst["address"].as_str().unwrap().to_owned();
            let before = engine
                .inspect_container(&container, None)
                .await
                .unwrap()
                .unwrap();
            let started = Instant::now();
            docker(&["kill", &container]);
            // Serving again means a new start of the container, then a 200.
            loop {
                let now = engine.inspect_container(&container, None).await.unwrap();
                if now.is_some_and(|c| c.running() && c.started_at_ms != before.started_at_ms) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            until_serving(&http, &address).await;
            recoveries.push(started.elapsed());
        }
    }
    report("docker kill -> serving again", recoveries);

    // 3. Resync of 200 instances (10 deployments above + 19 more × 10 replicas... = 200).
    for i in 0..19 {
        let mut s = command_spec(&serve);
        s["health_check"]["interval_ms"] = json!(500);
        let (_, job) = create(&b, &project_id, &format!("r{i}"), 10, s).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
    }
    let instances = app.store.locations().all().await.unwrap().len();
    let mut resyncs = Vec::new();
    let mut calls = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let r = app.reconciler.resync().await.unwrap();
        resyncs.push(started.elapsed());
        calls = r.docker_calls;
        assert_eq!(r.restarted + r.recreated + r.orphans_removed, 0, "{r:?}");
    }
    report(
        &format!("resync of {instances} instances ({calls} Docker calls)"),
        resyncs,
    );
    app.stop().await;
}
