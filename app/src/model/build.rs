//! Git sources, builds and webhook deliveries as the API shows them, and the checks on what a
//! customer may enter. A deployment with a git source is rebuilt from its repository on push
//! (a webhook) or on request; each successful build becomes a new release.

use serde::{Deserialize, Serialize};

use super::{ApiError, DeploymentId, JobId, ReleaseId};

id_type!(
    /// A build's id: a UUIDv7 string.
    BuildId
);

/// One `--build-arg`. Build arguments end up in the image's history (`docker history`), so
/// they are for settings, not secrets; Berth never writes their values to logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BuildArg {
    /// `[A-Za-z_][A-Za-z0-9_]*`, at most 255 characters.
    pub name: String,
    pub value: String,
}

/// Where a deployment's image is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct GitSource {
    /// `https://host/owner/repo(.git)`, or `ssh://git@host/owner/repo` / `git@host:owner/repo`.
    pub repository_url: String,
    /// The branch whose pushes are built, e.g. `main`.
    pub branch: String,
    /// The Dockerfile, relative to the repository root; default `Dockerfile`.
    #[serde(default = "default_dockerfile")]
    pub dockerfile_path: String,
    /// The build context, relative to the repository root; default `.` (the whole checkout).
    #[serde(default = "default_context")]
    pub context_dir: String,
    #[serde(default)]
    pub build_args: Vec<BuildArg>,
}

fn default_dockerfile() -> String {
    "Dockerfile".into()
}

fn default_context() -> String {
    ".".into()
}

/// Request to connect (or change) a deployment's git source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SetGitSource {
    #[serde(flatten)]
    pub source: GitSource,
    /// A token for private HTTPS repositories, sent as the password of HTTP basic auth (GitHub,
    /// GitLab, Gitea and Bitbucket all accept a token there). Stored encrypted, never shown
    /// back. `None` keeps the stored token; an empty string removes it.
    #[serde(default)]
    pub https_token: Option<String>,
}

/// A deployment's git source as the API shows it: no credential, no webhook secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct GitSourceView {
    pub deployment_id: DeploymentId,
    #[serde(flatten)]
    pub source: GitSource,
    /// Whether an HTTPS token is stored.
    pub has_https_token: bool,
    /// The public half of the SSH deploy key Berth made for this source (one
    /// `authorized_keys` line, `ssh-ed25519 AAAA… berth-<deployment>`): register it as a
    /// read-only deploy key at the git host. Made when an ssh URL is first saved; the private
    /// half is stored encrypted and never shown.
    pub ssh_public_key: Option<String>,
    /// The webhook's id (the last part of its URL).
    pub webhook_id: String,
    /// The path a provider posts to, per provider, e.g. `/webhooks/github/<id>`; prefix it
    /// with Berth's public URL.
    pub webhook_paths: Vec<WebhookPath>,
    pub updated_at_ms: i64,
}

/// Where one provider delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct WebhookPath {
    pub provider: GitProvider,
    pub path: String,
}

/// The answer to connecting a source or rotating its webhook secret: the secret is shown this
/// once and never again (Berth keeps it encrypted, to verify deliveries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct GitSourceCreated {
    pub source: GitSourceView,
    /// The webhook secret, present when it was just generated (first connection or rotation).
    pub webhook_secret: Option<String>,
}

/// A git hosting service that calls Berth's webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GitProvider {
    Github,
    Gitlab,
    /// Gitea and Forgejo (the same payloads and signature).
    Gitea,
    /// Bitbucket Cloud.
    Bitbucket,
}

impl GitProvider {
    pub const ALL: [GitProvider; 4] = [Self::Github, Self::Gitlab, Self::Gitea, Self::Bitbucket];

    /// The path segment in `/webhooks/{provider}/{id}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
        }
    }

    /// The provider named by a path segment (`forgejo` is Gitea's).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "github" => Some(Self::Github),
            "gitlab" => Some(Self::Gitlab),
            "gitea" | "forgejo" => Some(Self::Gitea),
            "bitbucket" => Some(Self::Bitbucket),
            _ => None,
        }
    }
}

/// Where a build is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Queued,
    Running,
    /// The image was built and a release queued for rollout.
    Succeeded,
    Failed,
    Cancelled,
}

impl BuildStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status of a stored string; unknown ones read as failed.
    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "cancelled" => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    /// Whether the build has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// One build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BuildView {
    pub id: BuildId,
    pub deployment_id: DeploymentId,
    /// 1, 2, ... per deployment.
    pub number: i64,
    pub status: BuildStatus,
    /// `manual` or the provider of the webhook delivery that asked for it.
    pub trigger: String,
    /// The branch built (its head at fetch time) unless a commit was asked for.
    pub branch: String,
    /// The commit asked for (a full or abbreviated SHA-1), if any.
    pub requested_commit: Option<String>,
    /// The full SHA-1 built, once fetched.
    pub commit_sha: Option<String>,
    /// The image tag, `berth-build/<deployment id>:<commit sha>`, once built.
    pub image: Option<String>,
    /// The release the build became.
    pub release_id: Option<ReleaseId>,
    /// Why it failed: the failing step and its message.
    pub failure: String,
    pub job_id: Option<JobId>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A build with its log so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct BuildDetail {
    pub build: BuildView,
    /// The fetch and build output, as the engine printed it (at most the last 1 MiB).
    pub log: String,
}

/// Request for a build of the branch head, or of one commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TriggerBuild {
    /// A commit SHA-1 (7–40 hex digits) reachable from the branch; none builds the branch head.
    #[serde(default)]
    pub commit: Option<String>,
}

/// One webhook call as it was received and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct WebhookDeliveryView {
    pub id: String,
    pub provider: GitProvider,
    /// The provider's event name (`push`, `ping`, `Push Hook`, `repo:push`, ...).
    pub event: String,
    /// The provider's delivery id header, if it sends one.
    pub delivery_id: Option<String>,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    /// `build_queued`, `ignored`, `rejected` or `duplicate`.
    pub outcome: String,
    /// Why, in words.
    pub reason: String,
    pub build_id: Option<BuildId>,
    pub received_at_ms: i64,
}

/// One message of the build log socket (`/ws/builds/{id}/log`), JSON with a `kind` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BuildLogFrame {
    /// Text to append to the log (the log so far first, then new lines as they come).
    Text { text: String },
    /// The build ended with this status; the socket closes after it.
    End {
        status: BuildStatus,
        failure: String,
    },
}

const MAX_URL_LEN: usize = 2048;

/// Checks a git source's fields (the network-level checks — resolved addresses — are the
/// server's). Field names in errors: `repository_url`, `branch`, `dockerfile_path`,
/// `context_dir`, `build_args.N.name`.
///
/// # Errors
/// A 400 naming the field and what is accepted.
pub fn validate_git_source(s: &GitSource) -> Result<(), ApiError> {
    validate_repository_url(&s.repository_url)?;
    validate_branch(&s.branch)?;
    validate_repo_path("dockerfile_path", &s.dockerfile_path, false)?;
    validate_repo_path("context_dir", &s.context_dir, true)?;
    if dockerfile_in_context(s).is_none() {
        return Err(ApiError::invalid_field(
            "dockerfile_path",
            "dockerfile_outside_context",
            format!(
                "The Dockerfile must be inside the build context '{}' (the engine reads it from there).",
                s.context_dir
            ),
        ));
    }
    if s.build_args.len() > 100 {
        return Err(ApiError::invalid_field(
            "build_args",
            "too_many_build_args",
            "At most 100 build arguments.",
        ));
    }
    for (i, a) in s.build_args.iter().enumerate() {
        let ok = !a.name.is_empty()
            && a.name.len() <= 255
            && a.name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(ApiError::invalid_field(
                format!("build_args.{i}.name"),
                "invalid_build_arg",
                "A build argument name is letters, digits and '_', not starting with a digit.",
            ));
        }
        if a.value.len() > 4096 || a.value.contains('\0') {
            return Err(ApiError::invalid_field(
                format!("build_args.{i}.value"),
                "invalid_build_arg",
                "A build argument value is at most 4096 bytes, without NUL.",
            ));
        }
    }
    Ok(())
}

/// The Dockerfile's path relative to the build context (what the engine's `dockerfile`
/// parameter takes), or `None` when it lies outside the context.
pub fn dockerfile_in_context(s: &GitSource) -> Option<String> {
    let context = s.context_dir.trim_start_matches("./").trim_end_matches('/');
    let dockerfile = s.dockerfile_path.trim_start_matches("./");
    if context.is_empty() || context == "." {
        return Some(dockerfile.to_owned());
    }
    dockerfile
        .strip_prefix(context)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .map(str::to_owned)
}

/// The parts of a repository URL Berth cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUrl {
    /// `https`, `http` or `ssh`.
    pub scheme: String,
    /// Host name or IP literal (without brackets).
    pub host: String,
}

/// Parses a repository URL: `https://…`, `http://…` (only useful when an admin allows local
/// repositories), `ssh://[user@]host[:port]/path` or scp-like `user@host:path`.
///
/// # Errors
/// A 400 on `repository_url` saying which forms are accepted (`file://`, local paths, `git://`
/// and other schemes are refused).
pub fn parse_repository_url(url: &str) -> Result<RepositoryUrl, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_field(
            "repository_url",
            "invalid_repository_url",
            format!(
                "{why} Use https://host/owner/repo.git, ssh://git@host/owner/repo.git or git@host:owner/repo.git."
            ),
        )
    };
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err(bad(
            "The repository URL is empty or longer than 2048 characters.",
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("The repository URL has spaces or control characters."));
    }
    // A leading '-' could be read as an option by tools that get the URL as an argument.
    if url.starts_with('-') {
        return Err(bad("The repository URL may not start with '-'."));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) => (s.to_ascii_lowercase(), rest),
        None => {
            // scp-like: user@host:path (no slash before the colon).
            let Some((user_host, path)) = url.split_once(':') else {
                return Err(bad("Local paths are not accepted."));
            };
            if user_host.contains('/') || path.is_empty() || !user_host.contains('@') {
                return Err(bad("Local paths are not accepted."));
            }
            let host = user_host.rsplit('@').next().unwrap_or_default();
            return host_of("ssh", host).ok_or_else(|| bad("The host name is not valid."));
        }
    };
    if !matches!(scheme.as_str(), "https" | "http" | "ssh") {
        return Err(bad(&format!("The scheme '{scheme}' is not accepted.")));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let path = &rest[authority.len()..];
    if path.len() < 2 {
        return Err(bad("The URL has no repository path."));
    }
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(inner) = host_port.strip_prefix('[') {
        inner.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host_of(&scheme, host).ok_or_else(|| bad("The host name is not valid."))
}

fn host_of(scheme: &str, host: &str) -> Option<RepositoryUrl> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    ok.then(|| RepositoryUrl {
        scheme: scheme.to_owned(),
        host: host.to_ascii_lowercase(),
    })
}

fn validate_repository_url(url: &str) -> Result<(), ApiError> {
    parse_repository_url(url).map(|_| ())
}

/// Checks a branch name against git's ref-name rules (`git check-ref-format --branch`),
/// simplified: no `..`, no `@{`, no control characters, spaces, `~^:?*[\`, no leading `-` or
/// `/`, no trailing `/`, `.` or `.lock`, at most 255 bytes.
///
/// # Errors
/// A 400 on `branch`.
pub fn validate_branch(branch: &str) -> Result<(), ApiError> {
    let ok = !branch.is_empty()
        && branch.len() <= 255
        && !branch.starts_with(['-', '/', '.'])
        && !branch.ends_with(['/', '.'])
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("@{")
        && !branch.contains("//")
        && branch != "@"
        && !branch.split('/').any(|part| part.starts_with('.'))
        && !branch
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "branch",
            "invalid_branch",
            "This is not a valid branch name (git's rules: no spaces, '..', '~^:?*[\\', leading '-').",
        ))
    }
}

/// Checks a path inside the repository: relative, `/`-separated, no `..` part, no NUL;
/// `.` is the root when `may_be_root`.
///
/// # Errors
/// A 400 on `field`.
pub fn validate_repo_path(field: &str, path: &str, may_be_root: bool) -> Result<(), ApiError> {
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path.split('/').all(|p| p != "..")
        && (may_be_root || (path != "." && !path.ends_with('/')));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "invalid_path",
            "Give a path relative to the repository root, without '..' (e.g. 'Dockerfile' or 'services/web').",
        ))
    }
}

/// Checks a commit given for a manual build: 7–40 hex digits.
///
/// # Errors
/// A 400 on `commit`.
pub fn validate_commit(commit: &str) -> Result<(), ApiError> {
    if (7..=40).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "commit",
            "invalid_commit",
            "A commit is its SHA-1: 7 to 40 hex digits.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls() {
        for ok in [
            "https://github.com/owner/repo.git",
            "https://git.example.com:8443/a/b",
            "http://127.0.0.1:9418/r.git",
            "ssh://git@github.com/owner/repo.git",
            "ssh://git@[::1]:2222/r",
            "git@github.com:owner/repo.git",
        ] {
            assert!(parse_repository_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            parse_repository_url("git@gitlab.com:a/b").unwrap().host,
            "gitlab.com"
        );
        assert_eq!(
            parse_repository_url("ssh://git@[::1]:2222/r").unwrap().host,
            "::1"
        );
        for bad in [
            "file:///etc",
            "/srv/repo.git",
            "../repo",
            "git://host/r",
            "https://",
            "https://host",
            "-uhttps://x/y",
            "https://ho st/r",
            "ext::sh -c touch% /tmp/pwned",
            "C:/repo",
        ] {
            let e = parse_repository_url(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("repository_url"), "{bad}");
        }
    }

    #[test]
    fn branches_and_paths() {
        for ok in ["main", "release/1.2", "feature-x", "v1"] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "x.lock", "a/", "/a", "a@{1}", "a~1", ".hidden", "a/.b",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad}");
        }
        assert!(validate_repo_path("context_dir", ".", true).is_ok());
        assert!(validate_repo_path("dockerfile_path", ".", false).is_err());
        assert!(validate_repo_path("dockerfile_path", "web/Dockerfile", false).is_ok());
        for bad in ["/etc/passwd", "../x", "a/../../b", "a\\b", ""] {
            assert!(
                validate_repo_path("context_dir", bad, true).is_err(),
                "{bad}"
            );
        }
        let source = |dockerfile: &str, context: &str| GitSource {
            repository_url: "https://h/r".into(),
            branch: "main".into(),
            dockerfile_path: dockerfile.into(),
            context_dir: context.into(),
            build_args: vec![],
        };
        assert_eq!(
            dockerfile_in_context(&source("Dockerfile", ".")).as_deref(),
            Some("Dockerfile")
        );
        assert_eq!(
            dockerfile_in_context(&source("web/Dockerfile", "web")).as_deref(),
            Some("Dockerfile")
        );
        assert_eq!(
            dockerfile_in_context(&source("web/Dockerfile", "web/")).as_deref(),
            Some("Dockerfile")
        );
        assert_eq!(dockerfile_in_context(&source("Dockerfile", "web")), None);
        assert_eq!(
            dockerfile_in_context(&source("webapp/Dockerfile", "web")),
            None
        );
        assert!(validate_git_source(&source("Dockerfile", "web")).is_err());
        assert!(validate_commit("abc1234").is_ok());
        assert!(validate_commit("abc123").is_err());
        assert!(validate_commit("zzzzzzz").is_err());
    }
}
