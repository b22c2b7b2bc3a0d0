//! Projects, members, isolation between customers and the audit log, on both databases.

#[macro_use]
mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

async fn start(db: Db) -> (TestApp, TestDb) {
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    (app, tdb)
}

async fn projects_are_created_renamed_and_deleted(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin_client().await;
    let ann = app.customer(&admin, "ann@example.com").await;

    let empty = ann
        .get("/api/v1/projects")
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(empty, json!([]));
    let p = ann
        .post_json("/api/v1/projects", &json!({"name": "shop"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert_eq!(p["name"], "shop");
    assert_eq!(p["my_role"], "owner");
    assert_eq!(p["member_count"], 1);
    let id = p["id"].as_str().unwrap().to_owned();

    let renamed = ann
        .patch_json(
            &format!("/api/v1/projects/{id}"),
            &json!({"name": "shop-2"}),
        )
        .await
        .expect_status(StatusCode::OK)
        .await;
    assert_eq!(renamed["name"], "shop-2");

    // Deleting needs the name typed again; a wrong one changes nothing.
    let err = ann
        .delete(&format!("/api/v1/projects/{id}?confirm_name=shop"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "confirmation_mismatch")
        .await;
    assert_eq!(err["field"], "confirm_name");
    ann.get(&format!("/api/v1/projects/{id}"))
        .await
        .expect_status(StatusCode::OK)
        .await;
    ann.delete(&format!("/api/v1/projects/{id}?confirm_name=shop-2"))
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    ann.get(&format!("/api/v1/projects/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "project_not_found")
        .await;
    app.stop().await;
}

async fn invalid_and_duplicate_names_are_refused(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin_client().await;
    let ann = app.customer(&admin, "ann@example.com").await;
    let bob = app.customer(&admin, "bob@example.com").await;
    for bad in ["", "Shop", "my_shop", "-shop", "shop-", &"x".repeat(31)] {
        let err = ann
            .post_json("/api/v1/projects", &json!({"name": bad}))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_name")
            .await;
        assert_eq!(err["field"], "name");
        assert!(
            err["message"].as_str().unwrap().contains("1–30 characters"),
            "{err}"
        );
    }
    ann.post_json("/api/v1/projects", &json!({"name": "shop"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    // Names are unique across customers: they become hostnames.
    let err = bob
        .post_json("/api/v1/projects", &json!({"name": "shop"}))
        .await
        .expect_error(StatusCode::CONFLICT, "name_taken")
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("'shop' is taken"),
        "{err}"
    );
    // The same refusal through the portal's server function, with the field named.
    let err = bob
        .rpc("create_project", &[("name", "shop")])
        .await
        .expect_error(StatusCode::CONFLICT, "name_taken")
        .await;
    assert_eq!(err["field"], "name");
    assert!(err["request_id"].is_string(), "errors carry the request id");
    // Malformed JSON gets the error envelope.
    let r = bob
        .http
        .post(bob.url("/api/v1/projects"))
        .header("origin", &bob.base)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    r.expect_error(StatusCode::BAD_REQUEST, "invalid_body")
        .await;
    assert_eq!(
        bob.get("/api/v1/projects").await.expect_ok().await,
        json!([])
    );
    app.stop().await;
}

async fn customers_cannot_reach_each_others_projects(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin_client().await;
    let ann = app.customer(&admin, "ann@example.com").await;
    let eve = app.customer(&admin, "eve@example.com").await;
    let p = ann
        .post_json("/api/v1/projects", &json!({"name": "private"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let id = p["id"].as_str().unwrap();

    assert_eq!(
        eve.get("/api/v1/projects").await.expect_ok().await,
        json!([])
    );
    for path in [
        format!("/api/v1/projects/{id}"),
        format!("/api/v1/projects/{id}/members"),
    ] {
        eve.get(&path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "project_not_found")
            .await;
    }
    eve.patch_json(&format!("/api/v1/projects/{id}"), &json!({"name": "mine"}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "project_not_found")
        .await;
    eve.post_json(
        &format!("/api/v1/projects/{id}/members"),
        &json!({"email": "eve@example.com", "role": "owner"}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "project_not_found")
    .await;
    eve.delete(&format!("/api/v1/projects/{id}?confirm_name=private"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "project_not_found")
        .await;
    eve.rpc("get_project", &[("id", id)])
        .await
        .expect_error(StatusCode::NOT_FOUND, "project_not_found")
        .await;
    // Customers have no admin console.
    eve.get("/api/v1/users")
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    eve.get("/api/v1/audit-events")
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;
    // Anonymous callers get nothing.
    app.client()
        .get("/api/v1/projects")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated")
        .await;
    // The project is untouched, and admins see it.
    let all = admin.get("/api/v1/projects").await.expect_ok().await;
    assert_eq!(all[0]["name"], "private");
    assert_eq!(all[0]["my_role"], serde_json::Value::Null);
    app.stop().await;
}

async fn owners_manage_members(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin_client().await;
    let ann = app.customer(&admin, "ann@example.com").await;
    let bob = app.customer(&admin, "bob@example.com").await;
    let p = ann
        .post_json("/api/v1/projects", &json!({"name": "team"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    let id = p["id"].as_str().unwrap();
    let members_path = format!("/api/v1/projects/{id}/members");

    ann.post_json(
        &members_path,
        &json!({"email": "nobody@example.com", "role": "member"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "user_not_found")
    .await;
    let m = ann
        .post_json(
            &members_path,
            &json!({"email": "BOB@example.com", "role": "member"}),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert_eq!(m["email"], "bob@example.com");
    let bob_id = m["user_id"].as_str().unwrap().to_owned();
    ann.post_json(
        &members_path,
        &json!({"email": "bob@example.com", "role": "owner"}),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "already_member")
    .await;

    // Bob now sees the project, as a member who cannot manage it.
    let list = bob.get("/api/v1/projects").await.expect_ok().await;
    assert_eq!(list[0]["name"], "team");
    assert_eq!(list[0]["my_role"], "member");
    bob.post_json(
        &members_path,
        &json!({"email": "ann@example.com", "role": "member"}),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden")
    .await;
    bob.patch_json(&format!("/api/v1/projects/{id}"), &json!({"name": "bobs"}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden")
        .await;

    // The last owner cannot leave; removing Bob works.
    let ann_id = ann.get("/api/v1/me").await.expect_ok().await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ann.delete(&format!("{members_path}/{ann_id}"))
        .await
        .expect_error(StatusCode::CONFLICT, "last_owner")
        .await;
    ann.delete(&format!("{members_path}/{bob_id}"))
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    assert_eq!(
        bob.get("/api/v1/projects").await.expect_ok().await,
        json!([])
    );
    let members = ann.get(&members_path).await.expect_ok().await;
    assert_eq!(members.as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn changes_are_written_to_the_audit_log(db: Db) {
    let (app, _db) = start(db).await;
    let admin = app.admin_client().await;
    let ann = app.customer(&admin, "ann@example.com").await;
    let p = ann
        .post_json("/api/v1/projects", &json!({"name": "audited"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    ann.patch_json(
        &format!("/api/v1/projects/{}", p["id"].as_str().unwrap()),
        &json!({"name": "audited-2"}),
    )
    .await
    .expect_ok()
    .await;
    app.client()
        .sign_in("ann@example.com", "wrong password")
        .await;

    let events = admin
        .get("/api/v1/audit-events?limit=50")
        .await
        .expect_ok()
        .await;
    let events = events.as_array().unwrap();
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {events:?}"))
            .clone()
    };
    let created = find("project.create");
    assert_eq!(created["actor"], "ann@example.com");
    assert_eq!(created["client_addr"], "127.0.0.1");
    assert!(created["target"].as_str().unwrap().starts_with("project:"));
    assert!(find("project.rename")["detail"]
        .as_str()
        .unwrap()
        .contains("audited-2"));
    assert_eq!(
        find("user.create")["actor"],
        app.admin.clone().unwrap().email
    );
    let failed = find("user.sign_in_failed");
    assert!(
        !failed.to_string().contains("wrong password"),
        "no secrets in the log"
    );
    // Newest first.
    assert_eq!(events[0]["action"], "user.sign_in_failed");
    app.stop().await;
}

on_both_databases!(
    projects_are_created_renamed_and_deleted,
    invalid_and_duplicate_names_are_refused,
    customers_cannot_reach_each_others_projects,
    owners_manage_members,
    changes_are_written_to_the_audit_log,
);
