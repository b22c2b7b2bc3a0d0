//! Builds from git on the real Docker engine: a repository served over git's smart HTTP
//! protocol (`git http-backend` behind Python's CGI server, on loopback), deliveries signed as
//! GitHub, GitLab and Gitea sign them, the image built from the repository's Dockerfile and
//! rolled out; forged, replayed and off-branch deliveries, a failing Dockerfile and a missing
//! commit leave the running release serving.

#[macro_use]
mod common;

use std::{process::Command, time::Duration};

use app::model::GitProvider;
use common::{builds::*, deploy::*, git::GitServer, ws::*, *};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn builds_from_git(db: Db) {
    ensure_test_image();
    let server = GitServer::start();
    let repo = server.repository("app.git");
    let first = commit_site(&repo, "version one\n");
    let tdb = fresh_db(db).await;
    let mut config = test_config(&tdb);
    config.build_allow_private_repositories = true;
    let data_dir = config.data_dir.clone();
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (owner, id) = site_deployment(&app, &admin).await;

    // Bad sources are refused with the field named; nothing is stored.
    for (url, code) in [
        ("file:///etc", "invalid_repository_url"),
        ("/srv/repo.git", "invalid_repository_url"),
        ("git://example.com/r.git", "invalid_repository_url"),
    ] {
        let e = owner
            .put_json(
                &format!("/api/v1/deployments/{id}/git"),
                &json!({"repository_url": url, "branch": "main"}),
            )
            .await
            .expect_error(StatusCode::BAD_REQUEST, code)
            .await;
        assert_eq!(e["field"], "repository_url");
    }
    owner
        .put_json(
            &format!("/api/v1/deployments/{id}/git"),
            &json!({"repository_url": server.url("app.git"), "branch": "main", "dockerfile_path": "Dockerfile", "context_dir": "site"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "dockerfile_outside_context")
        .await;
    owner
        .get(&format!("/api/v1/deployments/{id}/git"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "git_source_not_found")
        .await;

    // Connect: the webhook secret is in this answer only.
    let created = owner
        .put_json(
            &format!("/api/v1/deployments/{id}/git"),
            &json!({"repository_url": server.url("app.git"), "branch": "main",
                    "build_args": [{"name": "GREETING", "value": ARG_VALUE}]}),
        )
        .await
        .expect_status(StatusCode::OK)
        .await;
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    let hook = created["source"]["webhook_id"].as_str().unwrap().to_owned();
    assert_eq!(created["source"]["dockerfile_path"], "Dockerfile");
    let shown = owner
        .get(&format!("/api/v1/deployments/{id}/git"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(!shown.to_string().contains(&secret), "{shown:#}");
    assert_eq!(
        shown["webhook_paths"][0]["path"],
        format!("/webhooks/github/{hook}")
    );
    // The deployment page shows the source and the webhook paths, never the secret.
    let (status, _, page) = owner.html(&format!("/deployments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("id=\"git-source\"") && page.contains(&server.url("app.git")),
        "{page}"
    );
    assert!(page.contains(&format!("/webhooks/gitlab/{hook}")));
    assert!(!page.contains(&secret));
    // A stranger sees nothing of it.
    let stranger = app.customer(&admin, "stranger@example.com").await;
    stranger
        .get(&format!("/api/v1/deployments/{id}/git"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
        .await;

    // Forged, unsigned and unknown deliveries are refused and queue nothing.
    let body = push_body("main", &first);
    let (status, _) = deliver(
        &app,
        GitProvider::Github,
        &hook,
        Some("not the secret"),
        "push",
        "d-forged",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = deliver(
        &app,
        GitProvider::Github,
        &hook,
        None,
        "push",
        "d-unsigned",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = deliver(
        &app,
        GitProvider::Gitlab,
        &hook,
        Some("wrong token"),
        "Push Hook",
        "d-gl",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = deliver(
        &app,
        GitProvider::Github,
        "no-such-hook",
        Some(&secret),
        "push",
        "d-x",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = deliver(
        &app,
        GitProvider::Github,
        &hook,
        Some(&secret),
        "push",
        "d-json",
        "not json",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let builds = owner
        .get(&format!("/api/v1/deployments/{id}/builds"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(builds.as_array().unwrap().len(), 0, "{builds:#}");

    // Acknowledged without a build: ping, another branch, another event.
    let (status, _) = deliver(
        &app,
        GitProvider::Github,
        &hook,
        Some(&secret),
        "ping",
        "d-ping",
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, a) = deliver(
        &app,
        GitProvider::Gitea,
        &hook,
        Some(&secret),
        "push",
        "d-other",
        &push_body("feature", &first),
    )
    .await;
    assert_eq!(
        (status, a["outcome"].as_str()),
        (StatusCode::OK, Some("ignored")),
        "{a}"
    );
    let (status, _) = deliver(
        &app,
        GitProvider::Gitlab,
        &hook,
        Some(&secret),
        "Tag Push Hook",
        "d-tag",
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A signed push to main builds the commit and rolls it out.
    let (status, a) = deliver(
        &app,
        GitProvider::Github,
        &hook,
        Some(&secret),
        "push",
        "d-1",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{a}");
    let build_id = a["build_id"].as_str().unwrap().to_owned();
    // The same delivery again is a replay: acknowledged, no second build.
    let (status, a) = deliver(
        &app,
        GitProvider::Github,
        &hook,
        Some(&secret),
        "push",
        "d-1",
        &body,
    )
    .await;
    assert_eq!(
        (status, a["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{a}"
    );
    let built = wait_build(&owner, &build_id).await;
    assert_eq!(built["build"]["status"], "succeeded", "{built:#}");
    assert_eq!(built["build"]["commit_sha"], first.as_str());
    assert_eq!(built["build"]["trigger"], "github");
    assert_eq!(built["build"]["image"], format!("berth-build/{id}:{first}"));
    let log = built["log"].as_str().unwrap();
    assert!(
        log.contains("Step 1/") && log.contains(&format!(": FROM {TEST_IMAGE}")),
        "{log}"
    );
    assert!(
        log.contains("arg=***"),
        "the build argument is masked: {log}"
    );
    assert!(!log.contains(ARG_VALUE), "{log}");
    wait_serving(&owner, &id, "/", "version one").await;
    wait_serving(&owner, &id, "/arg.txt", ARG_VALUE).await;
    let d = detail(&owner, &id).await;
    assert!(
        d["releases"][0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("build #1"),
        "{d:#}"
    );
    let image_labels = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"berth.deployment\"}}",
        &format!("berth-build/{id}:{first}"),
    ]);
    assert_eq!(image_labels, id);

    // A manual build of a new commit, followed on the log socket to its end.
    let second = repo.commit("main", &[("site/index.html", "version two\n")], "second");
    let token = token(&owner).await;
    let b2 = owner
        .post_json(&format!("/api/v1/deployments/{id}/builds"), &json!({}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let b2_id = b2["id"].as_str().unwrap().to_owned();
    let mut socket = connect(
        &app,
        &format!("/ws/builds/{b2_id}/log"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .expect("the owner may follow the build");
    let mut text = String::new();
    let end = loop {
        let msg = tokio::time::timeout(Duration::from_secs(120), socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket stays open until the end")
            .unwrap();
        let frame: Value = match msg {
            tokio_tungstenite::tungstenite::Message::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("unexpected {other:?} after {text}"),
        };
        match frame["kind"].as_str().unwrap() {
            "text" => text.push_str(frame["text"].as_str().unwrap()),
            "end" => break frame,
            k => panic!("unknown frame {k}"),
        }
    };
    assert_eq!(end["status"], "succeeded", "{end} {text}");
    assert!(text.contains(&format!("commit {second}")), "{text}");
    assert!(
        text.contains("Successfully built") || text.contains("built berth-build/"),
        "{text}"
    );
    wait_serving(&owner, &id, "/", "version two").await;
    stranger
        .get(&format!("/api/v1/builds/{b2_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "build_not_found")
        .await;

    // A Dockerfile that fails: the build fails with the step's error; version two keeps serving.
    let broken = repo.commit(
        "main",
        &[(
            "Dockerfile",
            &dockerfile("RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo broken step; exit 3\"]\n"),
        )],
        "broken",
    );
    let (status, a) = deliver(
        &app,
        GitProvider::Gitea,
        &hook,
        Some(&secret),
        "push",
        "d-broken",
        &push_body("main", &broken),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{a}");
    let failed = wait_build(&owner, a["build_id"].as_str().unwrap()).await;
    assert_eq!(failed["build"]["status"], "failed", "{failed:#}");
    assert!(
        failed["build"]["failure"]
            .as_str()
            .unwrap()
            .contains("returned a non-zero code: 3"),
        "{failed:#}"
    );
    assert!(
        failed["log"].as_str().unwrap().contains("broken step"),
        "{failed:#}"
    );
    assert!(failed["build"]["release_id"].is_null());
    wait_serving(&owner, &id, "/", "version two").await;

    // A commit that does not exist fails clearly.
    let b = owner
        .post_json(
            &format!("/api/v1/deployments/{id}/builds"),
            &json!({"commit": "0123456789abcdef0123456789abcdef01234567"}),
        )
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let missing = wait_build(&owner, b["id"].as_str().unwrap()).await;
    assert_eq!(missing["build"]["status"], "failed", "{missing:#}");
    let why = missing["build"]["failure"].as_str().unwrap();
    assert!(
        why.contains("0123456789abcdef") || why.contains("fetch failed"),
        "{why}"
    );
    owner
        .post_json(
            &format!("/api/v1/deployments/{id}/builds"),
            &json!({"commit": "not-a-sha"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_commit")
        .await;
    wait_serving(&owner, &id, "/", "version two").await;

    // Every delivery is listed with its outcome.
    let deliveries = owner
        .get(&format!("/api/v1/deployments/{id}/webhook-deliveries"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let outcomes: Vec<&str> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "rejected").count(),
        4,
        "{deliveries:#}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "build_queued").count(),
        2,
        "{deliveries:#}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "duplicate").count(),
        1,
        "{deliveries:#}"
    );
    // Workspaces are removed after each build.
    let left: Vec<_> = std::fs::read_dir(data_dir.join("builds"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    for image in [&first, &second] {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &format!("berth-build/{id}:{image}")])
            .output();
    }
    app.stop().await;
}

on_both_databases!(builds_from_git);
