//! The portal's deployment form: plain text fields that map to a [`DeploymentSpec`] and back.
//! Env vars are `NAME=value` lines; secrets go in their own field, where a bare `NAME` line
//! keeps the stored value; volumes are `name:/path` lines; the command is one argument per
//! line (no shell).

use serde::{Deserialize, Serialize};

use super::{
    ApiError, BalanceStrategy, DatabaseDump, DatabaseEngine, DeploymentSpec, EnvVar, HealthCheck,
    HealthProbe, PlanId, RestartPolicy, RouteSettings, VolumeMount,
};

/// The form's fields as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentForm {
    pub image: String,
    /// Empty for none.
    pub http_port: String,
    pub plan_id: String,
    pub env: String,
    pub secret_env: String,
    pub volumes: String,
    pub command: String,
    /// Empty for the default check (TCP connect to the port).
    pub health_path: String,
    /// `always`, `on-failure` or `never`.
    pub restart_policy: String,
    /// `round-robin` (also when empty) or `least-connections`.
    #[serde(default)]
    pub balance: String,
    /// Seconds; empty for the installation's default.
    #[serde(default)]
    pub route_timeout_secs: String,
    /// Bytes; empty for the installation's default.
    #[serde(default)]
    pub route_max_body_bytes: String,
    /// A database server's dump settings, `engine:user@database[:PASSWORD_ENV]` (e.g.
    /// `postgres:app@shop:DB_PASSWORD`); empty for none.
    #[serde(default)]
    pub database: String,
}

/// Reads the form's `database` field (see [`DeploymentForm::database`]).
///
/// # Errors
/// A 400 on `database` saying what is accepted.
pub fn parse_database_field(text: &str) -> Result<Option<DatabaseDump>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::invalid_field(
            "database",
            "invalid_database",
            format!(
                "'{text}' is not engine:user@database[:PASSWORD_ENV] with engine postgres, mysql or mariadb, e.g. postgres:app@shop:DB_PASSWORD."
            ),
        )
    };
    let (engine, rest) = text.split_once(':').ok_or_else(bad)?;
    let engine = match engine {
        "postgres" => DatabaseEngine::Postgres,
        "mysql" => DatabaseEngine::Mysql,
        "mariadb" => DatabaseEngine::Mariadb,
        _ => return Err(bad()),
    };
    let (user, rest) = rest.split_once('@').ok_or_else(bad)?;
    let (database, password_env) = match rest.split_once(':') {
        Some((d, p)) => (d, Some(p.to_owned())),
        None => (rest, None),
    };
    Ok(Some(DatabaseDump {
        engine,
        database: database.to_owned(),
        user: user.to_owned(),
        password_env,
    }))
}

/// The form text of a database setting (the inverse of [`parse_database_field`]).
pub fn database_field(d: &DatabaseDump) -> String {
    let engine = match d.engine {
        DatabaseEngine::Postgres => "postgres",
        DatabaseEngine::Mysql => "mysql",
        DatabaseEngine::Mariadb => "mariadb",
    };
    match &d.password_env {
        Some(p) => format!("{engine}:{}@{}:{p}", d.user, d.database),
        None => format!("{engine}:{}@{}", d.user, d.database),
    }
}

/// An optional number from a form field: empty is `None`.
fn optional_number<T: std::str::FromStr>(
    field: &str,
    text: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    match text.trim() {
        "" => Ok(None),
        t => t.parse().map(Some).map_err(|_| {
            ApiError::invalid_field(
                field,
                "invalid_value",
                format!("'{t}' is not {what}; leave it empty for the default."),
            )
        }),
    }
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

impl DeploymentForm {
    /// The spec the form describes. Field-level checks are left to
    /// [`super::validate_spec`]; this only parses.
    ///
    /// # Errors
    /// 400 on `http_port`, `env`, `secret_env`, `volumes` or `restart_policy` for text that
    /// does not parse, naming the line.
    pub fn to_spec(&self) -> Result<DeploymentSpec, ApiError> {
        let http_port = match self.http_port.trim() {
            "" => None,
            p => Some(p.parse::<u16>().map_err(|_| {
                ApiError::invalid_field(
                    "http_port",
                    "invalid_value",
                    format!("'{p}' is not a TCP port; use 1–65535 or leave it empty."),
                )
            })?),
        };
        let mut env = Vec::new();
        for (n, line) in lines(&self.env) {
            let Some((name, value)) = line.split_once('=') else {
                return Err(ApiError::invalid_field(
                    "env",
                    "invalid_value",
                    format!("Line {} has no '='. Write NAME=value.", n + 1),
                ));
            };
            env.push(EnvVar {
                name: name.trim().to_owned(),
                value: Some(value.to_owned()),
                secret: false,
            });
        }
        for (_, line) in lines(&self.secret_env) {
            let (name, value) = match line.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (line, None),
            };
            env.push(EnvVar {
                name: name.trim().to_owned(),
                value,
                secret: true,
            });
        }
        let mut volumes = Vec::new();
        for (n, line) in lines(&self.volumes) {
            let Some((name, path)) = line.split_once(':') else {
                return Err(ApiError::invalid_field(
                    "volumes",
                    "invalid_value",
                    format!("Line {} has no ':'. Write name:/path/in/container.", n + 1),
                ));
            };
            volumes.push(VolumeMount {
                name: name.trim().to_owned(),
                mount_path: path.trim().to_owned(),
            });
        }
        let command: Vec<String> = lines(&self.command).map(|(_, l)| l.to_owned()).collect();
        let restart_policy = match self.restart_policy.trim() {
            "" | "always" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure,
            "never" => RestartPolicy::Never,
            other => {
                return Err(ApiError::invalid_field(
                    "restart_policy",
                    "invalid_value",
                    format!("'{other}' is not a restart policy; use always, on-failure or never."),
                ))
            }
        };
        let health_check = match self.health_path.trim() {
            "" => None,
            path => Some(HealthCheck {
                probe: HealthProbe::Http { path: path.into() },
                interval_ms: 2000,
                timeout_ms: 2000,
                retries: 3,
                start_period_ms: 5000,
            }),
        };
        let balance = match self.balance.trim() {
            "" | "round-robin" => BalanceStrategy::RoundRobin,
            "least-connections" => BalanceStrategy::LeastConnections,
            other => {
                return Err(ApiError::invalid_field(
                    "balance",
                    "invalid_value",
                    format!(
                    "'{other}' is not a balancing strategy; use round-robin or least-connections."
                ),
                ))
            }
        };
        let routing = RouteSettings {
            balance,
            timeout_secs: optional_number(
                "route_timeout_secs",
                &self.route_timeout_secs,
                "a number of seconds",
            )?,
            max_body_bytes: optional_number(
                "route_max_body_bytes",
                &self.route_max_body_bytes,
                "a number of bytes",
            )?,
        };
        Ok(DeploymentSpec {
            routing,
            database: parse_database_field(&self.database)?,
            image: self.image.trim().to_owned(),
            env,
            http_port,
            command: (!command.is_empty()).then_some(command),
            volumes,
            plan_id: PlanId(self.plan_id.trim().to_owned()),
            restart_policy,
            health_check,
        })
    }

    /// The form field that shows the spec field an error names: `env.3.name` is in `env` or
    /// `secret_env` (secrets follow the plain variables in the spec), `volumes.0.mount_path`
    /// in `volumes`, `health_check.*` in `health_path`.
    pub fn field_for(spec: &DeploymentSpec, field: &str) -> String {
        let head = field.split('.').next().unwrap_or(field);
        match head {
            "env" => {
                let index: Option<usize> = field.split('.').nth(1).and_then(|i| i.parse().ok());
                match index.and_then(|i| spec.env.get(i)) {
                    Some(var) if var.secret => "secret_env".into(),
                    _ => "env".into(),
                }
            }
            "volumes" => "volumes".into(),
            "health_check" => "health_path".into(),
            "database" => "database".into(),
            "routing" => match field {
                "routing.timeout_secs" => "route_timeout_secs".into(),
                "routing.max_body_bytes" => "route_max_body_bytes".into(),
                _ => "balance".into(),
            },
            _ => field.to_owned(),
        }
    }

    /// The form showing `spec` (secret values left out: their lines are bare names).
    pub fn from_spec(spec: &DeploymentSpec) -> Self {
        let env = spec
            .env
            .iter()
            .filter(|v| !v.secret)
            .map(|v| format!("{}={}", v.name, v.value.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n");
        let secret_env = spec
            .env
            .iter()
            .filter(|v| v.secret)
            .map(|v| v.name.clone())
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            image: spec.image.clone(),
            http_port: spec.http_port.map(|p| p.to_string()).unwrap_or_default(),
            plan_id: spec.plan_id.0.clone(),
            env,
            secret_env,
            volumes: spec
                .volumes
                .iter()
                .map(|v| format!("{}:{}", v.name, v.mount_path))
                .collect::<Vec<_>>()
                .join("\n"),
            command: spec.command.clone().unwrap_or_default().join("\n"),
            health_path: match spec.health_check.as_ref().map(|h| &h.probe) {
                Some(HealthProbe::Http { path }) => path.clone(),
                _ => String::new(),
            },
            restart_policy: match spec.restart_policy {
                RestartPolicy::Always => "always",
                RestartPolicy::OnFailure => "on-failure",
                RestartPolicy::Never => "never",
            }
            .into(),
            balance: match spec.routing.balance {
                BalanceStrategy::RoundRobin => "round-robin",
                BalanceStrategy::LeastConnections => "least-connections",
            }
            .into(),
            route_timeout_secs: spec
                .routing
                .timeout_secs
                .map(|t| t.to_string())
                .unwrap_or_default(),
            route_max_body_bytes: spec
                .routing
                .max_body_bytes
                .map(|b| b.to_string())
                .unwrap_or_default(),
            database: spec
                .database
                .as_ref()
                .map(database_field)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_fields_parse_or_say_what_is_accepted() {
        assert_eq!(parse_database_field("  ").unwrap(), None);
        let d = parse_database_field("mariadb:root@app").unwrap().unwrap();
        assert_eq!((d.engine, d.password_env), (DatabaseEngine::Mariadb, None));
        for bad in ["postgres", "oracle:a@b", "postgres:user", "mysql@x:y"] {
            let e = parse_database_field(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("database"), "{bad}");
        }
    }

    #[test]
    fn the_form_round_trips_and_keeps_secrets_out() {
        let form = DeploymentForm {
            image: " berth-demo/httpd:latest ".into(),
            http_port: "8080".into(),
            plan_id: "plan-small".into(),
            env: "GREETING=hello=world\n# comment\n\nMODE=prod".into(),
            secret_env: "API_KEY=s3cret\nKEPT".into(),
            volumes: "data:/data".into(),
            command: "/bin/busybox\nhttpd\n-f".into(),
            health_path: "/".into(),
            restart_policy: "on-failure".into(),
            balance: "least-connections".into(),
            route_timeout_secs: "30".into(),
            route_max_body_bytes: String::new(),
            database: "postgres:app@shop:MODE".into(),
        };
        let spec = form.to_spec().unwrap();
        let db = spec.database.clone().unwrap();
        assert_eq!(
            (
                db.engine,
                db.user.as_str(),
                db.database.as_str(),
                db.password_env.as_deref()
            ),
            (DatabaseEngine::Postgres, "app", "shop", Some("MODE"))
        );
        assert_eq!(
            DeploymentForm::from_spec(&spec).database,
            "postgres:app@shop:MODE"
        );
        assert_eq!(spec.routing.balance, BalanceStrategy::LeastConnections);
        assert_eq!(spec.routing.timeout_secs, Some(30));
        assert_eq!(spec.routing.max_body_bytes, None);
        assert_eq!(spec.image, "berth-demo/httpd:latest");
        assert_eq!(spec.env[0].value.as_deref(), Some("hello=world"));
        assert_eq!(spec.env.len(), 4);
        assert!(spec.env[2].secret && spec.env[3].value.is_none());
        assert_eq!(spec.command.as_ref().unwrap().len(), 3);
        assert_eq!(spec.restart_policy, RestartPolicy::OnFailure);
        let back = DeploymentForm::from_spec(&spec);
        assert_eq!(
            back.secret_env, "API_KEY\nKEPT",
            "secret values never shown"
        );
        assert_eq!(back.env, "GREETING=hello=world\nMODE=prod");
        assert_eq!(back.volumes, "data:/data");
        assert_eq!(
            (back.balance.as_str(), back.route_timeout_secs.as_str()),
            ("least-connections", "30")
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let e = DeploymentForm {
            env: "OK=1\nBROKEN".into(),
            ..Default::default()
        }
        .to_spec()
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("env"));
        assert!(e.message.contains("Line 2"), "{}", e.message);
        let e = DeploymentForm {
            http_port: "http".into(),
            ..Default::default()
        }
        .to_spec()
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("http_port"));
        let e = DeploymentForm {
            balance: "random".into(),
            ..Default::default()
        }
        .to_spec()
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("balance"));
        let e = DeploymentForm {
            route_timeout_secs: "soon".into(),
            ..Default::default()
        }
        .to_spec()
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("route_timeout_secs"));
    }
}
