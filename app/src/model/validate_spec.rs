//! Validation of deployment requests, shared by the browser and the server. Every error names
//! the field (dotted path for list items, e.g. `env.2.name`) and says what is accepted.

use super::{
    validate_dns_label, ApiError, CreateDeployment, DeploymentSpec, HealthCheck, HealthProbe,
};

/// Most instances one deployment may ask for.
pub const REPLICAS_MAX: u32 = 20;
/// Most environment variables per deployment.
pub const ENV_MAX: usize = 200;
/// Longest environment value, in bytes.
pub const ENV_VALUE_MAX: usize = 32 * 1024;
/// Most named volumes per deployment.
pub const VOLUMES_MAX: usize = 16;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid_field(field, "invalid_value", message)
}

/// Checks a new deployment: its name (a DNS label, see [`validate_dns_label`]), replicas
/// 1–[`REPLICAS_MAX`] and the spec ([`validate_spec`]).
///
/// # Errors
/// `ApiError` 400 naming the field.
pub fn validate_create_deployment(req: &CreateDeployment) -> Result<(), ApiError> {
    validate_dns_label("name", &req.name)?;
    if !(1..=REPLICAS_MAX).contains(&req.replicas) {
        return Err(invalid(
            "replicas",
            format!(
                "{} replicas is out of range; use 1–{REPLICAS_MAX}.",
                req.replicas
            ),
        ));
    }
    validate_spec(&req.spec)
}

/// Checks a replica count for scaling: 0–[`REPLICAS_MAX`] (0 keeps the deployment with no
/// instance).
///
/// # Errors
/// `ApiError` 400 on field `replicas`.
pub fn validate_replicas(replicas: u32) -> Result<(), ApiError> {
    if replicas > REPLICAS_MAX {
        return Err(invalid(
            "replicas",
            format!("{replicas} replicas is out of range; use 0–{REPLICAS_MAX}."),
        ));
    }
    Ok(())
}

/// Checks an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 255 characters
/// (the portable names of POSIX.1-2017 §8.1).
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255
}

/// Checks an image reference loosely (the engine has the last word): 1–255 characters of
/// `a-z A-Z 0-9 . _ - / : @`, no leading `-`.
pub fn is_image_reference(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 255
        && !image.starts_with('-')
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
}

/// Checks a spec: image reference, env names (unique, valid) and value sizes, port 1–65535,
/// command (at most 64 arguments of 4 KiB, no NUL), volumes (unique DNS-label names and
/// absolute, distinct mount paths other than `/`), and the health check's bounds. A `Command`
/// health probe needs a non-empty argument list; an `Http` probe needs `http_port`.
///
/// # Errors
/// `ApiError` 400 naming the field, e.g. `env.0.name`, `volumes.1.mount_path`.
pub fn validate_spec(spec: &DeploymentSpec) -> Result<(), ApiError> {
    if let Some(database) = &spec.database {
        database.validate(&spec.env)?;
    }
    if !is_image_reference(&spec.image) {
        return Err(invalid(
            "image",
            format!(
                "'{}' is not an image reference. Use e.g. nginx:1.27, registry.example.com/team/app:v2 or app@sha256:<digest>.",
                spec.image
            ),
        ));
    }
    if spec.env.len() > ENV_MAX {
        return Err(invalid(
            "env",
            format!("At most {ENV_MAX} environment variables are accepted."),
        ));
    }
    for (i, var) in spec.env.iter().enumerate() {
        if !is_env_name(&var.name) {
            return Err(ApiError::invalid_field(
                format!("env.{i}.name"),
                "invalid_env_name",
                format!(
                    "'{}' is not a valid environment variable name. Use letters, digits and '_', not starting with a digit (at most 255 characters).",
                    var.name
                ),
            ));
        }
        if spec.env[..i].iter().any(|v| v.name == var.name) {
            return Err(invalid(
                format!("env.{i}.name"),
                format!("'{}' is set twice; each name may appear once.", var.name),
            ));
        }
        if let Some(v) = &var.value {
            if v.len() > ENV_VALUE_MAX || v.contains('\0') {
                return Err(invalid(
                    format!("env.{i}.value"),
                    format!(
                        "The value of {} must be at most {ENV_VALUE_MAX} bytes with no NUL character.",
                        var.name
                    ),
                ));
            }
        }
    }
    if spec.http_port == Some(0) {
        return Err(invalid("http_port", "Use a TCP port from 1 to 65535."));
    }
    if let Some(cmd) = &spec.command {
        check_argv("command", cmd)?;
    }
    check_volumes(spec)?;
    if let Some(hc) = &spec.health_check {
        check_health(hc, spec.http_port)?;
    }
    if let Some(t) = spec.routing.timeout_secs {
        if !(1..=3600).contains(&t) {
            return Err(invalid(
                "routing.timeout_secs",
                format!("{t} is out of range; use 1–3600 seconds."),
            ));
        }
    }
    if let Some(b) = spec.routing.max_body_bytes {
        if !(1024..=10 << 30).contains(&b) {
            return Err(invalid(
                "routing.max_body_bytes",
                format!("{b} is out of range; use 1024 bytes – 10 GiB (10737418240)."),
            ));
        }
    }
    Ok(())
}

fn check_argv(field: &str, argv: &[String]) -> Result<(), ApiError> {
    if argv.is_empty() || argv.len() > 64 {
        return Err(invalid(
            field,
            "Give 1–64 arguments (the program first); leave the command out to use the image's.",
        ));
    }
    if argv.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
        return Err(invalid(
            field,
            "Each argument must be at most 4096 bytes with no NUL character.",
        ));
    }
    if argv[0].trim().is_empty() {
        return Err(invalid(field, "The program (first argument) is empty."));
    }
    Ok(())
}

fn check_volumes(spec: &DeploymentSpec) -> Result<(), ApiError> {
    if spec.volumes.len() > VOLUMES_MAX {
        return Err(invalid(
            "volumes",
            format!("At most {VOLUMES_MAX} volumes are accepted."),
        ));
    }
    for (i, vol) in spec.volumes.iter().enumerate() {
        validate_dns_label(&format!("volumes.{i}.name"), &vol.name)?;
        let path = &vol.mount_path;
        let path_ok = path.starts_with('/')
            && path != "/"
            && path.len() <= 1024
            && !path.split('/').any(|seg| seg == ".." || seg == ".")
            && !path.contains(['\0', ':', ',']);
        if !path_ok {
            return Err(invalid(
                format!("volumes.{i}.mount_path"),
                format!(
                    "'{path}' is not a mount path. Use an absolute path inside the container such as /data (not '/', no '.', '..', ':' or ',')."
                ),
            ));
        }
        if spec.volumes[..i].iter().any(|v| v.name == vol.name) {
            return Err(invalid(
                format!("volumes.{i}.name"),
                format!("The volume '{}' is listed twice.", vol.name),
            ));
        }
        if spec.volumes[..i].iter().any(|v| v.mount_path == *path) {
            return Err(invalid(
                format!("volumes.{i}.mount_path"),
                format!("Two volumes are mounted at {path}."),
            ));
        }
    }
    Ok(())
}

fn check_health(hc: &HealthCheck, http_port: Option<u16>) -> Result<(), ApiError> {
    match &hc.probe {
        HealthProbe::Http { path } => {
            if !path.starts_with('/') || path.len() > 1024 || path.chars().any(char::is_whitespace)
            {
                return Err(invalid(
                    "health_check.probe.path",
                    format!("'{path}' is not a URL path. Use one starting with '/', e.g. /healthz, without spaces."),
                ));
            }
            if http_port.is_none() {
                return Err(invalid(
                    "http_port",
                    "An HTTP health check needs the HTTP port the app listens on.",
                ));
            }
        }
        HealthProbe::Command { command } => check_argv("health_check.probe.command", command)?,
    }
    let bounds = [
        ("health_check.interval_ms", hc.interval_ms, 100, 300_000),
        ("health_check.timeout_ms", hc.timeout_ms, 100, 60_000),
        ("health_check.retries", hc.retries, 1, 20),
        (
            "health_check.start_period_ms",
            hc.start_period_ms,
            0,
            600_000,
        ),
    ];
    for (field, value, min, max) in bounds {
        if !(min..=max).contains(&value) {
            return Err(invalid(
                field,
                format!("{value} is out of range; use {min}–{max}."),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnvVar, PlanId, RestartPolicy, VolumeMount};

    fn spec() -> DeploymentSpec {
        DeploymentSpec {
            image: "berth-demo/httpd:latest".into(),
            env: vec![EnvVar {
                name: "GREETING".into(),
                value: Some("hi".into()),
                secret: false,
            }],
            http_port: Some(8080),
            command: None,
            volumes: vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
            }],
            plan_id: PlanId("plan-small".into()),
            restart_policy: RestartPolicy::Always,
            database: None,
            health_check: Some(HealthCheck {
                probe: HealthProbe::Http {
                    path: "/healthz".into(),
                },
                interval_ms: 500,
                timeout_ms: 1000,
                retries: 3,
                start_period_ms: 0,
            }),
            routing: Default::default(),
        }
    }

    fn field_of(s: DeploymentSpec) -> String {
        validate_spec(&s).unwrap_err().field.unwrap()
    }

    #[test]
    fn a_good_spec_passes() {
        validate_spec(&spec()).unwrap();
    }

    #[test]
    fn env_names_are_posix_names_and_unique() {
        for ok in ["A", "_x", "DATABASE_URL", "a1"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A=B"] {
            assert!(!is_env_name(bad), "{bad}");
        }
        let mut s = spec();
        s.env.push(EnvVar {
            name: "BAD-NAME".into(),
            value: None,
            secret: false,
        });
        let e = validate_spec(&s).unwrap_err();
        assert_eq!(e.code, "invalid_env_name");
        assert_eq!(e.field.as_deref(), Some("env.1.name"));
        let mut s = spec();
        s.env.push(s.env[0].clone());
        assert_eq!(field_of(s), "env.1.name");
    }

    #[test]
    fn images_volumes_ports_and_commands_are_checked() {
        let mut s = spec();
        s.image = "bad image".into();
        assert_eq!(field_of(s), "image");
        let mut s = spec();
        s.image = "--privileged".into();
        assert_eq!(field_of(s), "image");
        for path in ["data", "/", "/a/../etc", "/a:b"] {
            let mut s = spec();
            s.volumes[0].mount_path = path.into();
            assert_eq!(field_of(s), "volumes.0.mount_path", "{path}");
        }
        let mut s = spec();
        s.volumes.push(s.volumes[0].clone());
        assert_eq!(field_of(s), "volumes.1.name");
        let mut s = spec();
        s.http_port = Some(0);
        assert_eq!(field_of(s), "http_port");
        let mut s = spec();
        s.command = Some(vec![]);
        assert_eq!(field_of(s), "command");
    }

    #[test]
    fn health_checks_are_bounded_and_need_a_port_for_http() {
        let mut s = spec();
        s.http_port = None;
        assert_eq!(field_of(s), "http_port");
        let mut s = spec();
        s.health_check.as_mut().unwrap().retries = 0;
        assert_eq!(field_of(s), "health_check.retries");
        let mut s = spec();
        s.health_check.as_mut().unwrap().probe = HealthProbe::Http {
            path: "healthz".into(),
        };
        assert_eq!(field_of(s), "health_check.probe.path");
        let hc = spec().health_check.unwrap();
        assert_eq!(hc.deadline_ms(), 3 * 1500);
    }

    #[test]
    fn replicas_are_bounded() {
        let req = CreateDeployment {
            name: "web".into(),
            replicas: 0,
            spec: spec(),
        };
        assert_eq!(
            validate_create_deployment(&req)
                .unwrap_err()
                .field
                .as_deref(),
            Some("replicas")
        );
        assert!(validate_replicas(0).is_ok());
        assert!(validate_replicas(21).is_err());
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(137));
        assert!(!RestartPolicy::Never.restarts(1));
    }
}
