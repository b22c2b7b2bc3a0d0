//! Loading and validation of the configuration.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_run_every_role_on_sqlite() {
    let c = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(c.roles, Role::ALL.to_vec());
    assert_eq!(c.database_url(), "sqlite:data/berth.db");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert!(!c.secure_cookies());
}

#[test]
fn env_overrides_and_nests() {
    let c = Config::load_from(
        None,
        env(&[
            ("BERTH_LISTEN", "127.0.0.1:9999"),
            ("BERTH_ROLES", "api,scheduler"),
            ("BERTH_OIDC__ISSUER_URL", "http://127.0.0.1:1/"),
            ("BERTH_OIDC__CLIENT_ID", "berth"),
        ]),
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9999);
    assert_eq!(c.roles, vec![Role::Api, Role::Scheduler]);
    assert_eq!(c.oidc.unwrap().client_id, "berth");
}

#[test]
fn dns_update_is_checked_and_needed_for_dns_01() {
    let secret = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMi1ieXRlcw==";
    let c = Config::load_from(
        None,
        env(&[
            ("BERTH_ACME_CHALLENGE", "dns-01"),
            ("BERTH_ACME_DNS_UPDATE__SERVER", "127.0.0.1:5353"),
            ("BERTH_ACME_DNS_UPDATE__KEY_NAME", "berth-acme"),
            ("BERTH_ACME_DNS_UPDATE__KEY_SECRET", secret),
        ]),
    )
    .unwrap();
    let update = c.acme_dns_update.unwrap();
    assert_eq!(update.server.port(), 5353);
    assert_eq!(update.key_algorithm, "hmac-sha256");

    let e = Config::load_from(None, env(&[("BERTH_ACME_CHALLENGE", "dns-01")])).unwrap_err();
    assert!(e.to_string().contains("acme_challenge"), "{e}");
    let e = Config::load_from(
        None,
        env(&[
            ("BERTH_ACME_DNS_UPDATE__SERVER", "127.0.0.1:5353"),
            ("BERTH_ACME_DNS_UPDATE__KEY_NAME", "berth-acme"),
            ("BERTH_ACME_DNS_UPDATE__KEY_SECRET", secret),
            ("BERTH_ACME_DNS_UPDATE__KEY_ALGORITHM", "hmac-md5"),
        ]),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("acme_dns_update.key_algorithm"),
        "{e}"
    );
}

#[test]
fn file_variants_read_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "s3cret\n").unwrap();
    let c = Config::load_from(
        None,
        env(&[
            ("BERTH_OIDC__ISSUER_URL", "http://127.0.0.1:1/"),
            ("BERTH_OIDC__CLIENT_ID", "berth"),
            ("BERTH_OIDC__CLIENT_SECRET_FILE", path.to_str().unwrap()),
        ]),
    )
    .unwrap();
    assert_eq!(c.oidc.unwrap().client_secret.as_deref(), Some("s3cret"));
}

#[test]
fn bad_values_name_the_key_and_accepted_values() {
    let e = Config::load_from(None, env(&[("BERTH_LISTEN", "not-an-address")])).unwrap_err();
    assert!(e.to_string().contains("`listen`"), "{e}");

    let e = Config::load_from(None, env(&[("BERTH_LOG_FORMAT", "xml")])).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("log_format") && msg.contains("json"), "{msg}");

    let e = Config::load_from(None, env(&[("BERTH_ROLES", "api,web")])).unwrap_err();
    assert!(e.to_string().contains("accepted: api, ingress"), "{e}");
}

#[test]
fn postgres_requires_named_roles() {
    let e = Config::load_from(
        None,
        env(&[("BERTH_DATABASE_URL", "postgres://berth@127.0.0.1/berth")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`roles`"), "{e}");
    let e = Config::load_from(
        None,
        env(&[
            ("BERTH_DATABASE_URL", "postgres://berth@127.0.0.1/berth"),
            ("BERTH_ROLES", "api"),
        ]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`secret_key`"), "{e}");
    let c = Config::load_from(
        None,
        env(&[
            ("BERTH_DATABASE_URL", "postgres://berth@127.0.0.1/berth"),
            ("BERTH_ROLES", "api"),
            (
                "BERTH_SECRET_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.roles, vec![Role::Api]);
}

#[test]
fn https_makes_cookies_secure_and_unknown_keys_are_found() {
    let c = Config::load_from(
        None,
        env(&[("BERTH_PUBLIC_URL", "https://berth.example.com/")]),
    )
    .unwrap();
    assert!(c.secure_cookies());
    assert_eq!(c.public_url, "https://berth.example.com");

    let figment = Figment::from(Serialized::defaults(Config::default()))
        .merge(("listen_port", 80))
        .merge(("listen", "127.0.0.1:1"));
    assert_eq!(unknown_keys(&figment), vec!["listen_port".to_owned()]);
}

#[test]
fn config_file_is_read_and_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:7000\"\nadmin_email = \"ops@example.com\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&path), env(&[("BERTH_LISTEN", "127.0.0.1:7001")])).unwrap();
    assert_eq!(c.admin_email, "ops@example.com");
    assert_eq!(c.listen.port(), 7001);
    let missing = dir.path().join("nope.toml");
    assert!(Config::load_from(Some(&missing), env(&[])).is_err());
}

#[test]
fn unsupported_database_is_refused() {
    let e = Config::load_from(None, env(&[("BERTH_DATABASE_URL", "mysql://x")])).unwrap_err();
    assert!(e.to_string().contains("database_url"), "{e}");
}
