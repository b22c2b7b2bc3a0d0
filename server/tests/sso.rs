//! OpenID Connect sign-in against a real provider on loopback: the PyPI package
//! `oidc-provider-mock` (scripts/test.sh installs it; `BERTH_OIDC_MOCK_PYTHON` names the
//! Python that has it). The browser's part (following redirects, submitting the provider's
//! form) is done by hand with a cookie-keeping client.

#[macro_use]
mod common;

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use berth::config::OidcConfig;
use common::*;
use reqwest::{header, StatusCode};
use serde_json::json;

struct Provider {
    child: Child,
    base: String,
    /// The provider's log (stderr), kept for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    /// What the provider printed and whether it is still running, for a failure message.
    fn report(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited with {status}"),
            Ok(None) => "still running".to_owned(),
            Err(e) => format!("state unknown: {e}"),
        };
        format!(
            "provider {state}; its log:\n{}",
            self.log.lock().unwrap().join("\n")
        )
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the provider on a port the kernel picks (`--port 0`) and reads the bound port from
/// uvicorn's "Uvicorn running on http://127.0.0.1:PORT" line, so no other test can take the
/// port between choosing and binding it. Its stderr is drained by a thread for the whole run.
fn start_provider() -> Provider {
    let python = std::env::var("BERTH_OIDC_MOCK_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args([
            "-m",
            "oidc_provider_mock",
            "--port",
            "0",
            "--require-nonce",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} -m oidc_provider_mock: {e}"));
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        const MARK: &str = "Uvicorn running on http://127.0.0.1:";
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split(MARK).nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    let _ = port_tx.send(port);
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    let mut provider = Provider {
        child,
        base: String::new(),
        log,
    };
    match port_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(port) => provider.base = format!("http://127.0.0.1:{port}"),
        Err(_) => panic!("oidc-provider-mock did not start: {}", provider.report()),
    }
    provider
}

async fn set_user(provider: &mut Provider, sub: &str, claims: serde_json::Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/users/{sub}", provider.base))
        .json(&claims)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => {}
        other => panic!(
            "the mock provider did not take user {sub}: {other:?}; {}",
            provider.report()
        ),
    }
}

async fn start(db: Db, provider: &Provider) -> (TestApp, TestDb) {
    let tdb = fresh_db(db).await;
    let mut config = test_config(&tdb);
    let port = free_port();
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.public_url = format!("http://127.0.0.1:{port}");
    config.oidc = Some(OidcConfig {
        issuer_url: provider.base.clone(),
        client_id: "berth".into(),
        client_secret: Some("berth-client-secret".into()),
        label: "Mock IdP".into(),
        admin_claim: Some("groups".into()),
        admin_value: Some("berth-admins".into()),
    });
    (TestApp::start(config).await, tdb)
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("redirect expected, got {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Starts a sign-in in `b` and has the provider authorize `sub`; returns Berth's callback URL.
async fn authorize(b: &Browser, sub: &str) -> String {
    let r = b.get("/auth/oidc/start").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize_url = location(&r);
    assert!(
        authorize_url.contains("code_challenge_method=S256"),
        "{authorize_url}"
    );
    assert!(authorize_url.contains("nonce="), "{authorize_url}");
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(&authorize_url)
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "provider redirects back");
    let callback = location(&r);
    assert!(
        callback.starts_with(&format!("{}/auth/oidc/callback?", b.base)),
        "{callback}"
    );
    callback
}

async fn follow(b: &Browser, url: &str) -> String {
    let r = b.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    location(&r)
}

fn sso_error(location: &str) -> String {
    let query = location
        .strip_prefix("/sign-in?sso_error=")
        .unwrap_or_else(|| panic!("expected the sign-in page with an error, got {location}"));
    openidconnect::url::form_urlencoded::parse(format!("e={query}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned()
}

async fn sso_signs_in_creates_links_and_maps_admins(db: Db) {
    let mut provider = start_provider();
    let (app, _db) = start(db, &provider).await;

    let page = app.client().get("/sign-in").await.text().await.unwrap();
    assert!(
        page.contains("Sign in with <!-- -->Mock IdP") || page.contains("Mock IdP"),
        "SSO button shown"
    );

    // A new, verified identity in the admin group gets a new admin account.
    set_user(&mut provider, "alice", json!({"email": "Alice@Example.com", "email_verified": true, "name": "Alice", "groups": ["berth-admins"]})).await;
    let b = app.client();
    let callback = authorize(&b, "alice").await;
    assert_eq!(follow(&b, &callback).await, "/projects");
    let me = b
        .get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["display_name"], "Alice");
    assert_eq!(me["role"], "admin");
    // Replaying the callback does nothing: the pending sign-in was used up.
    let replay = app.client();
    assert!(follow(&replay, &callback)
        .await
        .starts_with("/sign-in?sso_error="));

    // An existing local account is linked by verified email; no new account is made.
    let admin = app.admin_client().await;
    let carol = admin
        .post_json("/api/v1/users", &json!({"email": "carol@example.com", "display_name": "Carol", "role": "customer", "password": "carol password 1"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    set_user(
        &mut provider,
        "carol-sub",
        json!({"email": "carol@example.com", "email_verified": true}),
    )
    .await;
    let c = app.client();
    let callback = authorize(&c, "carol-sub").await;
    assert_eq!(follow(&c, &callback).await, "/projects");
    let me = c
        .get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(me["id"], carol["id"]);
    assert_eq!(me["role"], "customer");
    assert_eq!(
        me["must_change_password"], false,
        "the unused one-time password is void"
    );
    c.get("/api/v1/projects")
        .await
        .expect_status(StatusCode::OK)
        .await;
    app.client()
        .sign_in("carol@example.com", "carol password 1")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;

    // An unverified email neither links nor creates an account.
    set_user(
        &mut provider,
        "mallory",
        json!({"email": "carol@example.com", "email_verified": false}),
    )
    .await;
    let m = app.client();
    let callback = authorize(&m, "mallory").await;
    let message = sso_error(&follow(&m, &callback).await);
    assert!(message.contains("not verified"), "{message}");
    m.get("/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;
    let users = admin.get("/api/v1/users").await.expect_ok().await;
    assert_eq!(
        users.as_array().unwrap().len(),
        3,
        "admin, alice, carol: {users}"
    );
    app.stop().await;
}

async fn sso_refuses_wrong_state_and_nonce(db: Db) {
    let mut provider = start_provider();
    let (app, _db) = start(db, &provider).await;
    set_user(
        &mut provider,
        "dave",
        json!({"email": "dave@example.com", "email_verified": true}),
    )
    .await;

    // Wrong state.
    let b = app.client();
    let callback = authorize(&b, "dave").await;
    let forged = callback.replace("state=", "state=forged");
    let message = sso_error(&follow(&b, &forged).await);
    assert!(message.contains("start again"), "{message}");
    b.get("/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;

    // A code issued for one sign-in attempt, presented with another attempt's state: the
    // state matches the session, but the ID token carries the first attempt's nonce.
    let b = app.client();
    let first = authorize(&b, "dave").await;
    let second = authorize(&b, "dave").await;
    let code = |url: &str| {
        openidconnect::url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned()
    };
    let second_state = openidconnect::url::Url::parse(&second)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mixed = format!(
        "{}/auth/oidc/callback?code={}&state={second_state}",
        b.base,
        code(&first)
    );
    let message = sso_error(&follow(&b, &mixed).await);
    assert!(
        message.contains("verification") && message.to_lowercase().contains("nonce"),
        "{message}"
    );
    b.get("/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;

    // The provider's own refusal is shown.
    let b = app.client();
    b.get("/auth/oidc/start").await;
    let message = sso_error(
        &follow(
            &b,
            &format!(
                "{}/auth/oidc/callback?error=access_denied&error_description=User+said+no",
                b.base
            ),
        )
        .await,
    );
    assert!(message.contains("User said no"), "{message}");
    app.stop().await;
}

on_both_databases!(
    sso_signs_in_creates_links_and_maps_admins,
    sso_refuses_wrong_state_and_nonce
);
