//! Configuration: defaults, then `berth.toml` (or `--config FILE`), then `BERTH_*` environment
//! variables (`__` separates nested keys, e.g. `BERTH_OIDC__CLIENT_ID`). Every key can also be
//! read from a file with a `_FILE` suffix (`BERTH_OIDC__CLIENT_SECRET_FILE=/run/secrets/x`),
//! the usual way to hand secrets to containers. Validated once at start-up; an invalid value
//! stops start-up with the key and the accepted values named.

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Deserializer, Serialize};

/// A process role (ARCHITECTURE.md, deployment modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The portal, server functions and the REST API.
    Api,
    /// The reverse proxy for customers' apps.
    Ingress,
    /// Singleton loops: placement, reconciler, job workers, housekeeping.
    Scheduler,
    /// The stats streamer and rollups.
    Metrics,
}

impl Role {
    /// Every role, as run by a single-mode process.
    pub const ALL: [Role; 4] = [Role::Api, Role::Ingress, Role::Scheduler, Role::Metrics];
    const ACCEPTED: &'static str = "api, ingress, scheduler, metrics";

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "api" => Some(Self::Api),
            "ingress" => Some(Self::Ingress),
            "scheduler" => Some(Self::Scheduler),
            "metrics" => Some(Self::Metrics),
            _ => None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line.
    Json,
}

/// OpenID Connect single sign-on. Present only when an issuer is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer_url: String,
    pub client_id: String,
    /// Secret for the token endpoint (`client_secret_basic`). Prefer the `_FILE` variant.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Text of the sign-in button ("Sign in with …"). Default `SSO`.
    #[serde(default = "default_oidc_label")]
    pub label: String,
    /// A claim whose value grants the `admin` role, e.g. `groups` (string or array of strings).
    #[serde(default)]
    pub admin_claim: Option<String>,
    /// The value of `admin_claim` that means admin, e.g. `berth-admins`.
    #[serde(default)]
    pub admin_value: Option<String>,
}

fn default_oidc_label() -> String {
    "SSO".into()
}

/// Everything `berth serve` reads. Field docs give units and defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address of the portal and API. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Public base URL of the portal, used for OIDC redirects and to decide whether cookies
    /// are `Secure` (`https://…`). Default `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Directory for Berth's own files (the SQLite database). Default `./data`.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…`. Default: `sqlite:<data_dir>/berth.db`.
    pub database_url: Option<String>,
    /// Most database connections held open. Default 8.
    pub database_max_connections: u32,
    /// Roles of this process, as a list or comma-separated (`api,scheduler`). Default: every
    /// role with SQLite; must be named with PostgreSQL.
    #[serde(deserialize_with = "roles_from_list_or_string")]
    pub roles: Vec<Role>,
    /// Where the compiled site is (`pkg/` with the wasm and its JS). Default `target/site`.
    pub site_root: PathBuf,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Email of the first admin, created on first start with an empty database.
    /// Default `admin@berth.localhost`.
    pub admin_email: String,
    /// A session expires after this many hours without a request. Default 168 (7 days).
    pub session_idle_hours: u32,
    /// Failed sign-ins allowed per account within `sign_in_window_secs`. Default 5.
    pub sign_in_max_failures_per_account: u32,
    /// Failed sign-ins allowed per client address within the window. Default 20.
    pub sign_in_max_failures_per_client: u32,
    /// Length of the sign-in failure window, in seconds. Default 900.
    pub sign_in_window_secs: u64,
    /// Seconds to wait for in-flight requests after SIGTERM. Default 10.
    pub shutdown_grace_secs: u64,
    /// The local Docker engine, registered as node `local`. Default
    /// `unix:///var/run/docker.sock`.
    pub docker_host: String,
    /// Most instances the local node runs. Default 100.
    pub local_node_max_instances: u32,
    /// OpenID Connect provider; SSO is off when absent.
    pub oidc: Option<OidcConfig>,
    /// Key that encrypts secrets at rest (secret env values): 32 random bytes, base64.
    /// Default: read from `<data_dir>/secret.key`, created on first start. Required with
    /// PostgreSQL, where every controller must share it. Use `BERTH_SECRET_KEY_FILE`.
    pub secret_key: Option<String>,
    /// Extra labels put on every container, network and volume Berth creates (for example to
    /// tell installations or test runs apart). Default none.
    pub docker_labels: std::collections::BTreeMap<String, String>,
    /// Seconds between full resyncs of the reconciler (Docker events act at once). Default 60.
    pub reconcile_interval_secs: u64,
    /// Jobs (deploys, scaling, ...) run at the same time by this process. Default 4.
    pub job_workers: u32,
    /// Where the ingress (role `ingress`) accepts plain-HTTP requests for customers' apps.
    /// Default `127.0.0.1:8000`; production configs use `0.0.0.0:80`. Empty: no ingress.
    #[serde(default, deserialize_with = "optional_addr")]
    pub ingress_http_listen: Option<SocketAddr>,
    /// Where the ingress accepts HTTPS (TLS 1.2/1.3, certificate by SNI). Default
    /// `127.0.0.1:8443`; production configs use `0.0.0.0:443`. Empty: no HTTPS.
    #[serde(default, deserialize_with = "optional_addr")]
    pub ingress_https_listen: Option<SocketAddr>,
    /// Deployments are served at `<deployment>-<project>.<base_domain>`. Default `localhost`,
    /// which browsers resolve to 127.0.0.1 without DNS.
    pub base_domain: String,
    /// Largest request body the ingress passes to an app, bytes. Default 104857600 (100 MiB).
    pub ingress_max_body_bytes: u64,
    /// Seconds an app has to start answering a request through the ingress. Default 60.
    pub ingress_upstream_timeout_secs: u64,
    /// Write a structured access log line per ingress request (target `berth::access`).
    /// Default `true`.
    pub ingress_access_log: bool,
    /// Addresses of the ingress as the internet sees them: a custom domain may point at them
    /// with A/AAAA records (otherwise with a CNAME to its generated hostname). Default
    /// `["127.0.0.1"]`.
    pub ingress_public_ips: Vec<std::net::IpAddr>,
    /// The DNS server that custom-domain checks ask (`IP:PORT`). Default: empty, the system's
    /// resolvers from `/etc/resolv.conf`.
    #[serde(default, deserialize_with = "optional_addr")]
    pub dns_resolver: Option<SocketAddr>,
    /// The ACME CA's directory URL, for certificates of verified custom domains. Default
    /// Let's Encrypt (`https://acme-v02.api.letsencrypt.org/directory`). Empty: no ACME (the
    /// self-signed `*.<base_domain>` certificate only).
    pub acme_directory_url: String,
    /// Contacts for the ACME account, e.g. `["mailto:ops@example.com"]`. Default none.
    pub acme_contact: Vec<String>,
    /// A PEM file of extra root certificates to trust for the ACME directory (a private or
    /// test CA such as pebble). Default: none, the system's roots.
    pub acme_ca_roots: Option<PathBuf>,
    /// `http-01` (the ingress's HTTP listener must be the domain's port 80) or `tls-alpn-01`
    /// (its HTTPS listener must be port 443, in the same process as the scheduler).
    /// `dns-01` needs `acme_dns_update`. Default `http-01`.
    pub acme_challenge: crate::ingress::acme::ChallengeKind,
    /// An RFC 2136 dynamic-update server and TSIG key for DNS-01 answers
    /// (`[acme_dns_update]` with `server`, `key_name`, `key_algorithm`, `key_secret`).
    /// Wildcard custom domains are accepted only when it is set. Default: none.
    pub acme_dns_update: Option<crate::ingress::dns_update::DnsUpdateConfig>,
    /// Where the metrics streamer (role `metrics`) reads instances' counters: `auto` (the
    /// containers' cgroup files when the engine is local, else the engine's stats stream)
    /// or `docker` (always the stats stream). Default `auto`.
    pub metrics_source: crate::metrics::MetricsSource,
    /// The bearer token Prometheus sends to `GET /metrics`. Default: none, and `/metrics`
    /// answers 404. Prefer `BERTH_METRICS_TOKEN_FILE`.
    pub metrics_token: Option<String>,
    /// Days of minute rollups kept for the history charts (at least 1). Default 7.
    pub metrics_minutes_retention_days: u32,
    /// Days of hourly usage kept for billing (at least 1). Default 400.
    pub metrics_hours_retention_days: u32,
    /// Hours between the scheduled checks of each backup repository (at least 1). Default
    /// 168 (weekly).
    pub backup_check_interval_hours: u32,
    /// Share of a repository's pack files a check reads and verifies, percent (0–100).
    /// Default 10.
    pub backup_check_read_data_percent: u8,
    /// Builds run at the same time on one node; more wait their turn. Default 2.
    pub build_concurrency: u32,
    /// Seconds a build (fetch and image build) may take before it is stopped. Default 1800.
    pub build_timeout_secs: u64,
    /// Largest build context (the tar of the context directory), bytes. Default 512 MiB.
    pub build_context_max_bytes: u64,
    /// Images kept per deployment from earlier builds (the current release's is always
    /// kept); older ones are removed after each successful build. Default 5.
    pub build_images_kept: u32,
    /// Allows repositories on loopback, private, link-local and other non-public addresses,
    /// and plain `http://` URLs (an installation whose git server is on its own network).
    /// Default false: such URLs are refused, so a build cannot reach the metadata service or
    /// Berth's own ports.
    pub build_allow_private_repositories: bool,
    /// Webhook deliveries accepted per webhook per minute; more get 429. Default 60.
    pub webhook_deliveries_per_minute: u32,
}

/// An address, or `None` for an empty string.
fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "'{t}' is not an address: use IP:PORT, e.g. 0.0.0.0:80, or an empty string for none"
            ))
        }),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 8,
            roles: Vec::new(),
            site_root: PathBuf::from("target/site"),
            log_format: LogFormat::Text,
            admin_email: "admin@berth.localhost".into(),
            session_idle_hours: 168,
            sign_in_max_failures_per_account: 5,
            sign_in_max_failures_per_client: 20,
            sign_in_window_secs: 900,
            shutdown_grace_secs: 10,
            docker_host: "unix:///var/run/docker.sock".into(),
            local_node_max_instances: 100,
            oidc: None,
            secret_key: None,
            docker_labels: std::collections::BTreeMap::new(),
            reconcile_interval_secs: 60,
            job_workers: 4,
            ingress_http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            base_domain: "localhost".into(),
            ingress_max_body_bytes: 100 << 20,
            ingress_upstream_timeout_secs: 60,
            ingress_access_log: true,
            ingress_public_ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            dns_resolver: None,
            ingress_https_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            acme_directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_contact: Vec::new(),
            acme_ca_roots: None,
            acme_challenge: crate::ingress::acme::ChallengeKind::Http01,
            metrics_source: crate::metrics::MetricsSource::Auto,
            metrics_token: None,
            metrics_minutes_retention_days: 7,
            metrics_hours_retention_days: 400,
            backup_check_interval_hours: 168,
            backup_check_read_data_percent: 10,
            acme_dns_update: None,
            build_concurrency: 2,
            build_timeout_secs: 1800,
            build_context_max_bytes: 512 << 20,
            build_images_kept: 5,
            build_allow_private_repositories: false,
            webhook_deliveries_per_minute: 60,
        }
    }
}

fn roles_from_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Role>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    let items: Vec<String> = match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::One(s) => s.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Role::parse(s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown role '{}'; accepted: {}",
                    s.trim(),
                    Role::ACCEPTED
                ))
            })
        })
        .collect()
}

/// A configuration problem, with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl Config {
    /// Loads defaults, then `file` (if it exists), then `BERTH_*` variables, then `_FILE`
    /// variants; warns about unknown keys; validates.
    ///
    /// # Errors
    /// `ConfigError` naming the key and what is accepted.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Config::load`] with an explicit environment (tests pass their own).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_from(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BERTH_"))
            .collect();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let path = file
            .map(PathBuf::from)
            .unwrap_or_else(|| "berth.toml".into());
        if path.exists() {
            figment = figment.merge(Toml::file(&path));
        } else if file.is_some() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        // Same rules as figment's `Env::prefixed("BERTH_").split("__")`, but over the given
        // environment so that tests do not depend on the process's.
        for (name, value) in env.iter().filter(|(k, _)| !k.ends_with("_FILE")) {
            let key = name["BERTH_".len()..].to_lowercase().replace("__", ".");
            if key == "config" {
                continue;
            }
            let value: figment::value::Value = value.parse().unwrap_or_else(|e| match e {});
            figment = figment.merge((key, value));
        }
        for (name, file) in env.iter().filter(|(k, _)| k.ends_with("_FILE")) {
            let key = name["BERTH_".len()..name.len() - "_FILE".len()]
                .to_lowercase()
                .replace("__", ".");
            let value = std::fs::read_to_string(file).map_err(|e| ConfigError::Key {
                key: key.clone(),
                message: format!("cannot read {name}={file}: {e}"),
            })?;
            figment = figment.merge((key, value.trim_end_matches(['\n', '\r']).to_owned()));
        }
        let config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            ConfigError::Key {
                key: if key.is_empty() { "(root)".into() } else { key },
                message: e.kind.to_string(),
            }
        })?;
        for key in unknown_keys(&figment) {
            tracing::warn!(config.key = %key, "unknown configuration key ignored");
        }
        config.validate()
    }

    fn validate(mut self) -> Result<Self, ConfigError> {
        let url = self.database_url();
        let backend = crate::store::Backend::from_url(&url).map_err(|_| ConfigError::Key {
            key: "database_url".into(),
            message: format!(
                "'{url}' is not supported; use sqlite:PATH or postgres://USER@HOST/DB"
            ),
        })?;
        if self.roles.is_empty() {
            if backend == crate::store::Backend::Postgres {
                return Err(ConfigError::Key {
                    key: "roles".into(),
                    message: format!(
                        "with PostgreSQL the roles of each process must be named (BERTH_ROLES=api,scheduler,…); accepted: {}",
                        Role::ACCEPTED
                    ),
                });
            }
            self.roles = Role::ALL.to_vec();
        }
        let unique: BTreeSet<Role> = self.roles.iter().copied().collect();
        self.roles = unique.into_iter().collect();
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(ConfigError::Key {
                key: "public_url".into(),
                message: format!("'{}' must start with http:// or https://", self.public_url),
            });
        }
        self.public_url = self.public_url.trim_end_matches('/').to_owned();
        if !self.docker_host.starts_with("unix://") {
            return Err(ConfigError::Key {
                key: "docker_host".into(),
                message: format!(
                    "'{}' is not supported for the local engine; use unix:///path/to/docker.sock",
                    self.docker_host
                ),
            });
        }
        let acme = self.acme_directory_url.trim();
        if !(acme.is_empty() || acme.starts_with("https://") || acme.starts_with("http://")) {
            return Err(ConfigError::Key {
                key: "acme_directory_url".into(),
                message: format!("'{acme}' must be an https:// URL (or empty for no ACME)"),
            });
        }
        if let Some(update) = &self.acme_dns_update {
            update
                .validate()
                .map_err(|(field, message)| ConfigError::Key {
                    key: format!("acme_dns_update.{field}"),
                    message,
                })?;
        } else if self.acme_challenge == crate::ingress::acme::ChallengeKind::Dns01 {
            return Err(ConfigError::Key {
                key: "acme_challenge".into(),
                message: "dns-01 needs an RFC 2136 update server: set acme_dns_update \
                          (server, key_name, key_secret), or use http-01 or tls-alpn-01"
                    .into(),
            });
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::Key {
                key: "database_max_connections".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.session_idle_hours == 0 {
            return Err(ConfigError::Key {
                key: "session_idle_hours".into(),
                message: "must be at least 1".into(),
            });
        }
        for (key, days) in [
            (
                "metrics_minutes_retention_days",
                self.metrics_minutes_retention_days,
            ),
            (
                "metrics_hours_retention_days",
                self.metrics_hours_retention_days,
            ),
        ] {
            if days == 0 {
                return Err(ConfigError::Key {
                    key: key.into(),
                    message: "must be at least 1 (days)".into(),
                });
            }
        }
        if self.backup_check_read_data_percent > 100 {
            return Err(ConfigError::Key {
                key: "backup_check_read_data_percent".into(),
                message: "must be 0–100 (percent)".into(),
            });
        }
        for (key, value) in [
            (
                "backup_check_interval_hours",
                u64::from(self.backup_check_interval_hours),
            ),
            ("build_concurrency", u64::from(self.build_concurrency)),
            ("build_timeout_secs", self.build_timeout_secs),
            ("build_context_max_bytes", self.build_context_max_bytes),
            (
                "webhook_deliveries_per_minute",
                u64::from(self.webhook_deliveries_per_minute),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Key {
                    key: key.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        if backend == crate::store::Backend::Postgres && self.secret_key.is_none() {
            return Err(ConfigError::Key {
                key: "secret_key".into(),
                message: "with PostgreSQL every controller must share one key: set BERTH_SECRET_KEY_FILE to a file holding 32 random bytes in base64 (openssl rand -base64 32)".into(),
            });
        }
        if self.reconcile_interval_secs == 0 || self.job_workers == 0 {
            return Err(ConfigError::Key {
                key: if self.job_workers == 0 {
                    "job_workers"
                } else {
                    "reconcile_interval_secs"
                }
                .into(),
                message: "must be at least 1".into(),
            });
        }
        if let Some(oidc) = &self.oidc {
            if !(oidc.issuer_url.starts_with("https://") || oidc.issuer_url.starts_with("http://"))
            {
                return Err(ConfigError::Key {
                    key: "oidc.issuer_url".into(),
                    message: format!("'{}' must be an http(s) URL", oidc.issuer_url),
                });
            }
            if oidc.admin_claim.is_some() != oidc.admin_value.is_some() {
                return Err(ConfigError::Key {
                    key: "oidc.admin_claim".into(),
                    message: "admin_claim and admin_value must be set together".into(),
                });
            }
        }
        Ok(self)
    }

    /// The database URL in effect: `database_url`, or the SQLite file under `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("berth.db").display()))
    }

    /// Whether session cookies get the `Secure` attribute (the portal is served over https).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// Whether this process runs `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Top-level keys that have no default value.
const OPTIONAL_KEYS: [&str; 4] = ["oidc", "secret_key", "acme_dns_update", "metrics_token"];

/// Top-level keys given (in the file or the environment) that `Config` does not have.
fn unknown_keys(figment: &Figment) -> Vec<String> {
    let Ok(figment::value::Value::Dict(_, known)) =
        figment::value::Value::serialize(Config::default())
    else {
        return Vec::new();
    };
    let Ok(figment::value::Value::Dict(_, given)) = figment.find_value("") else {
        return Vec::new();
    };
    given
        .keys()
        // Optional sections and keys without a default are absent from the defaults.
        .filter(|k| !known.contains_key(*k) && !OPTIONAL_KEYS.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
