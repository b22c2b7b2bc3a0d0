//! Custom domains against a real DNS server: pebble's challenge test server
//! (`pebble-challtestsrv`, Debian package `pebble`) on loopback, whose records the test sets
//! through its management API. A domain is routed only once its TXT proof and address
//! records are right; each failed check says what it found.

#[macro_use]
mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{deploy::*, dns::*, *};
use reqwest::StatusCode;
use serde_json::json;

async fn through_ingress(ingress: SocketAddr, host: &str) -> (u16, String) {
    get_path(ingress, host, "/").await
}

async fn get_path(ingress: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{ingress}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_domain_is_routed_once_dns_proves_control() {
    ensure_test_image();
    let (dns_port, management) = (free_port(), free_port());
    let _dns = start_dns(dns_port, management);
    let db = fresh_db(Db::Sqlite).await;
    let mut config = test_config(&db);
    config.dns_resolver = Some(SocketAddr::from(([127, 0, 0, 1], dns_port)));
    config.ingress_public_ips = vec!["127.0.0.1".parse().unwrap()];
    let app = TestApp::start(config).await;
    let ingress = app.ingress.unwrap();
    let admin = app.admin_client().await;
    let (owner, project_id) = project(&app, &admin, "owner@example.com", "shop").await;
    let (other, other_project) = project(&app, &admin, "other@example.com", "rival").await;
    let (web, job) = create(&owner, &project_id, "web", 1, greeting_spec("release one")).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let (rival_web, _) = create(&other, &other_project, "web", 1, greeting_spec("rival")).await;
    let path = format!("/api/v1/deployments/{web}/domains");

    // Bad input, each with the reason; strangers cannot touch the deployment.
    let e = owner
        .post_json(&path, &json!({"hostname": "*.shop.example"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "wildcard_needs_dns01")
        .await;
    assert!(e["message"].as_str().unwrap().contains("DNS-01"), "{e}");
    for bad in [
        "web-shop.localhost",
        "https://shop.example/x",
        "shop",
        "-x.shop.example",
    ] {
        owner
            .post_json(&path, &json!({ "hostname": bad }))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_domain")
            .await;
    }
    other
        .post_json(&path, &json!({"hostname": "www.shop.example"}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found")
        .await;

    // Added: pending, with the records to create; not routed.
    let added = owner
        .post_json(&path, &json!({"hostname": "WWW.Shop.Example."}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert_eq!(added["hostname"], "www.shop.example");
    assert_eq!(added["status"], "pending");
    let id = added["id"].as_str().unwrap().to_owned();
    let token = added["dns_records"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(added["dns_records"][0]["kind"], "TXT");
    assert_eq!(
        added["dns_records"][0]["name"],
        "_berth-challenge.www.shop.example"
    );
    assert_eq!(added["dns_records"][1]["kind"], "CNAME");
    assert_eq!(added["dns_records"][1]["value"], "web-shop.localhost");
    assert_eq!(added["dns_records"][2]["kind"], "A");
    assert_eq!(added["dns_records"][2]["value"], "127.0.0.1");
    // The same hostname in another project: refused, without naming the holder.
    other
        .post_json(
            &format!("/api/v1/deployments/{rival_web}/domains"),
            &json!({"hostname": "www.shop.example"}),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "domain_taken")
        .await;

    // No TXT record yet.
    let d = verify_now(&owner, &web, &id).await;
    assert_eq!(d["status"], "pending");
    assert!(
        d["last_result"]
            .as_str()
            .unwrap()
            .contains("No TXT record at _berth-challenge.www.shop.example"),
        "{d:#}"
    );
    assert!(d["next_check_at_ms"].as_i64().unwrap() > d["last_check_at_ms"].as_i64().unwrap());
    assert_eq!(through_ingress(ingress, "www.shop.example").await.0, 404);

    // A TXT record with another value.
    dns_set(
        management,
        "/set-txt",
        json!({"host": "_berth-challenge.www.shop.example.", "value": "someone-else"}),
    )
    .await;
    let d = verify_now(&owner, &web, &id).await;
    assert!(
        d["last_result"].as_str().unwrap().contains("not the token"),
        "{d:#}"
    );

    // The right TXT record, but the name points elsewhere.
    dns_set(
        management,
        "/clear-txt",
        json!({"host": "_berth-challenge.www.shop.example."}),
    )
    .await;
    dns_set(
        management,
        "/set-txt",
        json!({"host": "_berth-challenge.www.shop.example.", "value": token}),
    )
    .await;
    let d = verify_now(&owner, &web, &id).await;
    assert_eq!(d["status"], "pending");
    assert!(
        d["last_result"]
            .as_str()
            .unwrap()
            .contains("resolves to 203.0.113.7"),
        "{d:#}"
    );

    // Pointed at the ingress: verified and routed.
    dns_set(
        management,
        "/add-a",
        json!({"host": "www.shop.example.", "addresses": ["127.0.0.1"]}),
    )
    .await;
    let d = verify_now(&owner, &web, &id).await;
    assert_eq!(d["status"], "verified", "{d:#}");
    assert!(d["verified_at_ms"].is_i64());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = through_ingress(ingress, "www.shop.example").await;
        if status == 200 {
            assert_eq!(body.trim(), "release one");
            break;
        }
        assert!(Instant::now() < deadline, "never routed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The portal's deployment page lists it; its form names the field in errors.
    let (_, _, page) = owner.html(&format!("/deployments/{web}")).await;
    let card = page.split("id=\"domains\"").nth(1).unwrap_or_default();
    assert!(
        card.contains("www.shop.example") && card.contains("verified"),
        "{page}"
    );
    let e = owner
        .rpc(
            "add_domain",
            &[("id", web.as_str()), ("hostname", "not a domain")],
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_domain")
        .await;
    assert_eq!(e["field"], "hostname");

    path_routes(&app, &owner, &other, &project_id, &rival_web).await;

    // Removed: no longer routed; the rival may now claim it (and would have to prove it).
    owner
        .delete(&format!("/api/v1/domains/{id}"))
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while through_ingress(ingress, "www.shop.example").await.0 != 404 {
        assert!(Instant::now() < deadline, "still routed after removal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let claimed = other
        .post_json(
            &format!("/api/v1/deployments/{rival_web}/domains"),
            &json!({"hostname": "www.shop.example"}),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert_ne!(
        claimed["dns_records"][0]["value"],
        token.as_str(),
        "a new token"
    );
    app.stop().await;
}

/// Path routes on the verified `www.shop.example` (served by `web`): `/api` goes to another
/// deployment of the project, the rest stays with `web`.
async fn path_routes(
    app: &TestApp,
    owner: &Browser,
    other: &Browser,
    project_id: &str,
    rival_web: &str,
) {
    let ingress = app.ingress.unwrap();
    let mut spec = greeting_spec("the api");
    // The project's `data` volume belongs to `web`.
    spec["volumes"] = json!([]);
    let (api, job) = create(owner, project_id, "api", 1, spec).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let paths = format!("/api/v1/deployments/{api}/paths");
    let route = owner
        .post_json(
            &paths,
            &json!({"hostname": "www.shop.example", "path_prefix": "/api/", "strip_prefix": true}),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    assert_eq!(route["path_prefix"], "/api");
    assert_eq!(route["routed"], true);
    let route_id = route["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Stripped: the app gets `/`, its index.
        let (status, body) = get_path(ingress, "www.shop.example", "/api").await;
        if status == 200 && body.trim() == "the api" {
            break;
        }
        assert!(Instant::now() < deadline, "never routed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get_path(ingress, "www.shop.example", "/api/")
            .await
            .1
            .trim(),
        "the api"
    );
    assert_eq!(
        through_ingress(ingress, "www.shop.example").await.1.trim(),
        "release one"
    );
    let (_, body) = get_path(ingress, "www.shop.example", "/apis").await;
    assert!(!body.contains("the api"), "/apis is not under /api: {body}");

    // Bad input, each with the reason; another project can neither use nor see the route.
    for (body, status, code) in [
        (
            json!({"hostname": "www.shop.example", "path_prefix": "/a/../b"}),
            StatusCode::BAD_REQUEST,
            "invalid_path_prefix",
        ),
        (
            json!({"hostname": "www.shop.example", "path_prefix": "/"}),
            StatusCode::BAD_REQUEST,
            "invalid_path_prefix",
        ),
        (
            json!({"hostname": "www.shop.example", "path_prefix": "/api"}),
            StatusCode::CONFLICT,
            "path_taken",
        ),
        (
            json!({"hostname": "nowhere.example", "path_prefix": "/x"}),
            StatusCode::NOT_FOUND,
            "domain_not_found",
        ),
    ] {
        owner
            .post_json(&paths, &body)
            .await
            .expect_error(status, code)
            .await;
    }
    other
        .post_json(
            &format!("/api/v1/deployments/{rival_web}/paths"),
            &json!({"hostname": "www.shop.example", "path_prefix": "/steal"}),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "domain_not_found")
        .await;
    other
        .delete(&format!("/api/v1/paths/{route_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "path_route_not_found")
        .await;

    // The portal's form (a server function) names the field in its errors.
    let e = owner
        .rpc(
            "add_path_route",
            &[
                ("id", api.as_str()),
                ("hostname", "www.shop.example"),
                ("path_prefix", "no-slash"),
                ("strip_prefix", "on"),
            ],
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_path_prefix")
        .await;
    assert_eq!(e["field"], "path_prefix");

    // The portal lists it on the deployment's page.
    let (_, _, page) = owner.html(&format!("/deployments/{api}")).await;
    let card = page.split("id=\"path-routes\"").nth(1).unwrap_or_default();
    assert!(card.contains("www.shop.example/api"), "{page}");

    // Removed: the domain's own deployment serves /api again.
    owner
        .delete(&format!("/api/v1/paths/{route_id}"))
        .await
        .expect_status(StatusCode::NO_CONTENT)
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_path(ingress, "www.shop.example", "/api")
        .await
        .1
        .contains("the api")
    {
        assert!(Instant::now() < deadline, "still routed after removal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
