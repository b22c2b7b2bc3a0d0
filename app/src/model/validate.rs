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
    let accepted = "Use 1–30 characters: lower-case letters a–z, digits and '-', not starting or ending with '-'.";
    let err =
        |what: &str| ApiError::invalid_field("name", "invalid_name", format!("{what} {accepted}"));
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
    fn passwords_have_a_minimum_length() {
        assert!(validate_new_password("short").is_err());
        assert!(validate_new_password("long enough pw").is_ok());
    }
}
