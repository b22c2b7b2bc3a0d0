//! `kill -9` of the real `berth` binary in the middle of a rollout, then a restart: the job
//! finishes or rolls back, with no orphan or duplicate container, on the real Docker engine.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::json;

/// `kill -9` of the real `berth` binary while a rollout waits for health, then a restart:
/// the job finishes, with exactly one container and no orphan.
#[tokio::test]
async fn kill_9_during_a_rollout_then_restart_finishes_the_job() {
    ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("berth.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ningress_http_listen = \"127.0.0.1:0\"\ningress_https_listen = \"127.0.0.1:0\"\nacme_directory_url = \"\"\ndata_dir = \"{}\"\nreconcile_interval_secs = 2\n\n[docker_labels]\n\"berth.test\" = \"1\"\n\"berth.test-run\" = \"kill9-{port}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let log_path = std::env::temp_dir().join(format!("berth-kill9-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    // Whatever happens, the processes are killed and their containers removed at the end.
    let _cleanup = RemoveOnDrop(format!("berth.test-run=kill9-{port}"));
    let start = || {
        KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .args([
                    "--config",
                    dir.path().join("berth.toml").to_str().unwrap(),
                    "serve",
                ])
                .env("BERTH_SITE_ROOT", dir.path())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let mut berth = start();
    let password = read_one_time_password(&log_path);
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(port);
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = || Browser {
        http: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .unwrap(),
        base: base.clone(),
    };
    let b = browser();
    b.sign_in("admin@berth.localhost", &password)
        .await
        .expect_ok()
        .await;
    b.change_password(&password, ADMIN_PASSWORD).await;
    let p = b
        .post_json("/api/v1/projects", &json!({"name": "crashy"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let project = p["id"].as_str().unwrap().to_owned();
    let mut spec = command_spec(&[
        "/bin/busybox",
        "sh",
        "-c",
        "sleep 3; exec /bin/busybox httpd -f -p 8080 -h /www",
    ]);
    spec["health_check"]["start_period_ms"] = json!(10000);
    let d = create_raw(&b, &project, "web", 1, spec)
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let id = d["deployment"]["id"].as_str().unwrap().to_owned();
    let job_id = d["jobs"][0]["id"].as_str().unwrap().to_owned();

    // Wait until the job waits for health, with the container started, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = b
            .get(&format!("/api/v1/jobs/{job_id}"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        if job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "health")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout never reached the health step: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    berth.0.kill().unwrap();
    berth.0.wait().unwrap();
    assert_eq!(containers_with(&format!("berth.deployment={id}")).len(), 1);

    let _berth = start();
    wait_listening(port);
    // A new client: the old one's pooled connections died with the old process.
    let b = browser();
    let job = wait_job(&b, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let d = wait_for(&b, &id, "healthy after restart", |d| healthy(d).len() == 1).await;
    assert_eq!(
        containers_with(&format!("berth.deployment={id}")).len(),
        1,
        "no duplicate"
    );
    assert_eq!(
        fetch(healthy(&d)[0]["address"].as_str().unwrap())
            .await
            .as_deref(),
        Some("berth test image")
    );
    assert_eq!(d["instances"].as_array().unwrap().len(), 1, "{d:#}");
    let _ = std::fs::remove_file(&log_path);
}

/// A `berth` process, killed when the test ends (also when it fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the Docker objects carrying a label when the test ends.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        docker_cleanup(&self.0);
    }
}

/// The first admin's one-time password, from what `berth serve` printed.
fn read_one_time_password(log: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(p) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("one-time password:"))
        {
            return p.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "berth printed no first admin: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "berth did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}
