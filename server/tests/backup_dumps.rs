//! Database dumps on the real Docker engine, with a real PostgreSQL server in a container
//! built locally (common::postgres): rows are written, the deployment (marked as a
//! PostgreSQL database) is backed up with `pg_dump` run inside its instance, the table is
//! dropped, the restore loads the dump back with `psql`, and the rows are there again; stock
//! `restic` reads the dump from the repository. Refusals: database settings that are not
//! accepted, and a dump that fails (its database is gone) fails the backup with pg_dump's
//! message and stores no snapshot.

#[macro_use]
mod common;

use common::{backups::*, deploy::*, postgres::*, *};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn postgres_spec(database: Value) -> Value {
    json!({
        "image": POSTGRES_IMAGE,
        "http_port": 5432,
        "plan_id": "plan-small",
        "volumes": [{"name": "pgdata", "mount_path": "/var/lib/postgresql/data"}],
        "database": database,
    })
}

async fn dump_and_load(db: Db) {
    ensure_postgres_image();
    let tdb = fresh_db(db).await;
    let app = TestApp::start(test_config(&tdb)).await;
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;

    // Settings that are not accepted are refused on their field.
    for (database, field) in [
        (
            json!({"engine": "postgres", "database": "-x", "user": "postgres"}),
            "database.database",
        ),
        (
            json!({"engine": "postgres", "database": "shop", "user": "postgres", "password_env": "NOPE"}),
            "database.password_env",
        ),
    ] {
        let r = owner
            .post_json(
                &format!("/api/v1/projects/{project_id}/deployments"),
                &json!({"name": "bad", "replicas": 1, "spec": postgres_spec(database)}),
            )
            .await
            .expect_status(StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(r["error"]["field"], field, "{r:#}");
    }

    let spec = postgres_spec(json!({"engine": "postgres", "database": "shop", "user": "postgres"}));
    let (id, job) = create(&owner, &project_id, "db", 1, spec).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let container = instance(&owner, &id).await;
    psql(&container, "postgres", "CREATE DATABASE shop");
    psql(
        &container,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, item text); \
         INSERT INTO orders VALUES (1, 'tea'), (2, 'cake');",
    );

    let taken = backup(&owner, &id).await;
    assert_eq!(taken["status"], "succeeded", "{taken:#}");
    assert_eq!(taken["kind"], "database", "{taken:#}");
    assert_eq!(taken["files"], 1, "{taken:#}");
    assert!(taken["bytes_total"].as_i64().unwrap() > 100, "{taken:#}");
    let job = wait_job(&owner, taken["job_id"].as_str().unwrap()).await;
    assert!(
        job["steps"].to_string().contains("pg_dump of shop"),
        "{job:#}"
    );

    // The data is lost; the restore loads the dump back into the running server.
    psql(&container, "shop", "DROP TABLE orders");
    let restored = restore(&owner, taken["id"].as_str().unwrap()).await;
    assert_eq!(restored["status"], "succeeded", "{restored:#}");
    assert_eq!(
        psql(
            &container,
            "shop",
            "SELECT id, item FROM orders ORDER BY id"
        ),
        "1|tea\n2|cake"
    );
    assert_eq!(
        instance(&owner, &id).await,
        container,
        "the server kept running"
    );

    // Stock restic reads the dump.
    let (location, password) = reveal(&owner, &project_id).await;
    let (location, password) = (location.as_str(), password.as_str());
    let out = restic(
        location,
        password,
        &[
            "dump",
            taken["snapshot_id"].as_str().unwrap(),
            "/databases/shop.sql",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains("CREATE TABLE public.orders"), "{dump}");

    // A dump that fails fails the backup with pg_dump's message, and stores nothing.
    psql(&container, "postgres", "DROP DATABASE shop");
    let failed = backup(&owner, &id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let why = failed["failure"].as_str().unwrap();
    assert!(
        why.contains("pg_dump exited with 1") && why.contains("does not exist"),
        "{failed:#}"
    );
    let out = restic(location, password, &["snapshots", "--json"]);
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps:#}");
    app.stop().await;
}

on_both_databases!(dump_and_load);
