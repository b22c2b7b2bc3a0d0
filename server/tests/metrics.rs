//! Live metrics on the real Docker engine: the streamer samples a CPU-burning container
//! once a second, memory it allocates shows up at once, samples reach members over
//! `/ws/deployments/{id}/metrics` (window first, then live) and never strangers, a killed
//! container's replacement is followed on the same socket, and the cgroup reader agrees with
//! the engine's stats stream.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use berth::{
    metrics::{
        cgroup::{ContainerFiles, Host},
        reading::{sample, Reading, Subject},
        MetricsSource,
    },
    runtime::{Engine, EngineCredentials},
    store::now_ms,
};
use common::{deploy::*, ws::*, *};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

/// Busy-loops one process beside the HTTP server, on a plan with one core.
fn burner_spec() -> Value {
    let mut spec = command_spec(&[
        "/bin/busybox",
        "sh",
        "-c",
        "(while :; do :; done) & exec /bin/busybox httpd -f -p 8080 -h /www",
    ]);
    spec["plan_id"] = json!("plan-medium");
    spec
}

/// The next frame, or `None` when the socket closed with 4404; panics after `wait`.
async fn next_frame(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .expect("a frame in time");
        match message {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::from(4404)));
                return None;
            }
            Some(Ok(_)) => {}
            other => panic!("the socket broke: {other:?}"),
        }
    }
}

/// The next `sample` frame's sample.
async fn next_sample(socket: &mut Socket) -> Value {
    loop {
        let frame = next_frame(socket, Duration::from_secs(15))
            .await
            .expect("the socket stays open");
        if frame["kind"] == "sample" {
            return frame["sample"].clone();
        }
        assert_eq!(frame["kind"], "skipped", "{frame}");
    }
}

fn running_container(deployment: &str) -> String {
    let ids = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
    ]);
    assert_eq!(ids.lines().count(), 1, "one container: {ids}");
    ids
}

/// Held by each test while its busy container runs: two busy loops at once on a 2-core
/// machine would leave each less than the half core the tests look for.
static ONE_BUSY_CONTAINER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn live_metrics(source: MetricsSource) {
    let _turn = ONE_BUSY_CONTAINER.lock().await;
    ensure_test_image();
    let db = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&db);
    config.metrics_source = source;
    // Prometheus is on in the cgroup run only.
    let prometheus_token = "prometheus token 1";
    if source == MetricsSource::Auto {
        config.metrics_token = Some(prometheus_token.into());
    }
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "metrics@example.com", "metrics").await;
    let stranger = app.customer(&admin, "stranger@example.com").await;
    let (id, job) = create(&owner, &project_id, "burner", 1, burner_spec()).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let path = format!("/ws/deployments/{id}/metrics");

    // Strangers, unknown deployments, anonymous callers and plain GETs get no socket.
    let stranger_bearer = format!("Bearer {}", token(&stranger).await);
    let auth = [("authorization", stranger_bearer.as_str())];
    assert_eq!(refused_with(connect(&app, &path, &auth).await), 404);
    assert_eq!(refused_with(connect(&app, &path, &[]).await), 401);
    let bearer = format!("Bearer {}", token(&owner).await);
    let auth = [("authorization", bearer.as_str())];
    let unknown = connect(&app, "/ws/deployments/no-such-id/metrics", &auth).await;
    assert_eq!(refused_with(unknown), 404);
    let plain = owner.get(&path).await;
    assert!(plain.status().is_client_error(), "{}", plain.status());

    // The owner gets the window, then live samples; the busy loop shows above half a core.
    let mut socket = connect(&app, &path, &auth).await.unwrap();
    let first = next_frame(&mut socket, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first["kind"], "window", "{first}");
    let started = Instant::now();
    let busy = loop {
        let s = next_sample(&mut socket).await;
        assert_eq!(s["deployment_id"], json!(id));
        if s["cpu_percent"].as_f64().unwrap() > 50.0 {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no busy sample: {s}"
        );
    };
    assert_eq!(busy["memory_limit_bytes"], 1_073_741_824u64, "{busy}");
    let of_plan = busy["cpu_percent_of_plan"].as_f64().unwrap();
    assert!(
        (of_plan - busy["cpu_percent"].as_f64().unwrap()).abs() < 1e-6,
        "one core: {busy}"
    );
    assert!(busy["pids"].as_u64().unwrap() >= 2, "{busy}");

    // The project page's "now" figures and the admin's node list add up the same newest
    // samples; strangers get 404 for the project.
    let now_path = format!("/api/v1/projects/{project_id}/metrics");
    let now = owner.get(&now_path).await.expect_ok().await;
    let row = now
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment_id"] == json!(id))
        .unwrap_or_else(|| panic!("the burner is missing: {now}"));
    assert_eq!(row["instances"], 1, "{now}");
    assert!(row["cpu_percent"].as_f64().unwrap() > 50.0, "{now}");
    assert!(row["memory_bytes"].as_u64().unwrap() > 0, "{now}");
    assert_eq!(row["memory_limit_bytes"], 1_073_741_824u64, "{now}");
    stranger
        .get(&now_path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "project_not_found")
        .await;
    let nodes = admin.get("/api/v1/nodes").await.expect_ok().await;
    let local = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "local")
        .unwrap_or_else(|| panic!("{nodes}"));
    assert!(
        local["cpu_used_millicores"].as_i64().unwrap() > 500,
        "{local}"
    );
    assert!(local["memory_used_bytes"].as_i64().unwrap() > 0, "{local}");

    // The same figures for Prometheus (its own token, nobody else's), and the streamer's
    // health for admins.
    let scrape = |token: Option<String>| {
        let request = reqwest::Client::new().get(format!("{}/metrics", app.base));
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    let source_label = match source {
        MetricsSource::Auto => "cgroup",
        MetricsSource::Docker => "docker",
    };
    if source == MetricsSource::Auto {
        let refused = scrape(None).await;
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        let api_token = bearer.trim_start_matches("Bearer ").to_owned();
        assert_eq!(scrape(Some(api_token)).await.status(), 401);
        let text = scrape(Some(prometheus_token.into()))
            .await
            .text()
            .await
            .unwrap();
        for expected in [
            format!("berth_instance_cpu_percent{{deployment=\"{id}\",instance="),
            "berth_node_cpu_capacity_cores{node=\"local\"".to_owned(),
            "berth_node_cpu_allocated_cores{node=\"local\"".to_owned(),
            "# TYPE berth_jobs gauge".to_owned(),
            format!("berth_metrics_sources{{source=\"{source_label}\"}} 1\n"),
            "berth_metrics_subscribers 1\n".to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected} missing from\n{text}");
        }
    } else {
        let off = scrape(Some(prometheus_token.into())).await;
        assert_eq!(off.status(), 404);
    }
    owner
        .get("/metrics/observability")
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    let health = admin.get("/metrics/observability").await.expect_ok().await;
    assert_eq!(health["streaming"], true, "{health}");
    assert_eq!(health[format!("{source_label}_sources")], 1, "{health}");
    assert!(health["samples"].as_u64().unwrap() >= 1, "{health}");
    // The local engine answered: its breaker (made at the first engine call) is closed.
    let breakers = health["breakers"].as_object().unwrap();
    assert!(breakers.values().all(|s| s == "closed"), "{health}");
    assert_eq!(health["history_write_failures"], 0, "{health}");
    let healthz = owner.get("/healthz").await.expect_ok().await;
    assert_eq!(healthz["metrics"]["state"], "streaming", "{healthz}");

    // 40 MiB written to the container's tmpfs (charged to its memory) shows up within the
    // first two samples read after the write returned.
    let container = running_container(&id);
    let before = next_sample(&mut socket).await["memory_bytes"]
        .as_u64()
        .unwrap();
    docker(&[
        "exec",
        &container,
        "/bin/busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/shm/fill",
        "bs=1048576",
        "count=40",
    ]);
    let written_at = now_ms();
    let mut after = Vec::new();
    while after.len() < 2 {
        let s = next_sample(&mut socket).await;
        if s["at_ms"].as_i64().unwrap() > written_at {
            after.push(s["memory_bytes"].as_u64().unwrap());
        }
    }
    assert!(
        after.iter().any(|m| *m >= before + (38 << 20)),
        "memory before {before}, after {after:?}"
    );

    // A second socket starts with the recent window, oldest first.
    let mut second = connect(&app, &path, &auth).await.unwrap();
    let window = next_frame(&mut second, Duration::from_secs(10))
        .await
        .unwrap();
    let samples = window["samples"].as_array().unwrap();
    assert!(samples.len() >= 4, "{window}");
    let times: Vec<i64> = samples
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    drop(second);

    // The container killed: the engine or the reconciler starts it again (a new first
    // process) and its samples arrive on the same socket.
    let pid = || docker(&["inspect", "-f", "{{.State.Pid}}", &container]);
    let old_pid = pid();
    docker(&["kill", &container]);
    let killed_at = now_ms();
    let started = Instant::now();
    loop {
        let s = next_sample(&mut socket).await;
        if s["at_ms"].as_i64().unwrap() > killed_at + 1_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no sample after the kill"
        );
    }
    assert_ne!(pid(), old_pid, "the container was started again");

    // Deleting the deployment ends the stream with 4404.
    let job = act(
        &owner,
        &id,
        json!({"action": "delete", "remove_volumes": true}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while next_frame(&mut socket, Duration::from_secs(10))
        .await
        .is_some()
    {
        assert!(Instant::now() < deadline, "the stream did not end");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_from_cgroups_stream_live_to_members_only() {
    live_metrics(MetricsSource::Auto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_from_the_stats_stream_stream_live_to_members_only() {
    live_metrics(MetricsSource::Docker).await;
}

/// The cgroup reader and the engine's stats stream, read at the same moments of the same
/// busy container, give the same sample (CPU within 10 points; memory within 1 MiB; the
/// counters equal).
#[tokio::test(flavor = "multi_thread")]
async fn cgroup_readings_agree_with_the_stats_stream() {
    let _turn = ONE_BUSY_CONTAINER.lock().await;
    ensure_test_image();
    let label = format!("berth.test.agree={}", std::process::id());
    let _cleanup = RemoveOnDrop(label.clone());
    let test_label = format!("{TEST_LABEL_KEY}={TEST_LABEL_VALUE}");
    let container = docker(&[
        "run",
        "-d",
        "--label",
        &test_label,
        "--label",
        &label,
        "--cpus",
        "1",
        "--memory",
        "128m",
        TEST_IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        "(while :; do :; done) & dd if=/dev/zero of=/tmp/data bs=1048576 count=8 && exec sleep 600",
    ]);
    let engine = Engine::connect("unix:///var/run/docker.sock", &EngineCredentials::default())
        .await
        .unwrap();
    let pid = engine.container_pid(&container).await.unwrap().unwrap();
    let files = ContainerFiles::locate(pid, &container).expect("the cgroup is readable here");
    // The PID of another container's process is refused.
    assert!(ContainerFiles::locate(pid, "0123456789abcdef").is_err());

    let subject = Subject {
        instance_id: app::model::InstanceId("i".into()),
        deployment_id: app::model::DeploymentId("d".into()),
        cpu_millicores: 1000,
    };
    let mut stream = Box::pin(engine.stats_stream(&container));
    let mut pairs: Vec<(Reading, Reading)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while pairs.len() < 4 {
            let from_engine = stream.next().await.unwrap().unwrap();
            let from_cgroup = files.read(&Host::read().unwrap(), now_ms()).unwrap();
            pairs.push((from_engine, from_cgroup));
        }
    })
    .await
    .expect("four stats documents in 20 s");
    for w in pairs.windows(2) {
        let engine = sample(&subject, &w[0].0, &w[1].0);
        let cgroup = sample(&subject, &w[0].1, &w[1].1);
        assert!(
            (engine.cpu_percent - cgroup.cpu_percent).abs() < 10.0,
            "{engine:?}\n{cgroup:?}"
        );
        assert!(engine.cpu_percent > 50.0, "{engine:?}");
        assert!(
            engine.memory_bytes.abs_diff(cgroup.memory_bytes) < 1 << 20,
            "{engine:?}\n{cgroup:?}"
        );
        assert_eq!(engine.memory_limit_bytes, 128 << 20);
        assert_eq!(cgroup.memory_limit_bytes, 128 << 20);
        assert_eq!(
            (engine.net_rx_bytes, engine.net_tx_bytes),
            (cgroup.net_rx_bytes, cgroup.net_tx_bytes)
        );
        assert_eq!(
            (engine.block_read_bytes, engine.block_write_bytes),
            (cgroup.block_read_bytes, cgroup.block_write_bytes)
        );
        assert_eq!(engine.pids, cgroup.pids);
    }
    // The files stay open between readings; once the container is gone a reading fails
    // (the streamer then drops the source) instead of repeating stale figures.
    docker(&["rm", "-f", &container]);
    let gone = files.read(&Host::read().unwrap(), now_ms());
    assert!(gone.is_err(), "{gone:?}");
}

/// Removes the containers carrying a label when the test ends, passed or not.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        docker_cleanup(&self.0);
    }
}

/// A Unix-socket proxy in front of the real engine that can stop answering: while stalled
/// it still accepts connections and reads requests but passes no byte either way, as an
/// engine that hangs does.
struct StallingEngine {
    socket: std::path::PathBuf,
    stalled: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl StallingEngine {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let (stalled, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (engine_read, engine_write) = engine.into_split();
                    tokio::join!(
                        pump(client_read, engine_write, watch.clone()),
                        pump(engine_read, client_write, watch),
                    );
                });
            }
        });
        Self {
            socket,
            stalled,
            task,
            _dir: dir,
        }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }
}

impl Drop for StallingEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while the engine is stalled.
async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Polls `/metrics/observability` until `check` holds; panics after `wait`.
async fn observe_until(
    admin: &Browser,
    wait: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let o = admin.get("/metrics/observability").await.expect_ok().await;
        if check(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "{what} within {wait:?}: {o}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An engine that stops answering opens the streamer's breaker (five stalled stats streams
/// in a row), `/healthz` says the metrics are degraded while Berth keeps answering, and
/// once the engine answers again the breaker closes and samples flow again.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_engine_opens_the_breaker_and_samples_resume_after_it() {
    ensure_test_image();
    let engine = StallingEngine::start();
    let db = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&db);
    config.docker_host = format!("unix://{}", engine.socket.display());
    config.metrics_source = MetricsSource::Docker;
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "hung@example.com", "hung").await;
    // Five instances, five stats streams: one stall each reaches the breaker's threshold.
    let quiet = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"];
    let (id, job) = create(&owner, &project_id, "quiet", 5, command_spec(&quiet)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let live = format!("/api/v1/deployments/{id}/metrics");
    let sampled_after = |since: i64| {
        let owner = &owner;
        let live = &live;
        async move {
            let window = owner.get(live).await.expect_ok().await;
            window
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["at_ms"].as_i64().unwrap() > since)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sampled_after(0).await {
        assert!(Instant::now() < deadline, "no samples through the proxy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let healthz = owner.get("/healthz").await.expect_ok().await;
    assert_eq!(healthz["metrics"]["state"], "streaming", "{healthz}");

    engine.stall(true);
    let open = |o: &Value| {
        o["breakers"]
            .as_object()
            .unwrap()
            .values()
            .any(|s| s == "open")
    };
    observe_until(&admin, Duration::from_secs(60), "the breaker opens", open).await;
    // Berth itself keeps answering, and says what is wrong.
    let asked = Instant::now();
    let healthz = owner.get("/healthz").await.json::<Value>().await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(healthz["metrics"]["state"], "degraded", "{healthz}");
    assert!(
        healthz["metrics"]["breakers_open"].as_u64().unwrap() >= 1,
        "{healthz}"
    );
    // Streams that would have been opened meanwhile are refused, not sent to the engine.
    observe_until(&admin, Duration::from_secs(30), "calls are refused", |o| {
        o["calls_refused"].as_u64().unwrap() > 0
    })
    .await;

    let resumed = now_ms();
    engine.stall(false);
    let closed = |o: &Value| {
        o["breakers"]
            .as_object()
            .unwrap()
            .values()
            .all(|s| s == "closed")
    };
    observe_until(
        &admin,
        Duration::from_secs(90),
        "the breaker closes",
        closed,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sampled_after(resumed).await {
        assert!(
            Instant::now() < deadline,
            "no samples after the engine came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let healthz = owner.get("/healthz").await.expect_ok().await;
    assert_eq!(healthz["metrics"]["state"], "streaming", "{healthz}");
    app.stop().await;
}
