//! The server-rendered portal, health, the OpenAPI document, and the command line.

mod common;

use std::process::Command;

use common::*;
use reqwest::{header, StatusCode};

async fn start() -> (TestApp, TestDb) {
    let tdb = fresh_db(Db::Sqlite).await;
    let app = TestApp::start(test_config(&tdb)).await;
    (app, tdb)
}

#[tokio::test]
async fn pages_render_on_the_server_and_redirect_anonymous_users() {
    let (app, _db) = start().await;
    let anon = app.client();
    let (status, location, _) = anon.html("/projects").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location.as_deref(), Some("/sign-in"));

    let (status, _, body) = anon.html("/sign-in").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"<form action="/rpc/sign_in" method="post""#),
        "{body}"
    );
    assert!(
        !body.contains("Sign in with"),
        "no SSO button without an issuer"
    );
    assert!(body.contains("/pkg/berth.js"), "hydration script linked");

    let admin = app.admin_client().await;
    admin
        .post_json("/api/v1/projects", &serde_json::json!({"name": "rendered"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let (status, _, body) = admin.html("/projects").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(">rendered</a>"),
        "projects list is in the HTML: {body}"
    );
    let (_, _, body) = admin.html("/admin/audit").await;
    assert!(
        body.contains("project.create"),
        "audit log page lists events"
    );

    let (status, _, body) = admin.html("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Page not found"));

    let css = admin.get("/berth.css").await.text().await.unwrap();
    assert!(
        css.contains(".bg-sky-600"),
        "utilities used in components are generated"
    );
    assert!(
        css.contains("html.dark .dark"),
        "dark mode follows the html class"
    );
    app.stop().await;
}

#[tokio::test]
async fn forms_work_without_javascript() {
    let (app, _db) = start().await;
    let admin = app.admin_client().await;
    // A plain HTML form post: the browser follows a redirect back to the page, which renders
    // the server's message beside the field.
    let post = |name: &'static str| {
        admin
            .http
            .post(admin.url("/rpc/create_project"))
            .header(header::ORIGIN, &admin.base)
            .header(header::REFERER, admin.url("/projects"))
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .form(&[("name", name)])
            .send()
    };
    let r = post("Bad_Name").await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(back.starts_with(&admin.url("/projects?")), "{back}");
    let page = admin
        .http
        .get(&back)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("field-error"), "field error rendered: {page}");
    assert!(
        page.contains("The name contains &#39;B&#39;") || page.contains("The name contains 'B'")
    );

    let r = post("no-js").await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (_, _, page) = admin.html("/projects").await;
    assert!(page.contains(">no-js</a>"), "created without JavaScript");
    app.stop().await;
}

#[tokio::test]
async fn healthz_reports_the_database_and_openapi_lists_routes() {
    let (app, _db) = start().await;
    let b = app.client();
    let health = b.get("/healthz").await.expect_status(StatusCode::OK).await;
    assert_eq!(health["database"], "ok");
    let doc = b
        .get("/api/v1/openapi.json")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/{id}/members",
        "/api/v1/tokens",
        "/api/v1/users",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    assert!(doc["components"]["schemas"]["ProjectView"].is_object());
    b.get("/api/v1/nope")
        .await
        .expect_error(StatusCode::NOT_FOUND, "route_not_found")
        .await;
    let r = b.get("/healthz").await;
    assert!(r.headers().contains_key("x-request-id"));
    app.stop().await;
}

fn berth(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_clear()
        .env("BERTH_DATA_DIR", dir)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn cli_manages_users_and_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "Ops@Example.com",
            "--role",
            "admin",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created admin ops@example.com"), "{stdout}");
    assert!(stdout.contains("one-time password: "), "{stdout}");

    let out = berth(
        dir.path(),
        &["user", "create", "--email", "ops@example.com"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));

    let out = berth(
        dir.path(),
        &["user", "reset-password", "--email", "ops@example.com"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let out = berth(dir.path(), &["user", "list"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ops@example.com"));

    let out = berth(dir.path(), &["serve"], &[("BERTH_LISTEN", "nowhere")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`listen`"), "{stderr}");
    let out = berth(
        dir.path(),
        &["serve"],
        &[("BERTH_DATABASE_URL", "postgres://x@127.0.0.1:1/x")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`roles`"));

    let out = berth(dir.path(), &["serve", "--help"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("one-time"));
}
