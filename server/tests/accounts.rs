//! Sign-in, sessions, tokens, rate limiting and cross-site refusals, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use reqwest::{header, StatusCode};
use serde_json::json;

async fn start(db: Db) -> (TestApp, TestDb) {
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    (app, tdb)
}

async fn first_admin_signs_in_with_one_time_password(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin.clone().expect("first start creates an admin");
    assert_eq!(admin.password.len(), 20);
    let b = app.client();
    let r = b.sign_in(&admin.email, &admin.password).await;
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(cookie.starts_with("berth_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http: no Secure attribute"
    );
    r.expect_ok().await;
    let me = b
        .get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(me["email"], admin.email);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["must_change_password"], true);
    // Until the one-time password is replaced, nothing else works.
    b.get("/api/v1/projects")
        .await
        .expect_error(StatusCode::FORBIDDEN, "password_change_required")
        .await;
    b.post_json("/api/v1/projects", &json!({"name": "too-early"}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "password_change_required")
        .await;
    b.post_json(
        "/api/v1/me/password",
        &json!({"current_password": "wrong", "new_password": "a brand new password"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "wrong_password")
    .await;
    b.post_json(
        "/api/v1/me/password",
        &json!({"current_password": admin.password, "new_password": "short"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "weak_password")
    .await;

    // The one-time password is replaced; the old one stops working.
    b.post_json(
        "/api/v1/me/password",
        &json!({"current_password": admin.password, "new_password": "a brand new password"}),
    )
    .await
    .expect_status(StatusCode::NO_CONTENT)
    .await;
    let me = b
        .get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(me["must_change_password"], false);
    app.client()
        .sign_in(&admin.email, &admin.password)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;
    app.stop().await;
}

async fn wrong_passwords_are_refused_and_rate_limited(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin.clone().unwrap();
    let b = app.client();
    for _ in 0..5 {
        let err = b
            .sign_in(&admin.email, "not the password")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials")
            .await;
        assert_eq!(err["message"], "The email or password is not correct.");
    }
    // Unknown accounts get the same answer as wrong passwords.
    b.sign_in("nobody@example.com", "x")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;
    b.get("/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;
    // Locked now, even with the right password.
    let err = b
        .sign_in(&admin.email, &admin.password)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
        .await;
    assert!(err["message"].as_str().unwrap().contains("minute"), "{err}");
    b.get("/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;
    app.stop().await;
}

async fn forged_and_signed_out_sessions_are_anonymous(db: Db) {
    let (app, _db) = start(db).await;
    let forged = app
        .client()
        .http
        .get(format!("{}/api/v1/me", app.base))
        .header(header::COOKIE, "berth_session=AAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    forged
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;

    let b = app.admin_client().await;
    b.get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    b.rpc("sign_out", &[]).await.expect_ok().await;
    b.get("/api/v1/me")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;
    app.stop().await;
}

async fn session_id_rotates_at_sign_in(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin.clone().unwrap();
    let b = app.client();
    // An anonymous session exists before sign-in (a failed attempt does not create one, so
    // plant a cookie value as a fixation attacker would).
    let planted = "berth_session=BBBBBBBBBBBBBBBBBBBBBB";
    let r = b
        .http
        .post(b.url("/rpc/sign_in"))
        .header(header::ORIGIN, &b.base)
        .header(header::COOKIE, planted)
        .form(&[
            ("email", admin.email.as_str()),
            ("password", admin.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let set = r
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!set.contains("BBBBBBBBBBBBBBBBBBBBBB"), "{set}");
    app.stop().await;
}

async fn sessions_survive_a_restart(db: Db) {
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let b = app.admin_client().await;
    b.get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    app.stop().await;

    // Same database, new process (on another port: cookies are not scoped by port).
    let app = TestApp::start(test_config(&tdb)).await;
    assert!(
        app.admin.is_none(),
        "no second admin on a non-empty database"
    );
    let b = Browser {
        http: b.http,
        base: app.base.clone(),
    };
    b.get("/api/v1/me")
        .await
        .expect_status(StatusCode::OK)
        .await;
    app.stop().await;
}

async fn api_tokens_authenticate_and_can_be_revoked(db: Db) {
    let (app, _db) = start(db).await;
    let b = app.admin_client().await;
    let created = b
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "ci", "expires_in_days": 30}),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("berth_"));
    let id = created["token"]["id"].as_str().unwrap().to_owned();

    let list = b
        .get("/api/v1/tokens")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(
        !list.to_string().contains(&secret),
        "secrets are never listed"
    );

    let cli = reqwest::Client::new();
    let me = cli
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(me["role"], "admin");
    // Token clients need no Origin header: bearer requests are not cross-site requests.
    cli.post(format!("{}/api/v1/projects", app.base))
        .bearer_auth(&secret)
        .json(&json!({"name": "from-token"}))
        .send()
        .await
        .unwrap()
        .expect_status(StatusCode::CREATED)
        .await;
    cli.get(format!("{}/api/v1/me", app.base))
        .bearer_auth("berth_not-a-real-token")
        .send()
        .await
        .unwrap()
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token")
        .await;

    b.delete(&format!("/api/v1/tokens/{id}"))
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    cli.get(format!("{}/api/v1/me", app.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
    b.post_json(
        "/api/v1/tokens",
        &json!({"name": "", "expires_in_days": null}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_token_name")
    .await;
    b.post_json(
        "/api/v1/tokens",
        &json!({"name": "x", "expires_in_days": 0}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_expiry")
    .await;
    app.stop().await;
}

async fn cross_site_requests_are_refused(db: Db) {
    let (app, _db) = start(db).await;
    let b = app.admin_client().await;
    for origin in [Some("http://evil.example"), Some("null"), None] {
        let mut req = b
            .http
            .post(b.url("/api/v1/projects"))
            .json(&json!({"name": "csrf"}));
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.send()
            .await
            .unwrap()
            .expect_error(StatusCode::FORBIDDEN, "cross_site_request")
            .await;
        let mut req = b
            .http
            .post(b.url("/rpc/create_project"))
            .form(&[("name", "csrf")]);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.send()
            .await
            .unwrap()
            .expect_error(StatusCode::FORBIDDEN, "cross_site_request")
            .await;
    }
    let list = b
        .get("/api/v1/projects")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(list, json!([]), "nothing was created");
    app.stop().await;
}

on_both_databases!(
    first_admin_signs_in_with_one_time_password,
    wrong_passwords_are_refused_and_rate_limited,
    forged_and_signed_out_sessions_are_anonymous,
    session_id_rotates_at_sign_in,
    sessions_survive_a_restart,
    api_tokens_authenticate_and_can_be_revoked,
    cross_site_requests_are_refused,
);
