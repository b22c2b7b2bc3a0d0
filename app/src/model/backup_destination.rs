//! Where a region's new backup repositories are kept: the default is a local directory under
//! Berth's data directory; admins may set an S3-compatible bucket per region.

use serde::{Deserialize, Serialize};

use super::ApiError;

/// An S3-compatible bucket as an admin sets it for a region. Requests are signed with AWS
/// Signature Version 4 and use path-style addressing (`<endpoint>/<bucket>/<key>`), which every
/// S3-compatible server accepts; restic names the same place `s3:<endpoint>/<bucket>/<prefix>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct S3Destination {
    /// `http://host[:port]` or `https://host[:port]`, no path (`https://s3.eu-west-1.amazonaws.com`).
    pub endpoint: String,
    /// The bucket, which must exist: 3–63 lowercase letters, digits, `.` and `-`.
    pub bucket: String,
    /// The signing region (`us-east-1` when the server has none).
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Key prefix inside the bucket; each project's repository is `<prefix>/<project id>`.
    /// Segments of letters, digits, `.`, `_` and `-` joined by `/`; may be empty.
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: String,
    /// Write-only: never returned by any read.
    pub secret_access_key: String,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::invalid_field(field, "invalid_backup_destination", message)
}

impl S3Destination {
    /// The same destination with surrounding blanks and the prefix's outer slashes removed.
    pub fn normalized(mut self) -> Self {
        self.endpoint = self.endpoint.trim().trim_end_matches('/').to_owned();
        self.bucket = self.bucket.trim().to_owned();
        self.region = self.region.trim().to_owned();
        if self.region.is_empty() {
            self.region = default_s3_region();
        }
        self.prefix = self.prefix.trim().trim_matches('/').to_owned();
        self.access_key_id = self.access_key_id.trim().to_owned();
        self
    }

    /// Checks every field (call on a [`Self::normalized`] value).
    ///
    /// # Errors
    /// A 400 naming the first field that is not accepted and what is.
    pub fn validate(&self) -> Result<(), ApiError> {
        let authority = self
            .endpoint
            .strip_prefix("https://")
            .or_else(|| self.endpoint.strip_prefix("http://"));
        let Some(authority) = authority else {
            return Err(invalid(
                "endpoint",
                format!(
                    "'{}' is not accepted: use http://host[:port] or https://host[:port].",
                    self.endpoint
                ),
            ));
        };
        let host_ok = !authority.is_empty()
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(invalid(
                "endpoint",
                format!(
                    "'{}' is not accepted: give only the scheme, host and port (no path, query or credentials).",
                    self.endpoint
                ),
            ));
        }
        let b = self.bucket.as_bytes();
        let bucket_ok = (3..=63).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && !self.bucket.contains("..");
        if !bucket_ok {
            return Err(invalid(
                "bucket",
                format!(
                    "'{}' is not accepted: use 3–63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit.",
                    self.bucket
                ),
            ));
        }
        let region_ok = self.region.len() <= 64
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !region_ok {
            return Err(invalid(
                "region",
                format!(
                    "'{}' is not accepted: use up to 64 letters, digits, '-' or '_' (us-east-1).",
                    self.region
                ),
            ));
        }
        let prefix_ok = self.prefix.len() <= 200
            && (self.prefix.is_empty()
                || self.prefix.split('/').all(|s| {
                    !s.is_empty()
                        && s != "."
                        && s != ".."
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                }));
        if !prefix_ok {
            return Err(invalid(
                "prefix",
                format!(
                    "'{}' is not accepted: use segments of letters, digits, '.', '_' and '-' joined by '/' (no '..'), up to 200 characters.",
                    self.prefix
                ),
            ));
        }
        for (field, value, max) in [
            ("access_key_id", &self.access_key_id, 128),
            ("secret_access_key", &self.secret_access_key, 256),
        ] {
            if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
                return Err(invalid(
                    field,
                    format!("{field} is required: 1–{max} characters without control characters."),
                ));
            }
        }
        Ok(())
    }

    /// The key prefix of `project`'s repository in the bucket: `<prefix>/<project>`.
    pub fn repository_prefix(&self, project: &str) -> String {
        if self.prefix.is_empty() {
            project.to_owned()
        } else {
            format!("{}/{project}", self.prefix)
        }
    }

    /// The location as restic names it: `s3:<endpoint>/<bucket>/<prefix>/<project>`.
    pub fn restic_location(&self, project: &str) -> String {
        format!(
            "s3:{}/{}/{}",
            self.endpoint,
            self.bucket,
            self.repository_prefix(project)
        )
    }
}

/// A region's backup destination as shown to admins (never with the secret key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BackupDestinationView {
    pub region: String,
    /// `local` (a directory under the data directory) or `s3`.
    pub kind: String,
    /// For `s3`: the endpoint.
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    /// For `s3`: the signing region.
    pub s3_region: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub updated_at_ms: Option<i64>,
}

impl BackupDestinationView {
    /// The default: repositories in local directories.
    pub fn local(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            kind: "local".into(),
            endpoint: None,
            bucket: None,
            s3_region: None,
            prefix: None,
            access_key_id: None,
            updated_at_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> S3Destination {
        S3Destination {
            endpoint: " http://127.0.0.1:9000/ ".into(),
            bucket: "berth-backups".into(),
            region: String::new(),
            prefix: "/eu/main/".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "secret".into(),
        }
        .normalized()
    }

    #[test]
    fn a_normalized_destination_is_accepted_and_named_as_restic_names_it() {
        let d = sample();
        d.validate().unwrap();
        assert_eq!(d.region, "us-east-1");
        assert_eq!(
            d.restic_location("p1"),
            "s3:http://127.0.0.1:9000/berth-backups/eu/main/p1"
        );
        assert!(!format!("{d:?}").contains("secret\""));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Change = fn(&mut S3Destination);
        let cases: [(&str, Change); 7] = [
            ("endpoint", |d| d.endpoint = "ftp://x".into()),
            ("endpoint", |d| d.endpoint = "http://h/path".into()),
            ("bucket", |d| d.bucket = "Up".into()),
            ("bucket", |d| d.bucket = "-abc".into()),
            ("prefix", |d| d.prefix = "a/../b".into()),
            ("access_key_id", |d| d.access_key_id = String::new()),
            ("secret_access_key", |d| d.secret_access_key = String::new()),
        ];
        for (field, change) in cases {
            let mut d = sample();
            change(&mut d);
            let e = d.validate().unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{d:?}");
        }
    }
}
