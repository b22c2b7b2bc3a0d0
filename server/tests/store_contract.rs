//! The repository contract: the same checks against SQLite and PostgreSQL (accounts,
//! sessions, tokens, certificates, routes; the rest in store_contract_ops.rs).

#[macro_use]
mod common;

use berth::store::StoreError;
use common::{contract::*, *};
use tower_sessions::{
    session::{Id, Record},
    SessionStore,
};

async fn users_are_unique_by_email_and_identity(db: Db) {
    let (s, _db) = store(db).await;
    let a = s.users().create(user("a@example.com")).await.unwrap();
    assert_eq!(
        s.users()
            .by_email("a@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert!(matches!(
        s.users().create(user("a@example.com")).await,
        Err(StoreError::Conflict(_))
    ));
    s.users()
        .link_oidc_identity(&a.id, "http://idp", "sub-1")
        .await
        .unwrap();
    assert_eq!(
        s.users()
            .by_oidc_identity("http://idp", "sub-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    let b = s.users().create(user("b@example.com")).await.unwrap();
    assert!(matches!(
        s.users()
            .link_oidc_identity(&b.id, "http://idp", "sub-1")
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.users().set_password(&b.id, "h2", true).await.unwrap();
    let b2 = s.users().by_id(&b.id).await.unwrap().unwrap();
    assert_eq!(b2.password_hash.as_deref(), Some("h2"));
    assert!(b2.must_change_password);
    assert!(matches!(
        s.users().set_password("nope", "h", false).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.users().count().await.unwrap(), 2);
}

async fn projects_keep_unique_names_and_an_owner(db: Db) {
    let (s, _db) = store(db).await;
    let a = s.users().create(user("a@example.com")).await.unwrap();
    let b = s.users().create(user("b@example.com")).await.unwrap();
    let p = s.projects().create("web", &a.id).await.unwrap();
    assert_eq!(p.member_count, 1);
    assert!(matches!(
        s.projects().create("web", &b.id).await,
        Err(StoreError::Conflict(_))
    ));
    // A failed create leaves nothing behind (the owner row shares its transaction).
    assert_eq!(s.projects().list_for_member(&b.id).await.unwrap().len(), 0);
    s.projects()
        .add_member(&p.id, &b.id, "member")
        .await
        .unwrap();
    assert!(matches!(
        s.projects().add_member(&p.id, &b.id, "owner").await,
        Err(StoreError::Conflict(_))
    ));
    let mine = s.projects().list_for_member(&b.id).await.unwrap();
    assert_eq!(
        (mine[0].0.name.as_str(), mine[0].1.as_str()),
        ("web", "member")
    );
    assert!(matches!(
        s.projects().remove_member(&p.id, &a.id).await,
        Err(StoreError::Conflict(_))
    ));
    s.projects().remove_member(&p.id, &b.id).await.unwrap();
    assert!(matches!(
        s.projects().remove_member(&p.id, &b.id).await,
        Err(StoreError::NotFound)
    ));
    s.projects().create("api", &a.id).await.unwrap();
    assert!(matches!(
        s.projects().rename(&p.id, "api").await,
        Err(StoreError::Conflict(_))
    ));
    s.projects().rename(&p.id, "site").await.unwrap();
    let names: Vec<_> = s
        .projects()
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["api", "site"]);
    s.projects().delete(&p.id).await.unwrap();
    assert!(
        s.projects().members(&p.id).await.unwrap().is_empty(),
        "members cascade"
    );
    assert!(matches!(
        s.projects().delete(&p.id).await,
        Err(StoreError::NotFound)
    ));
}

async fn sessions_load_until_expiry(db: Db) {
    let (s, _db) = store(db).await;
    let u = s.users().create(user("a@example.com")).await.unwrap();
    let repo = s.session_repo();
    let mut live = Record {
        id: Id::default(),
        data: [("user_id".to_owned(), serde_json::json!(u.id))]
            .into_iter()
            .collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    repo.create(&mut live).await.unwrap();
    let loaded = repo.load(&live.id).await.unwrap().unwrap();
    assert_eq!(loaded.data, live.data);
    assert_eq!(
        loaded.expiry_date.unix_timestamp(),
        live.expiry_date.unix_timestamp()
    );

    let mut expired = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
    };
    repo.create(&mut expired).await.unwrap();
    assert!(
        repo.load(&expired.id).await.unwrap().is_none(),
        "expired sessions do not load"
    );
    assert_eq!(s.sessions().delete_expired().await.unwrap(), 1);
    assert_eq!(s.sessions().count().await.unwrap(), 1);
    assert_eq!(s.sessions().delete_for_user(&u.id).await.unwrap(), 1);
    assert!(repo.load(&live.id).await.unwrap().is_none());
}

async fn tokens_expire_and_audit_events_come_newest_first(db: Db) {
    let (s, _db) = store(db).await;
    let u = s.users().create(user("a@example.com")).await.unwrap();
    let t = s
        .api_tokens()
        .create(&u.id, "ci", "berth_abcdef", "hash-1", None)
        .await
        .unwrap();
    s.api_tokens()
        .create(&u.id, "old", "berth_zzzzzz", "hash-2", Some(1))
        .await
        .unwrap();
    let got = s
        .api_tokens()
        .authenticate("hash-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, t.id);
    assert!(
        s.api_tokens()
            .authenticate("hash-2")
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(s.api_tokens().list_for_user(&u.id).await.unwrap()[1]
        .last_used_at_ms
        .is_some());
    s.api_tokens().revoke(&u.id, &t.id).await.unwrap();
    assert!(matches!(
        s.api_tokens().revoke(&u.id, &t.id).await,
        Err(StoreError::NotFound)
    ));

    for action in ["first", "second", "third"] {
        s.audit_events()
            .append(berth::store::NewAuditEvent {
                actor_id: Some(u.id.clone()),
                actor: u.email.clone(),
                action: action.into(),
                target: "x".into(),
                detail: "{}".into(),
                client_addr: None,
            })
            .await
            .unwrap();
    }
    let latest: Vec<_> = s
        .audit_events()
        .latest(2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(latest, ["third", "second"]);
}

async fn certificates_keep_the_working_one_through_failures(db: Db) {
    let (s, _db) = store(db).await;
    let c = s.certificates();
    c.ensure("*.localhost", None, "self_signed", 0)
        .await
        .unwrap();
    c.ensure("shop.example", None, "acme", 10).await.unwrap();
    c.ensure("shop.example", None, "acme", 99).await.unwrap();
    assert_eq!(c.all().await.unwrap().len(), 2, "ensure is idempotent");
    let mut names = c.hostnames().await.unwrap();
    names.sort();
    assert_eq!(names, ["*.localhost", "shop.example"]);
    let slot = c.by_hostname("shop.example").await.unwrap().unwrap();
    assert_eq!((slot.next_attempt_at_ms, slot.cert_pem.clone()), (10, None));
    assert_eq!(c.due(10).await.unwrap().len(), 1, "only ACME slots are due");
    assert!(c.due(9).await.unwrap().is_empty());
    let issued = berth::store::Issued {
        cert_pem: "PEM",
        key_sealed: "enc:v1:key",
        not_before_ms: 1,
        not_after_ms: 1000,
        renew_at_ms: 700,
    };
    c.record_issued(&slot.id, &issued).await.unwrap();
    c.record_failure(&slot.id, "CA down", 760).await.unwrap();
    let slot = c.by_hostname("shop.example").await.unwrap().unwrap();
    assert_eq!(
        slot.cert_pem.as_deref(),
        Some("PEM"),
        "a failure keeps the certificate"
    );
    assert_eq!((slot.attempts, slot.last_error.as_str()), (1, "CA down"));
    assert_eq!(slot.next_attempt_at_ms, 760);
    // Challenge answers expire; accounts are replaced per directory.
    let far = berth::store::now_ms() + 60_000;
    c.put_challenge("tok", "tok.thumb", far).await.unwrap();
    c.put_challenge("tok", "tok.thumb2", far).await.unwrap();
    assert_eq!(
        c.challenge("tok").await.unwrap().as_deref(),
        Some("tok.thumb2")
    );
    c.put_challenge("old", "x", 1).await.unwrap();
    assert_eq!(c.challenge("old").await.unwrap(), None);
    c.remove_challenge("tok").await.unwrap();
    assert_eq!(c.challenge("tok").await.unwrap(), None);
    c.save_account("https://ca/dir", "enc:v1:a").await.unwrap();
    c.save_account("https://ca/dir", "enc:v1:b").await.unwrap();
    assert_eq!(
        c.account("https://ca/dir").await.unwrap().as_deref(),
        Some("enc:v1:b")
    );
    // Slots without a domain (`*.<base_domain>`, self-signed or from the CA) are never
    // pruned; a switch of source keeps the certificate held.
    assert_eq!(c.prune_orphans().await.unwrap(), 0);
    c.set_source(&slot.id, "self_signed", 5).await.unwrap();
    let slot = c.by_hostname("shop.example").await.unwrap().unwrap();
    assert_eq!(
        (
            slot.source.as_str(),
            slot.cert_pem.as_deref(),
            slot.attempts
        ),
        ("self_signed", Some("PEM"), 0)
    );
    assert_eq!(c.all().await.unwrap().len(), 2);
}

async fn path_routes_are_unique_per_domain_and_go_with_it(db: Db) {
    let (s, _db) = store(db).await;
    let owner = s.users().create(user("a@example.com")).await.unwrap();
    let p = s.projects().create("shop", &owner.id).await.unwrap();
    let deployment = |name: &'static str| {
        let s = s.clone();
        let project = p.id.clone();
        async move {
            let release = berth::store::NewRelease {
                spec: "{}".into(),
                image_digest: None,
                cause: "test".into(),
                created_by: None,
            };
            let job = berth::store::NewJob {
                kind: "deploy".into(),
                project_id: Some(project.clone()),
                deployment_id: None,
                payload: "{}".into(),
                created_by: None,
            };
            let (d, ..) = s
                .deployments()
                .create(&project, name, 1, release, &[], job)
                .await
                .unwrap()
                .unwrap();
            d.id
        }
    };
    let (web, api) = (deployment("web").await, deployment("api").await);
    let domains = s.domains();
    let shop = domains.add(&p.id, &web, "shop.example", "t").await.unwrap();
    let route = domains
        .add_path(&shop.id, &api, "/api", true)
        .await
        .unwrap();
    assert!(matches!(
        domains.add_path(&shop.id, &web, "/api", false).await,
        Err(StoreError::Conflict(_))
    ));
    let found = domains.path_by_id(&route).await.unwrap().unwrap();
    assert_eq!(
        (
            found.hostname.as_str(),
            found.path_prefix.as_str(),
            found.strip_prefix
        ),
        ("shop.example", "/api", true)
    );
    assert!(!found.domain_verified);
    assert_eq!(domains.paths_for_deployment(&api).await.unwrap().len(), 1);
    assert!(
        domains.verified_paths().await.unwrap().is_empty(),
        "routed only once the domain is verified"
    );
    // A custom domain's certificate slot is pruned while the domain is not verified.
    let certificates = s.certificates();
    certificates
        .ensure("shop.example", Some(&shop.id), "acme", 0)
        .await
        .unwrap();
    assert_eq!(certificates.prune_orphans().await.unwrap(), 1);
    domains
        .record_check(&shop.id, true, "ok", None)
        .await
        .unwrap();
    assert_eq!(domains.verified_paths().await.unwrap().len(), 1);
    assert!(domains.paths_for_deployment(&api).await.unwrap()[0].domain_verified);
    certificates
        .ensure("shop.example", Some(&shop.id), "acme", 0)
        .await
        .unwrap();
    assert_eq!(certificates.prune_orphans().await.unwrap(), 0);
    assert_eq!(
        domains
            .by_hostname("shop.example")
            .await
            .unwrap()
            .unwrap()
            .id,
        shop.id
    );
    domains.delete(&shop.id).await.unwrap();
    assert!(
        domains.path_by_id(&route).await.unwrap().is_none(),
        "removed with its domain"
    );
    assert!(certificates
        .by_hostname("shop.example")
        .await
        .unwrap()
        .is_none());
}

on_both_databases!(
    path_routes_are_unique_per_domain_and_go_with_it,
    certificates_keep_the_working_one_through_failures,
    users_are_unique_by_email_and_identity,
    projects_keep_unique_names_and_an_owner,
    sessions_load_until_expiry,
    tokens_expire_and_audit_events_come_newest_first,
);
