//! The ingress on real containers: generated hostnames routed to healthy instances
//! round-robin, forwarded headers, HTTP/2 clients, streamed responses, body limits and
//! upstream timeouts, Berth's own 400/404/503 pages, a connection upgrade spliced through,
//! slow clients cut off, and a redeploy under load without one failed request.

#[macro_use]
mod common;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{deploy::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// busybox httpd serving `$GREETING` at `/` and, at `/cgi-bin/env`, the request's headers as
/// the instance saw them plus the container's hostname.
fn echo_spec(greeting: &str) -> Value {
    let script = "mkdir -p /tmp/w/cgi-bin && echo \"$GREETING\" > /tmp/w/index.html && \
        printf '#!/bin/busybox sh\\necho Content-Type: text/plain\\necho\\n\
echo host=$HTTP_HOST xff=$HTTP_X_FORWARDED_FOR proto=$HTTP_X_FORWARDED_PROTO \
xfh=$HTTP_X_FORWARDED_HOST rid=$HTTP_X_REQUEST_ID me=$(/bin/busybox hostname)\\n' \
        > /tmp/w/cgi-bin/env && /bin/busybox chmod +x /tmp/w/cgi-bin/env && \
        printf '#!/bin/busybox sh\n/bin/busybox sleep 5\necho Content-Type: text/plain\necho\necho late\n' \
        > /tmp/w/cgi-bin/slow && /bin/busybox chmod +x /tmp/w/cgi-bin/slow && \
        printf '#!/bin/busybox sh\necho Content-Type: text/plain\necho\necho first\n/bin/busybox sleep 2\necho second\n' \
        > /tmp/w/cgi-bin/stream && /bin/busybox chmod +x /tmp/w/cgi-bin/stream && \
        exec /bin/busybox httpd -f -p 8080 -h /tmp/w";
    let mut spec = command_spec(&["/bin/busybox", "sh", "-c", script]);
    spec["env"] = json!([{"name": "GREETING", "value": greeting}]);
    spec
}

/// A server that answers any request on 8080 with `101 Switching Protocols` and then echoes
/// bytes back (`busybox nc -ll -e` runs the script per connection).
fn upgrade_echo_spec() -> Value {
    // The handler travels in an env var, so no shell quoting is involved.
    let handler = "#!/bin/busybox sh\n\
        while read -r line; do line=$(echo \"$line\" | /bin/busybox tr -d '\\r'); [ -z \"$line\" ] && break; done\n\
        printf 'HTTP/1.1 101 Switching Protocols\\r\\nConnection: Upgrade\\r\\nUpgrade: echo\\r\\n\\r\\n'\n\
        exec /bin/busybox cat\n";
    json!({
        "image": TEST_IMAGE,
        "http_port": 8080,
        "plan_id": "plan-small",
        "env": [{"name": "HANDLER", "value": handler}],
        "command": ["/bin/busybox", "sh", "-c",
            "printf '%s' \"$HANDLER\" > /tmp/upgrade && /bin/busybox chmod +x /tmp/upgrade && \
             exec /bin/busybox nc -ll -p 8080 -e /tmp/upgrade"],
    })
}

/// GET `path` through the ingress with `Host: host`; (status, body).
async fn get(
    client: &reqwest::Client,
    ingress: SocketAddr,
    host: &str,
    path: &str,
) -> (u16, String) {
    let r = client
        .get(format!("http://{ingress}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Writes `request` on a fresh connection and returns everything read until the server
/// closes or `wait` passes.
fn raw(ingress: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(ingress).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends an upgrade request for `host`, expects `101`, then checks that bytes written come
/// back (the app echoes them). Blocking: run it off the async runtime.
fn upgrade_and_echo(ingress: SocketAddr, host: &str) {
    let mut s = TcpStream::connect(ingress).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "GET /chat HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    s.write_all(b"ping through berth\n").unwrap();
    let mut echoed = [0u8; 19];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping through berth\n");
}

fn field<'a>(body: &'a str, name: &str) -> &'a str {
    body.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_routes_generated_hostnames_to_healthy_instances() {
    ensure_test_image();
    let db = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&db);
    config.ingress_max_body_bytes = 64 * 1024;
    config.ingress_upstream_timeout_secs = 2;
    let app = TestApp::start(config).await;
    let ingress = app.ingress.expect("the test config runs an ingress");
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "shop@example.com", "shop").await;

    // Slow clients: half a request head, then nothing; or nothing at all. Both are cut off
    // after the header read timeout (10 s), checked at the end. (Blocking sockets run off
    // the test's runtime, which also serves Berth.)
    let slow = |request: &'static [u8]| {
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = raw(ingress, request, Duration::from_secs(30));
            (started.elapsed(), answer)
        })
    };
    let slowloris = [
        slow(b"GET / HTTP/1.1\r\nHost: web-shop.localhost\r\n"),
        slow(b""),
    ];

    let (web, job) = create(&owner, &project_id, "web", 2, echo_spec("release one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let client = reqwest::Client::new();
    // The route appears once the rollout signals it (well within a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&client, ingress, "web-shop.localhost", "/").await.0 != 200 {
        assert!(Instant::now() < deadline, "the route never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = detail(&owner, &web).await;
    assert_eq!(
        d["url"],
        format!("http://web-shop.localhost:{}/", ingress.port()),
        "the portal shows the app's address"
    );
    let (status, body) = get(&client, ingress, "Web-Shop.LOCALHOST:8000", "/").await;
    assert_eq!((status, body.trim()), (200, "release one"));

    // Forwarded headers, and both replicas in turn.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let (status, body) = get(&client, ingress, "web-shop.localhost", "/cgi-bin/env").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(field(&body, "host"), "web-shop.localhost");
        assert_eq!(field(&body, "xff"), "127.0.0.1");
        assert_eq!(field(&body, "proto"), "http");
        assert_eq!(field(&body, "xfh"), "web-shop.localhost");
        assert!(!field(&body, "rid").is_empty(), "{body}");
        seen.insert(field(&body, "me").to_owned());
    }
    assert_eq!(seen.len(), 2, "round-robin over both replicas: {seen:?}");

    // Unknown host: Berth's 404 page; a Host that is no hostname: 400.
    let (status, body) = get(&client, ingress, "nothing-shop.localhost", "/").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("No app is served at nothing-shop.localhost"),
        "{body}"
    );
    let answer = tokio::task::spawn_blocking(move || {
        raw(
            ingress,
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            Duration::from_secs(2),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // HTTP/2 from a client (cleartext, prior knowledge) is served too.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("web-shop.localhost", ingress)
        .build()
        .unwrap();
    let r = h2
        .get(format!("http://web-shop.localhost:{}/", ingress.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
    assert_eq!(r.text().await.unwrap().trim(), "release one");

    // A response is streamed as the app writes it, not buffered until it ends.
    let started = Instant::now();
    let mut r = client
        .get(format!("http://{ingress}/cgi-bin/stream"))
        .header("host", "web-shop.localhost")
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("first"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("second"));
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Limits: a body over the limit gets 413, declared or streamed; a slow app gets 504.
    let r = client
        .post(format!("http://{ingress}/cgi-bin/env"))
        .header("host", "web-shop.localhost")
        .body(vec![b'a'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let answer = tokio::task::spawn_blocking(move || {
        let mut request =
            b"POST /cgi-bin/env HTTP/1.1\r\nHost: web-shop.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        request.extend_from_slice(format!("{:x}\r\n", 100 * 1024).as_bytes());
        request.extend(std::iter::repeat_n(b'a', 100 * 1024));
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        raw(ingress, &request, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let started = Instant::now();
    let (status, body) = get(&client, ingress, "web-shop.localhost", "/cgi-bin/slow").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A connection upgrade is passed through and both directions are spliced.
    let (_tunnel, job) = create(&owner, &project_id, "tunnel", 1, upgrade_echo_spec()).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || upgrade_and_echo(ingress, "tunnel-shop.localhost"))
        .await
        .unwrap();

    // A redeploy while requests keep coming: not one fails, and the new release takes over.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, client) = (stop.clone(), ok.clone(), failed.clone(), client.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .get(format!("http://{ingress}/"))
                    .header("host", "web-shop.localhost")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!("{other:?}"));
                    }
                }
            }
            failures
        }));
    }
    let job = act(
        &owner,
        &web,
        json!({"action": "update", "spec": echo_spec("release two")}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    assert!(ok.load(Ordering::Relaxed) > 50, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {failures:?}"
    );
    let (status, body) = get(&client, ingress, "web-shop.localhost", "/").await;
    assert_eq!((status, body.trim()), (200, "release two"));

    // Stopped: the hostname answers 503 with Berth's page.
    let job = act(&owner, &web, json!({"action": "stop"})).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get(&client, ingress, "web-shop.localhost", "/").await;
        if status == 503 {
            assert!(body.contains("has no healthy instance"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Per-route counters, for admins only: the 2xx, the 503s, a latency histogram; the
    // unknown host is not a route and is not counted.
    let routes = admin
        .get("/api/v1/ingress/routes")
        .await
        .expect_status(StatusCode::OK)
        .await;
    let web_route = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == "web-shop.localhost")
        .unwrap_or_else(|| panic!("{routes:#}"));
    let classes: Vec<u64> = serde_json::from_value(web_route["status_classes"].clone()).unwrap();
    let requests = web_route["requests"].as_u64().unwrap();
    assert!(classes[1] >= 50 && classes[4] >= 1, "{web_route:#}");
    assert_eq!(classes.iter().sum::<u64>(), requests);
    let buckets: Vec<u64> = serde_json::from_value(web_route["latency_buckets"].clone()).unwrap();
    assert_eq!(buckets.iter().sum::<u64>(), requests);
    assert!(!routes.to_string().contains("nothing-shop"), "{routes:#}");
    owner
        .get("/api/v1/ingress/routes")
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;

    for client in slowloris {
        let (took, answer) = client.join().unwrap();
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(25),
            "the slow client was cut off after {took:?}: {answer}"
        );
    }
    app.stop().await;
}

/// Route settings come with a release: least-connections sends new requests away from an
/// instance busy with a slow one; a deployment's own timeout and body limit apply to its
/// hostnames only; out-of-range settings are refused with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_settings_apply_per_deployment() {
    ensure_test_image();
    let db = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&db)).await;
    let ingress = app.ingress.unwrap();
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "routes@example.com", "shop").await;

    let mut bad = echo_spec("x");
    bad["routing"] = json!({"timeout_secs": 0});
    let e = create_raw(&owner, &project_id, "bad", 1, bad)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_value")
        .await;
    assert_eq!(e["field"], "routing.timeout_secs", "{e}");

    let mut lc = echo_spec("least");
    lc["routing"] = json!({"balance": "least_connections"});
    let (_, job) = create(&owner, &project_id, "lc", 2, lc).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let mut limited = echo_spec("limited");
    limited["routing"] = json!({"timeout_secs": 1, "max_body_bytes": 1024});
    let (_, job) = create(&owner, &project_id, "limited", 1, limited).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let client = reqwest::Client::new();
    for host in ["lc-shop.localhost", "limited-shop.localhost"] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(&client, ingress, host, "/").await.0 != 200 {
            assert!(Instant::now() < deadline, "{host} never routed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // One instance is busy for 5 s: every request meanwhile goes to the other one.
    let slow = {
        let client = client.clone();
        tokio::spawn(
            async move { get(&client, ingress, "lc-shop.localhost", "/cgi-bin/slow").await },
        )
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let (status, body) = get(&client, ingress, "lc-shop.localhost", "/cgi-bin/env").await;
        assert_eq!(status, 200, "{body}");
        seen.insert(field(&body, "me").to_owned());
    }
    assert_eq!(seen.len(), 1, "all to the idle instance: {seen:?}");
    assert_eq!(slow.await.unwrap(), (200, "late\n".to_owned()));
    // Idle again: both are used.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let (_, body) = get(&client, ingress, "lc-shop.localhost", "/cgi-bin/env").await;
        seen.insert(field(&body, "me").to_owned());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The limited deployment's own limits: 2 KiB is too large there, 1 s is its timeout.
    let r = client
        .post(format!("http://{ingress}/"))
        .header("host", "limited-shop.localhost")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let started = Instant::now();
    let (status, body) = get(&client, ingress, "limited-shop.localhost", "/cgi-bin/slow").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("within 1 s"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The other deployment keeps the installation's limits (100 MiB, 60 s).
    let r = client
        .post(format!("http://{ingress}/"))
        .header("host", "lc-shop.localhost")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 413);

    // A request head over 64 KiB: 431 from hyper, and the route keeps serving.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: lc-shop.localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer =
        tokio::task::spawn_blocking(move || raw(ingress, huge.as_bytes(), Duration::from_secs(5)))
            .await
            .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(get(&client, ingress, "lc-shop.localhost", "/").await.0, 200);

    // An app that accepts and closes without answering: 502, and other routes are fine.
    let reset = json!({
        "image": TEST_IMAGE,
        "http_port": 8080,
        "plan_id": "plan-small",
        "command": ["/bin/busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/busybox", "true"],
    });
    let (_, job) = create(&owner, &project_id, "reset", 1, reset).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get(&client, ingress, "reset-shop.localhost", "/").await;
        if status == 502 {
            assert!(body.contains("did not answer"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&client, ingress, "lc-shop.localhost", "/").await.0, 200);
    app.stop().await;
}
