//! Metrics history on the real engine and both databases: the streamer's samples reach the
//! minute rollups and the hourly usage, a Berth restart loses and doubles nothing (the
//! minute in progress is flushed on shutdown and added to by the next process), and the
//! history, usage and live-window endpoints answer members only.

#[macro_use]
mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use app::model::{DeploymentId, InstanceId, MetricsSample};
use berth::{
    metrics::{rollup::MINUTE_MS, CollectorStats, Retention, RollupBuffer, RollupWriter},
    store::{MinuteRollup, Store},
};
use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::Value;

/// Waits until the live window of `id` holds at least `n` samples; returns it.
async fn window_of_at_least(b: &Browser, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let window = b
            .get(&format!("/api/v1/deployments/{id}/metrics"))
            .await
            .expect_ok()
            .await;
        let samples = window.as_array().unwrap().clone();
        if samples.len() >= n {
            return samples;
        }
        assert!(Instant::now() < deadline, "only {} samples", samples.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The deployment's minute rows, read straight from the database.
async fn stored_minutes(url: &str, id: &str) -> Vec<MinuteRollup> {
    let store = Store::connect(url, 1).await.unwrap();
    let minutes = store.rollups().minutes(id, 0, i64::MAX).await.unwrap();
    store.close().await;
    minutes
}

fn samples_in(minutes: &[MinuteRollup]) -> i64 {
    minutes.iter().map(|m| m.samples).sum()
}

async fn history_survives_a_restart(db: Db) {
    ensure_test_image();
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "history@example.com", "history").await;
    let stranger = app.customer(&admin, "nosy@example.com").await;
    let (id, job) = create(&owner, &project_id, "web", 1, greeting_spec("hi")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");

    // Members only, for the live window, the history and the usage.
    for path in [
        format!("/api/v1/deployments/{id}/metrics"),
        format!("/api/v1/deployments/{id}/metrics/history"),
    ] {
        stranger
            .get(&path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
            .await;
    }
    stranger
        .get(&format!("/api/v1/projects/{project_id}/usage"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "project_not_found")
        .await;
    let bad = owner
        .get(&format!(
            "/api/v1/deployments/{id}/metrics/history?range=2h"
        ))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_range")
        .await;
    assert!(
        bad["message"].as_str().unwrap().contains("1h, 24h or 7d"),
        "{bad}"
    );
    owner
        .get(&format!(
            "/api/v1/projects/{project_id}/usage?from_ms=10&to_ms=5"
        ))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_span")
        .await;
    owner
        .get(&format!(
            "/api/v1/projects/{project_id}/usage?from_ms=yesterday"
        ))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query")
        .await;

    // First run: a few seconds of samples, then a graceful stop flushes the minute in progress.
    let first = window_of_at_least(&owner, &id, 3).await;
    let stopping = Instant::now();
    app.stop().await;
    let seconds_to_stop = stopping.elapsed().as_secs() as i64;
    let after_first = stored_minutes(&tdb.url, &id).await;
    let written = samples_in(&after_first);
    // Every sample the window showed is in the history, plus at most those taken while
    // stopping (one a second), and none twice.
    assert!(written >= first.len() as i64, "{written} < {}", first.len());
    assert!(
        written <= first.len() as i64 + seconds_to_stop + 2,
        "{written} samples written, {} in the window",
        first.len()
    );
    let first_newest = first.last().unwrap()["at_ms"].as_i64().unwrap();
    assert!(after_first
        .iter()
        .any(|m| m.minute_ms <= first_newest && first_newest < m.minute_ms + 60_000));

    // Second run on the same database (stopping removed the test's containers, so the
    // reconciler starts the instance again: a new container, new counters).
    let app = TestApp::start(test_config(&tdb)).await;
    let owner = Browser {
        http: owner.http.clone(),
        base: app.base.clone(),
    };
    let second = window_of_at_least(&owner, &id, 3).await;
    // The first run's minutes are history now: the 1 h range has points, and the project's
    // usage has the hours they fall in, with the same CPU-seconds.
    let history = owner
        .get(&format!(
            "/api/v1/deployments/{id}/metrics/history?range=1h"
        ))
        .await
        .expect_ok()
        .await;
    assert_eq!(history["step_ms"], 60_000);
    let points = history["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{history}");
    assert!(
        points
            .iter()
            .all(|p| p["memory_bytes"].as_u64().unwrap() > 0),
        "{history}"
    );
    let usage = owner
        .get(&format!("/api/v1/projects/{project_id}/usage?hourly=true"))
        .await
        .expect_ok()
        .await;
    let row = &usage["deployments"][0];
    assert_eq!(row["deployment_id"], id.as_str(), "{usage}");
    assert_eq!(row["name"], "web", "{usage}");
    let cpu_seconds: f64 = after_first.iter().map(|m| m.cpu_seconds).sum();
    assert!(
        (row["cpu_seconds"].as_f64().unwrap() - cpu_seconds).abs() < 1e-6,
        "{usage}"
    );
    let memory_byte_hours: f64 = after_first
        .iter()
        .map(|m| m.memory_byte_seconds)
        .sum::<f64>()
        / 3600.0;
    assert!(
        (row["memory_byte_hours"].as_f64().unwrap() - memory_byte_hours).abs() < 1e-3,
        "{usage}"
    );
    assert!(!usage["hourly"].as_array().unwrap().is_empty(), "{usage}");

    let stopping = Instant::now();
    app.stop().await;
    let seconds_to_stop = stopping.elapsed().as_secs() as i64;
    let after_second = stored_minutes(&tdb.url, &id).await;
    let added = samples_in(&after_second) - written;
    assert!(added >= second.len() as i64, "{added} < {}", second.len());
    assert!(
        added <= second.len() as i64 + seconds_to_stop + 2,
        "{added} added, {} in the window",
        second.len()
    );
    // Both runs' instances have rows; the first run's rows were added to, never replaced.
    for m in &after_first {
        let now = after_second
            .iter()
            .find(|n| n.instance_id == m.instance_id && n.minute_ms == m.minute_ms)
            .expect("the first run's minute is kept");
        assert!(now.samples >= m.samples);
    }
}

/// Two processes with the metrics role sample the same instance, each into its own buffer;
/// only the history lease's holder writes, so each minute is in the database once. When the
/// holder's writer stalls past its lease, the other takes over and writes the minutes since
/// the holder's last write from its own samples; the stalled one then writes nothing. A
/// graceful hand-over mid-minute passes the lease on at once, and the minute is written in
/// two parts that add up to one. Real databases, a made-up clock.
async fn one_history_writer_among_processes(db: Db) {
    let tdb = fresh_db(db).await;
    let store = Store::connect(&tdb.url, 4).await.unwrap();
    let process = || {
        let buffer = Arc::new(RollupBuffer::default());
        buffer.set_project("d1", "p1");
        let writer = RollupWriter::new(
            store.clone(),
            buffer.clone(),
            Arc::new(CollectorStats::default()),
            Retention {
                minutes_days: 7,
                hours_days: 400,
            },
            false,
        );
        (buffer, writer)
    };
    let ((buf_a, a), (buf_b, b)) = (process(), process());
    let base = 1_000 * MINUTE_MS;
    let at = |minutes: i64, seconds: i64| base + minutes * MINUTE_MS + seconds * 1_000;
    // Both sample the instance once a second at half a core, up to the time of each step.
    let fed = std::cell::Cell::new(at(0, 0));
    let feed_until = |until: i64| {
        for t in (fed.get()..until).step_by(1_000) {
            let sample = MetricsSample {
                cpu_percent: 50.0,
                ..MetricsSample::idle(InstanceId("i1".into()), DeploymentId("d1".into()), t)
            };
            buf_a.add(&sample);
            buf_b.add(&sample);
        }
        fed.set(until.max(fed.get()));
    };
    // a claims first and writes minutes 0 and 1; b keeps its samples.
    for minute in 1..=2 {
        feed_until(at(minute, 2));
        assert!(a.round(at(minute, 2), at(minute, 0)).await, "a writes");
        assert!(!b.round(at(minute, 2), at(minute, 0)).await, "b waits");
    }
    // a's writer stalls; its lease (claimed at 2:02) runs out at 4:32.
    for minute in 3..=4 {
        feed_until(at(minute, 2));
        assert!(!b.round(at(minute, 2), at(minute, 0)).await);
    }
    feed_until(at(5, 2));
    assert!(b.round(at(5, 2), at(5, 0)).await, "b takes over");
    // a comes back: refused, nothing written.
    assert!(!a.round(at(5, 2), at(5, 0)).await);
    // b stops gracefully at 6:01, writing up to then; a takes over at once from b's mark and
    // writes the rest of minute 6 from its own samples.
    feed_until(at(6, 1));
    b.hand_over(at(6, 1)).await;
    feed_until(at(7, 2));
    assert!(
        a.round(at(7, 2), at(7, 0)).await,
        "a takes the released lease"
    );

    let minutes = store.rollups().minutes("d1", 0, i64::MAX).await.unwrap();
    let written: Vec<(i64, i64)> = minutes
        .iter()
        .map(|m| ((m.minute_ms - base) / MINUTE_MS, m.samples))
        .collect();
    assert_eq!(
        written,
        (0..7).map(|m| (m, 60)).collect::<Vec<_>>(),
        "every minute once, whole"
    );
    let hours = store
        .rollups()
        .usage_hours("p1", 0, i64::MAX)
        .await
        .unwrap();
    let cpu: f64 = hours.iter().map(|h| h.cpu_seconds).sum();
    assert!((cpu - 7.0 * 60.0 * 0.5).abs() < 1e-6, "{hours:?}");
    store.close().await;
}

on_both_databases!(
    history_survives_a_restart,
    one_history_writer_among_processes
);
