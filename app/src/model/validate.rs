//! Validation rules shared by the browser (instant feedback) and the server (authoritative).

use super::ApiError;

/// Longest project name, in characters. `<deployment>-<project>` must fit one DNS label
/// (63 octets, RFC 1035 §2.3.4), and deployment names are capped at 30 as well.
pub const PROJECT_NAME_MAX: usize = 30;

/// Checks that `name` is a DNS label Berth accepts for projects: 1–30 characters of `a-z`,
/// `0-9` and `-`, not starting or ending with `-` (RFC 1123 §2.1 label syntax, lower case only).
///
/// # Errors
/// `ApiError` 400 `invalid_name` on field `name`, saying what was wrong and what is accepted.
pub fn validate_project_name(name: &str) -> Result<(), ApiError> {
    validate_dns_label("name", name)
}

/// Checks the value of form field `field` against the rules of [`validate_project_name`]
/// (used for project, deployment, plan and volume names).
///
/// # Errors
/// `ApiError` 400 `invalid_name` on `field`.
pub fn validate_dns_label(field: &str, name: &str) -> Result<(), ApiError> {
    let accepted = "Use 1–30 characters: lower-case letters a–z, digits and '-', not starting or ending with '-'.";
    let err =
        |what: &str| ApiError::invalid_field(field, "invalid_name", format!("{what} {accepted}"));
    if name.is_empty() {
        return Err(err("The name is empty."));
    }
    if name.chars().count() > PROJECT_NAME_MAX {
        return Err(err(&format!(
            "The name is {} characters long.",
            name.chars().count()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(err(&format!("The name contains '{c}'.")));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(err("The name starts or ends with '-'."));
    }
    Ok(())
}

/// Checks a plan: its name follows the same rules as project names, CPU is 10–256000
/// millicores, memory 6 MiB (Docker's minimum, `docker run --memory`) to 1 TiB, storage
/// 0–100 TiB.
///
/// # Errors
/// `ApiError` 400 naming the field (`name`, `cpu_millicores`, `memory_bytes`,
/// `storage_bytes`) and the accepted range.
pub fn validate_plan(plan: &super::PlanSpec) -> Result<(), ApiError> {
    validate_project_name(&plan.name)?;
    const MIB: i64 = 1 << 20;
    let checks = [
        (
            "cpu_millicores",
            plan.cpu_millicores,
            10,
            256_000,
            "10–256000 millicores (0.01–256 cores)",
        ),
        (
            "memory_bytes",
            plan.memory_bytes,
            6 * MIB,
            1 << 40,
            "6 MiB to 1 TiB",
        ),
        (
            "storage_bytes",
            plan.storage_bytes,
            0,
            100 << 40,
            "0 to 100 TiB",
        ),
    ];
    for (field, value, min, max, accepted) in checks {
        if !(min..=max).contains(&value) {
            return Err(ApiError::invalid_field(
                field,
                "out_of_range",
                format!("{value} is out of range for {field}; use {accepted}."),
            ));
        }
    }
    Ok(())
}

/// Checks an email address enough to catch typos: one `@`, a non-empty local part, a domain
/// with a dot and no spaces, at most 254 characters (RFC 5321 §4.5.3.1.3 path limit).
/// Emails are compared lower-cased; callers normalise with [`normalize_email`].
///
/// # Errors
/// `ApiError` 400 `invalid_email` on field `email`.
pub fn validate_email(email: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::invalid_field(
            "email",
            "invalid_email",
            format!("'{email}' is not an email address. Use the form name@example.com."),
        )
    };
    if email.len() > 254 || email.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// Lower-cases and trims an email address so that lookups are case-insensitive.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Shortest accepted password, in characters (NIST SP 800-63B §5.1.1.2 asks for at least 8).
pub const PASSWORD_MIN: usize = 10;

/// Checks a new password: at least [`PASSWORD_MIN`] characters and at most 1024 (hashing cost
/// stays bounded).
///
/// # Errors
/// `ApiError` 400 `weak_password` on field `password`.
pub fn validate_new_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(ApiError::invalid_field(
            "password",
            "weak_password",
            format!("The password has {n} characters; use at least {PASSWORD_MIN}."),
        ));
    }
    if n > 1024 {
        return Err(ApiError::invalid_field(
            "password",
            "weak_password",
            "The password is longer than 1024 characters.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_dns_label_rules() {
        for ok in ["a", "web", "my-app-2", "0abc", &"x".repeat(30)] {
            assert!(validate_project_name(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in ["", "-a", "a-", "Web", "my_app", "a.b", "é", &"x".repeat(31)] {
            let e = validate_project_name(bad).expect_err(bad);
            assert_eq!(e.code, "invalid_name");
            assert_eq!(e.field.as_deref(), Some("name"));
            assert!(
                e.message.contains("1–30"),
                "message explains what is accepted"
            );
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(validate_email("a@b.co").is_ok());
        for bad in [
            "", "a", "a@b", "@b.co", "a b@c.de", "a@b@c.de", "a@.b", "a@b.",
        ] {
            assert!(validate_email(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(normalize_email("  Ann@Example.COM "), "ann@example.com");
    }

    #[test]
    fn plans_have_bounded_sizes() {
        let ok = crate::model::PlanSpec {
            name: "tiny".into(),
            cpu_millicores: 100,
            memory_bytes: 64 << 20,
            storage_bytes: 0,
        };
        assert!(validate_plan(&ok).is_ok());
        let e = validate_plan(&crate::model::PlanSpec {
            memory_bytes: 1 << 20,
            ..ok.clone()
        })
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("memory_bytes"));
        let e = validate_plan(&crate::model::PlanSpec {
            cpu_millicores: 0,
            ..ok.clone()
        })
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cpu_millicores"));
        assert!(validate_plan(&crate::model::PlanSpec {
            name: "Tiny".into(),
            ..ok
        })
        .is_err());
    }

    #[test]
    fn passwords_have_a_minimum_length() {
        assert!(validate_new_password("short").is_err());
        assert!(validate_new_password("long enough pw").is_ok());
    }
}
