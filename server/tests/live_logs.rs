//! Following a deployment's logs live over the WebSocket `/ws/deployments/{id}/logs`, on the
//! real Docker engine: history first, then new lines as the app writes them, instances of a
//! new release from their first line, strangers and cross-site handshakes refused, and the
//! stream closed when the deployment is deleted.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{deploy::*, ws::*, *};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

/// A spec whose app prints `<tag> <n>` every 200 ms beside its HTTP server.
fn ticking_spec(tag: &str) -> Value {
    let script = format!(
        "(i=0; while true; do echo {tag} $i; i=$((i+1)); /bin/busybox sleep 0.2; done) & \
         exec /bin/busybox httpd -f -p 8080 -h /www"
    );
    command_spec(&["/bin/busybox", "sh", "-c", &script])
}

/// The next log line, or `None` when the socket closed; panics after `wait`.
async fn next_line(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .expect("a message in time");
        match message {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| f.code);
                assert_eq!(code, Some(CloseCode::from(4404)));
                return None;
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

/// The tick number of a line `<tag> <n>`.
fn tick(line: &Value, tag: &str) -> Option<u64> {
    line["text"]
        .as_str()?
        .strip_prefix(tag)?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn logs_follow_live_over_a_websocket() {
    ensure_test_image();
    let db = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&db)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "logs@example.com", "logs").await;
    let stranger = app.customer(&admin, "stranger@example.com").await;
    let (id, job) = create(&owner, &project_id, "ticker", 1, ticking_spec("one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let path = format!("/ws/deployments/{id}/logs?tail=3");

    // A stranger is refused before any socket exists; so is a handshake from another site
    // that carries a session cookie.
    let stranger_token = token(&stranger).await;
    let bearer = format!("Bearer {stranger_token}");
    assert_eq!(
        refused_with(connect(&app, &path, &[("authorization", &bearer)]).await),
        404
    );
    let cross_site = connect(
        &app,
        &path,
        &[
            ("cookie", "berth_session=anything"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(refused_with(cross_site), 403);
    assert_eq!(refused_with(connect(&app, &path, &[]).await), 401);

    // The owner gets the last three lines, then new ones as they are written.
    let owner_token = token(&owner).await;
    let bearer = format!("Bearer {owner_token}");
    let mut socket = connect(&app, &path, &[("authorization", &bearer)])
        .await
        .unwrap();
    let mut history = Vec::new();
    for _ in 0..3 {
        let line = next_line(&mut socket, Duration::from_secs(5))
            .await
            .unwrap();
        history.push(tick(&line, "one").expect("a tick line"));
    }
    assert!(history.windows(2).all(|w| w[0] < w[1]), "{history:?}");
    let last = *history.last().unwrap();
    let mut live = Vec::new();
    while live.len() < 5 {
        let line = next_line(&mut socket, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!line["timestamp"].as_str().unwrap().is_empty());
        live.push(tick(&line, "one").unwrap());
    }
    assert!(
        live[0] > last,
        "nothing sent twice: {history:?} then {live:?}"
    );
    assert!(live.windows(2).all(|w| w[0] < w[1]), "{live:?}");

    // A redeploy: the new release's instance is followed from its first line.
    let started = Instant::now();
    let job = act(
        &owner,
        &id,
        json!({"action": "update", "spec": ticking_spec("two")}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let first_of_two = loop {
        let line = next_line(&mut socket, Duration::from_secs(10))
            .await
            .unwrap();
        if let Some(n) = tick(&line, "two") {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no line of release two"
        );
    };
    assert_eq!(
        first_of_two, 0,
        "the new instance is read from its first line"
    );

    // Deleting the deployment ends the stream with 4404.
    let job = act(
        &owner,
        &id,
        json!({"action": "delete", "remove_volumes": true}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while next_line(&mut socket, Duration::from_secs(10))
        .await
        .is_some()
    {
        assert!(Instant::now() < deadline, "the stream did not end");
    }
    app.stop().await;
}
