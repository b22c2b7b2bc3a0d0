//! Builds over ssh with the deploy key Berth makes (OpenSSH's server on loopback serving the
//! repository), the host key pinned on first use, and the controls around builds: cancelling
//! a running build, the build timeout, a new deploy key, the webhook rate limit, and a
//! private repository (nginx asking for basic auth) without and with a token. The running
//! release keeps serving throughout.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use app::model::GitProvider;
use common::{
    builds::*,
    git::{BasicAuthFront, GitServer, SshServer},
    *,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The build timeout of this test's Berth: long enough for the small builds here, short
/// enough to wait for. A CI run under load took more than 12 s for the seven-step build
/// (about 2 s per step), so the margin is wide.
const TIMEOUT_SECS: u64 = 45;

/// The private repository's token (the basic-auth password).
const TOKEN: &str = "glpat-private-repository-token";

async fn trigger(b: &Browser, id: &str) -> String {
    let build = b
        .post_json(&format!("/api/v1/deployments/{id}/builds"), &json!({}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    build["id"].as_str().unwrap().to_owned()
}

/// Polls a build until its log contains `needle`.
async fn wait_log(b: &Browser, build: &str, needle: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = b
            .get(&format!("/api/v1/builds/{build}"))
            .await
            .expect_status(StatusCode::OK)
            .await;
        if d["log"].as_str().unwrap_or_default().contains(needle) {
            return d;
        }
        assert!(Instant::now() < deadline, "{needle:?} never logged: {d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn failure(d: &Value) -> &str {
    d["build"]["failure"].as_str().unwrap()
}

async fn ssh_deploy_keys_and_build_controls(db: Db) {
    ensure_test_image();
    let git = GitServer::start();
    let ssh = SshServer::start();
    let repo = git.repository("app.git");
    let first = commit_site(&repo, "over ssh\n");
    let tdb = fresh_db(db).await;
    let mut config = test_config(&tdb);
    config.build_allow_private_repositories = true;
    config.build_timeout_secs = TIMEOUT_SECS;
    config.webhook_deliveries_per_minute = 5;
    let app = TestApp::start(config).await;
    let admin = app.admin_client().await;
    let (owner, id) = site_deployment(&app, &admin).await;

    // An ssh URL gets a deploy key: the public half is shown, the private half is sealed.
    let created = owner
        .put_json(
            &format!("/api/v1/deployments/{id}/git"),
            &json!({"repository_url": ssh.url(&git.path("app.git")), "branch": "main",
                    "build_args": [{"name": "GREETING", "value": ARG_VALUE}]}),
        )
        .await
        .expect_status(StatusCode::OK)
        .await;
    let key = created["source"]["ssh_public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        key.starts_with("ssh-ed25519 AAAA") && key.ends_with(&format!(" berth-{id}")),
        "{key}"
    );
    let hook = created["source"]["webhook_id"].as_str().unwrap().to_owned();
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    let stored = app.store.builds().source(&id).await.unwrap().unwrap();
    let sealed = stored.ssh_private_key.unwrap();
    assert!(!sealed.contains("PRIVATE KEY"), "the key is stored sealed");
    let (_, _, page) = owner.html(&format!("/deployments/{id}")).await;
    assert!(page.contains("id=\"deploy-key\"") && page.contains(&key[..40]));
    assert!(!page.contains("PRIVATE KEY"));

    // Not yet registered at the host: the fetch is refused, with what to do.
    let b = trigger(&owner, &id).await;
    let refused = wait_build(&owner, &b).await;
    assert_eq!(refused["build"]["status"], "failed", "{refused:#}");
    assert!(failure(&refused).contains("deploy key"), "{refused:#}");

    // Registered: the build fetches over ssh, pins the host key and rolls out.
    ssh.authorize(&key);
    let b = trigger(&owner, &id).await;
    let built = wait_build(&owner, &b).await;
    assert_eq!(built["build"]["status"], "succeeded", "{built:#}");
    assert_eq!(built["build"]["commit_sha"], first.as_str());
    wait_serving(&owner, &id, "/", "over ssh").await;
    let pinned = app
        .store
        .builds()
        .source(&id)
        .await
        .unwrap()
        .unwrap()
        .ssh_known_hosts;
    assert!(pinned.contains("ssh-ed25519 "), "{pinned:?}");

    // Another host key at that address is refused: the pin holds.
    let impostor = berth::builds::ssh::generate_deploy_key("impostor").unwrap();
    let host = pinned.split_whitespace().next().unwrap().to_owned();
    let forged: Vec<&str> = impostor.public_line.split_whitespace().take(2).collect();
    app.store
        .builds()
        .set_known_hosts(&id, &format!("{host} {}\n", forged.join(" ")))
        .await
        .unwrap();
    let b = trigger(&owner, &id).await;
    let mismatch = wait_build(&owner, &b).await;
    assert_eq!(mismatch["build"]["status"], "failed", "{mismatch:#}");
    assert!(
        failure(&mismatch).contains("not the one pinned"),
        "{mismatch:#}"
    );
    app.store
        .builds()
        .set_known_hosts(&id, &pinned)
        .await
        .unwrap();

    // A slow step, cancelled while it runs: the build ends cancelled within seconds.
    repo.commit(
        "main",
        &[(
            "Dockerfile",
            &dockerfile("RUN [\"/bin/busybox\", \"sleep\", \"120\"]\n"),
        )],
        "slow",
    );
    let b = trigger(&owner, &id).await;
    wait_log(&owner, &b, "sleep").await;
    let asked = Instant::now();
    owner
        .post_json(&format!("/api/v1/builds/{b}/cancel"), &json!({}))
        .await
        .expect_status(StatusCode::ACCEPTED)
        .await;
    let cancelled = wait_build(&owner, &b).await;
    assert_eq!(cancelled["build"]["status"], "cancelled", "{cancelled:#}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert!(cancelled["build"]["release_id"].is_null());

    // The same step left alone runs into the timeout and fails with it.
    let b = trigger(&owner, &id).await;
    let timed_out = wait_build(&owner, &b).await;
    assert_eq!(timed_out["build"]["status"], "failed", "{timed_out:#}");
    assert!(
        failure(&timed_out).contains(&format!("longer than {TIMEOUT_SECS} s")),
        "{timed_out:#}"
    );
    wait_serving(&owner, &id, "/", "over ssh").await;

    // A new deploy key replaces the old one; a stranger cannot make one.
    let rotated = owner
        .post_json(
            &format!("/api/v1/deployments/{id}/git/deploy-key"),
            &json!({}),
        )
        .await
        .expect_status(StatusCode::OK)
        .await;
    let new_key = rotated["ssh_public_key"].as_str().unwrap();
    assert!(
        new_key.starts_with("ssh-ed25519 ") && new_key != key,
        "{rotated:#}"
    );
    let stranger = app.customer(&admin, "stranger@example.com").await;
    stranger
        .post_json(
            &format!("/api/v1/deployments/{id}/git/deploy-key"),
            &json!({}),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
        .await;

    // Webhook deliveries beyond the rate (5 a minute here) are refused with 429.
    let mut statuses = Vec::new();
    for n in 0..7 {
        let (status, _) = deliver(
            &app,
            GitProvider::Github,
            &hook,
            Some(&secret),
            "ping",
            &format!("ping-{n}"),
            "{}",
        )
        .await;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);

    // A private repository (nginx asking for basic auth): refused without a token, with a
    // hint. With a token over plain http, gix will not send it (only https; a test over TLS
    // would need this machine to trust a test CA, as reqwest's verifier reads the system's
    // store), and says so; the token never shows, in the source or the log.
    let private = git.repository("private.git");
    commit_site(&private, "private page\n");
    let front = BasicAuthFront::start(&git, "oauth2", TOKEN);
    let set = |token: Option<&str>| {
        let mut body = json!({"repository_url": front.url("private.git"), "branch": "main"});
        if let Some(t) = token {
            body["https_token"] = json!(t);
        }
        body
    };
    owner
        .put_json(&format!("/api/v1/deployments/{id}/git"), &set(None))
        .await
        .expect_status(StatusCode::OK)
        .await;
    let b = trigger(&owner, &id).await;
    let no_token = wait_build(&owner, &b).await;
    assert_eq!(no_token["build"]["status"], "failed", "{no_token:#}");
    assert!(
        failure(&no_token).contains("set an HTTPS token"),
        "{no_token:#}"
    );
    let saved = owner
        .put_json(&format!("/api/v1/deployments/{id}/git"), &set(Some(TOKEN)))
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(saved["source"]["has_https_token"], true);
    assert!(!saved.to_string().contains(TOKEN));
    let b = trigger(&owner, &id).await;
    let clear_text = wait_build(&owner, &b).await;
    assert_eq!(clear_text["build"]["status"], "failed", "{clear_text:#}");
    assert!(
        failure(&clear_text).contains("only ever sent over https"),
        "{clear_text:#}"
    );
    assert!(!clear_text.to_string().contains(TOKEN), "{clear_text:#}");
    wait_serving(&owner, &id, "/", "over ssh").await;

    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &format!("berth-build/{id}:{first}")])
        .output();
    app.stop().await;
}

on_both_databases!(ssh_deploy_keys_and_build_controls);
