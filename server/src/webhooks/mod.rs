//! Git provider webhooks: signature checks and push-event parsing for GitHub, GitLab,
//! Gitea/Forgejo and Bitbucket Cloud. Pure functions over the headers and the raw body; the
//! HTTP route (`http::webhooks`) records each delivery and queues builds.
//!
//! Signatures, as each provider documents them:
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`
//!   (docs.github.com, "Validating webhook deliveries"); event `X-GitHub-Event`, delivery id
//!   `X-GitHub-Delivery`.
//! - GitLab: `X-Gitlab-Token: <secret>` (the secret itself, docs.gitlab.com "Webhooks");
//!   event `X-Gitlab-Event` (`Push Hook`), delivery id `X-Gitlab-Event-UUID`.
//! - Gitea / Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>` without a
//!   prefix; event `X-Gitea-Event` / `X-Forgejo-Event`, delivery id `X-Gitea-Delivery` /
//!   `X-Forgejo-Delivery`.
//! - Bitbucket Cloud: `X-Hub-Signature: sha256=<hex HMAC-SHA256>`; event `X-Event-Key`
//!   (`repo:push`, `diagnostics:ping`), delivery id `X-Request-UUID`.
//!
//! Every comparison runs in constant time (`hmac`'s `verify_slice`, `subtle` for tokens).

use app::model::GitProvider;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The largest body accepted, bytes (GitHub caps payloads at 25 MB; pushes of real size are
/// far below 1 MiB).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Why a delivery was refused before its content was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the signature header {0} is missing")]
    MissingSignature(&'static str),
    #[error("the signature does not match the webhook secret")]
    BadSignature,
    #[error("the signature header is not in the provider's format ({0})")]
    MalformedSignature(&'static str),
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A push to `branch` whose head is now `commit` (40 hex digits).
    Push { branch: String, commit: String },
    /// A push that deleted `branch`.
    BranchDeleted { branch: String },
    /// A push of a tag or other non-branch ref.
    OtherRef { reference: String },
    /// The provider's connection test.
    Ping,
    /// Any other event type, by its name.
    Other,
}

/// A delivery's headers as one provider names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The provider's event name (`push`, `Push Hook`, `repo:push`, ...), `""` when absent.
    pub event: String,
    pub delivery_id: Option<String>,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The event name and delivery id of a delivery.
pub fn envelope(provider: GitProvider, headers: &HeaderMap) -> Envelope {
    let pick = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| header(headers, n))
            .map(str::to_owned)
    };
    let (event, delivery) = match provider {
        GitProvider::Github => (pick(&["x-github-event"]), pick(&["x-github-delivery"])),
        GitProvider::Gitlab => (
            pick(&["x-gitlab-event"]),
            pick(&["x-gitlab-event-uuid", "idempotency-key"]),
        ),
        GitProvider::Gitea => (
            pick(&["x-forgejo-event", "x-gitea-event"]),
            pick(&["x-forgejo-delivery", "x-gitea-delivery"]),
        ),
        GitProvider::Bitbucket => (pick(&["x-event-key"]), pick(&["x-request-uuid"])),
    };
    Envelope {
        event: event.unwrap_or_default(),
        delivery_id: delivery.filter(|d| !d.is_empty() && d.len() <= 200),
    }
}

/// HMAC-SHA256 of `body` under `secret`, checked against `hex_signature` in constant time.
fn hmac_matches(secret: &[u8], body: &[u8], hex_signature: &str) -> Result<(), Rejection> {
    let expected = hex::decode(hex_signature)
        .map_err(|_| Rejection::MalformedSignature("hex digits expected"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Rejection::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| Rejection::BadSignature)
}

/// Checks a delivery's signature (or token) against the webhook's secret.
///
/// # Errors
/// A [`Rejection`] saying which header is missing or that it does not match.
pub fn verify(
    provider: GitProvider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> Result<(), Rejection> {
    match provider {
        GitProvider::Github | GitProvider::Bitbucket => {
            let name = if provider == GitProvider::Github {
                "X-Hub-Signature-256"
            } else {
                "X-Hub-Signature"
            };
            let value = header(headers, name).ok_or(Rejection::MissingSignature(name))?;
            let hex_sig = value
                .strip_prefix("sha256=")
                .ok_or(Rejection::MalformedSignature("sha256=<hex> expected"))?;
            hmac_matches(secret.as_bytes(), body, hex_sig)
        }
        GitProvider::Gitea => {
            let value = header(headers, "x-forgejo-signature")
                .or_else(|| header(headers, "x-gitea-signature"))
                .ok_or(Rejection::MissingSignature("X-Gitea-Signature"))?;
            hmac_matches(secret.as_bytes(), body, value)
        }
        GitProvider::Gitlab => {
            let value = header(headers, "x-gitlab-token")
                .ok_or(Rejection::MissingSignature("X-Gitlab-Token"))?;
            if bool::from(value.as_bytes().ct_eq(secret.as_bytes())) {
                Ok(())
            } else {
                Err(Rejection::BadSignature)
            }
        }
    }
}

/// What a verified delivery's body asks for.
///
/// # Errors
/// A message for people when the body is not the JSON the provider sends for its event.
pub fn parse_event(provider: GitProvider, event: &str, body: &[u8]) -> Result<Event, String> {
    let is_push = match provider {
        GitProvider::Github | GitProvider::Gitea => event == "push",
        GitProvider::Gitlab => event == "Push Hook",
        GitProvider::Bitbucket => event == "repo:push",
    };
    let is_ping = match provider {
        GitProvider::Github => event == "ping",
        GitProvider::Bitbucket => event == "diagnostics:ping",
        // GitLab's "Test" button sends a Push Hook; Gitea's test delivery is a push too.
        _ => false,
    };
    if is_ping {
        return Ok(Event::Ping);
    }
    if !is_push {
        return Ok(Event::Other);
    }
    let json: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    if provider == GitProvider::Bitbucket {
        return bitbucket_push(&json);
    }
    let reference = json
        .get("ref")
        .and_then(Value::as_str)
        .ok_or("the push has no 'ref'")?;
    let after = json
        .get("after")
        .and_then(Value::as_str)
        .ok_or("the push has no 'after' commit")?;
    let Some(branch) = reference.strip_prefix("refs/heads/") else {
        return Ok(Event::OtherRef {
            reference: reference.to_owned(),
        });
    };
    if after.bytes().all(|b| b == b'0') {
        return Ok(Event::BranchDeleted {
            branch: branch.to_owned(),
        });
    }
    commit_of(after).map(|commit| Event::Push {
        branch: branch.to_owned(),
        commit,
    })
}

fn commit_of(s: &str) -> Result<String, String> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("the pushed commit is not a 40-digit SHA-1".into())
    }
}

/// Bitbucket Cloud's `repo:push`: `push.changes[]` with `new` (null when deleted) and `old`;
/// the last change to a branch is the one that counts.
fn bitbucket_push(json: &Value) -> Result<Event, String> {
    let changes = json
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .ok_or("the push has no 'push.changes'")?;
    let change = changes.last().ok_or("the push has no changes")?;
    match change.get("new").filter(|n| !n.is_null()) {
        Some(new) => {
            let name = new.get("name").and_then(Value::as_str).unwrap_or_default();
            if new.get("type").and_then(Value::as_str) != Some("branch") {
                return Ok(Event::OtherRef {
                    reference: name.to_owned(),
                });
            }
            let hash = new
                .pointer("/target/hash")
                .and_then(Value::as_str)
                .ok_or("the push has no 'new.target.hash'")?;
            Ok(Event::Push {
                branch: name.to_owned(),
                commit: commit_of(hash)?,
            })
        }
        None => {
            let name = change
                .pointer("/old/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(Event::BranchDeleted {
                branch: name.to_owned(),
            })
        }
    }
}

/// The signature header a provider would send for `body` under `secret` (name, value); for
/// tests and for people checking their set-up. GitLab sends the secret itself.
pub fn sign(provider: GitProvider, secret: &str, body: &[u8]) -> (&'static str, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let hex_sig = hex::encode(mac.finalize().into_bytes());
    match provider {
        GitProvider::Github => ("X-Hub-Signature-256", format!("sha256={hex_sig}")),
        GitProvider::Bitbucket => ("X-Hub-Signature", format!("sha256={hex_sig}")),
        GitProvider::Gitea => ("X-Gitea-Signature", hex_sig),
        GitProvider::Gitlab => ("X-Gitlab-Token", secret.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// GitHub's documented test vector ("Validating webhook deliveries").
    #[test]
    fn github_test_vector() {
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("X-Hub-Signature-256", sig)]);
        let secret = "It's a Secret to Everybody";
        assert_eq!(
            verify(GitProvider::Github, &h, b"Hello, World!", secret),
            Ok(())
        );
        assert_eq!(sign(GitProvider::Github, secret, b"Hello, World!").1, sig);
        assert_eq!(
            verify(GitProvider::Github, &h, b"Hello, World?", secret),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(GitProvider::Github, &h, b"Hello, World!", "another secret"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn every_provider_checks_its_own_header() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        for p in GitProvider::ALL {
            let (name, value) = sign(p, "s3cret", body);
            assert_eq!(
                verify(p, &headers(&[(name, &value)]), body, "s3cret"),
                Ok(()),
                "{p:?}"
            );
            assert_eq!(
                verify(p, &headers(&[(name, &value)]), body, "other"),
                Err(Rejection::BadSignature),
                "{p:?}"
            );
            assert!(matches!(
                verify(p, &HeaderMap::new(), body, "s3cret"),
                Err(Rejection::MissingSignature(_))
            ));
        }
        let (_, value) = sign(GitProvider::Gitea, "s3cret", body);
        let forgejo = headers(&[("X-Forgejo-Signature", &value)]);
        assert_eq!(verify(GitProvider::Gitea, &forgejo, body, "s3cret"), Ok(()));
        let bad = headers(&[("X-Hub-Signature-256", "sha1=abc")]);
        assert!(matches!(
            verify(GitProvider::Github, &bad, body, "s3cret"),
            Err(Rejection::MalformedSignature(_))
        ));
        let bad = headers(&[("X-Gitea-Signature", "zz")]);
        assert!(matches!(
            verify(GitProvider::Gitea, &bad, body, "s3cret"),
            Err(Rejection::MalformedSignature(_))
        ));
    }

    #[test]
    fn push_events() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let body = format!(r#"{{"ref":"refs/heads/main","after":"{sha}"}}"#);
        for (p, ev) in [
            (GitProvider::Github, "push"),
            (GitProvider::Gitlab, "Push Hook"),
            (GitProvider::Gitea, "push"),
        ] {
            assert_eq!(
                parse_event(p, ev, body.as_bytes()),
                Ok(Event::Push {
                    branch: "main".into(),
                    commit: sha.into()
                })
            );
        }
        let deleted =
            r#"{"ref":"refs/heads/old","after":"0000000000000000000000000000000000000000"}"#;
        assert_eq!(
            parse_event(GitProvider::Github, "push", deleted.as_bytes()),
            Ok(Event::BranchDeleted {
                branch: "old".into()
            })
        );
        let tag = format!(r#"{{"ref":"refs/tags/v1","after":"{sha}"}}"#);
        assert_eq!(
            parse_event(GitProvider::Github, "push", tag.as_bytes()),
            Ok(Event::OtherRef {
                reference: "refs/tags/v1".into()
            })
        );
        assert_eq!(
            parse_event(GitProvider::Github, "ping", b"{}"),
            Ok(Event::Ping)
        );
        assert_eq!(
            parse_event(GitProvider::Github, "issues", b"{}"),
            Ok(Event::Other)
        );
        assert!(parse_event(GitProvider::Github, "push", b"not json").is_err());
        assert!(parse_event(
            GitProvider::Github,
            "push",
            br#"{"ref":"refs/heads/x","after":"xyz"}"#
        )
        .is_err());
        let bb = format!(
            r#"{{"push":{{"changes":[{{"new":{{"type":"branch","name":"main","target":{{"hash":"{sha}"}}}},"old":null}}]}}}}"#
        );
        assert_eq!(
            parse_event(GitProvider::Bitbucket, "repo:push", bb.as_bytes()),
            Ok(Event::Push {
                branch: "main".into(),
                commit: sha.into()
            })
        );
        let bb_deleted =
            r#"{"push":{"changes":[{"new":null,"old":{"type":"branch","name":"gone"}}]}}"#;
        assert_eq!(
            parse_event(GitProvider::Bitbucket, "repo:push", bb_deleted.as_bytes()),
            Ok(Event::BranchDeleted {
                branch: "gone".into()
            })
        );
    }

    #[test]
    fn envelopes() {
        let h = headers(&[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-1")]);
        assert_eq!(
            envelope(GitProvider::Github, &h),
            Envelope {
                event: "push".into(),
                delivery_id: Some("d-1".into())
            }
        );
        let h = headers(&[("X-Forgejo-Event", "push"), ("X-Forgejo-Delivery", "f-1")]);
        assert_eq!(
            envelope(GitProvider::Gitea, &h).delivery_id.as_deref(),
            Some("f-1")
        );
        assert_eq!(envelope(GitProvider::Gitlab, &HeaderMap::new()).event, "");
    }
}
