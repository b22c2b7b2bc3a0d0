//! Fetching a commit with gitoxide and turning its tree into a build context.
//!
//! The repository is cloned bare into the build's workspace (shallow: depth 1 of the branch,
//! or of the one commit asked for by its full id), so nothing from it is ever executed: there
//! is no worktree, no hook, no checkout filter, and credentials come only from Berth (the
//! configured credential helpers of the machine and of the repository are never asked). The
//! context is the commit's tree (or the context directory's subtree), written as a tar by
//! `gix-archive` straight from the object database.

use std::{
    num::NonZeroU32,
    path::Path,
    sync::{atomic::AtomicBool, Once},
};

use gix::remote::fetch::Shallow;

use super::BuildError;

/// What to fetch.
#[derive(Clone)]
pub struct FetchRequest {
    pub url: String,
    pub branch: String,
    /// A full (40) or abbreviated (7–39) SHA-1 to build instead of the branch head.
    pub commit: Option<String>,
    /// HTTPS token (basic-auth password), opened from its sealed form.
    pub token: Option<String>,
    /// For ssh URLs: the `ssh` command line with the deploy key ([`super::ssh::SshFiles`]).
    /// An ssh URL without one is refused, so the machine's own keys are never offered.
    pub ssh_command: Option<String>,
}

impl std::fmt::Debug for FetchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchRequest")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("commit", &self.commit)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("ssh_command", &self.ssh_command)
            .finish()
    }
}

/// The process-wide rustls provider (ring) that the reqwest 0.13 clients use (gix's transport,
/// the S3 backup repositories).
pub(crate) fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn fetch_error(e: impl std::fmt::Debug + std::fmt::Display) -> BuildError {
    // gix errors carry their causes in the alternate form.
    let text = format!("{e:#}");
    tracing::debug!(error = ?e, "fetch error");
    BuildError::Fetch(if text.contains("clear text over http") {
        format!("{text} (a token is only ever sent over https: use the repository's https:// URL)")
    } else if text.contains("401") || text.to_lowercase().contains("authenticat") {
        format!("{text} (the repository needs credentials: set an HTTPS token)")
    } else {
        text
    })
}

/// Clones `req` into `dir` (bare) and returns the repository and the commit to build (its full
/// SHA-1). Blocking: call it from `spawn_blocking`. `interrupt` stops it between steps.
///
/// # Errors
/// `BuildError::Fetch` when the repository cannot be reached or read, `BuildError::Commit`
/// when the branch or commit does not exist.
pub fn fetch(
    req: &FetchRequest,
    dir: &Path,
    interrupt: &AtomicBool,
) -> Result<(gix::Repository, String), BuildError> {
    install_tls_provider();
    let full_commit = req
        .commit
        .as_deref()
        .filter(|c| c.len() == 40)
        .map(str::to_ascii_lowercase);
    let is_ssh = app::model::parse_repository_url(&req.url)
        .map_err(|e| BuildError::Refused(e.message))?
        .scheme
        == "ssh";
    // No helper of the machine's git configuration is ever asked for credentials, and over
    // ssh only the deploy key is offered.
    let mut overrides = vec!["credential.helper=".to_owned(), "core.askPass=".to_owned()];
    match (&req.ssh_command, is_ssh) {
        (Some(command), true) => {
            overrides.push(format!("core.sshCommand={command}"));
            overrides.push("ssh.variant=ssh".to_owned());
        }
        (None, true) => {
            return Err(BuildError::Refused(
                "this ssh repository has no deploy key; save the repository again to make one"
                    .into(),
            ))
        }
        (_, false) => {}
    }
    let mut prepare = gix::prepare_clone_bare(req.url.as_str(), dir)
        .map_err(fetch_error)?
        .with_in_memory_config_overrides(overrides);
    prepare = match (&full_commit, &req.commit) {
        (Some(commit), _) => prepare
            .with_shallow(Shallow::DepthAtRemote(NonZeroU32::MIN))
            .with_revision(Some(commit.as_str()))
            .map_err(fetch_error)?,
        // An abbreviated id is looked up among the branch's history, so that one is fetched whole.
        (None, Some(_)) => prepare
            .with_ref_name(Some(req.branch.as_str()))
            .map_err(fetch_error)?,
        (None, None) => prepare
            .with_shallow(Shallow::DepthAtRemote(NonZeroU32::MIN))
            .with_ref_name(Some(req.branch.as_str()))
            .map_err(fetch_error)?,
    };
    let token = req.token.clone();
    prepare = prepare.configure_connection(move |conn| {
        let token = token.clone();
        conn.set_credentials(move |action| match (&action, &token) {
            (gix::credentials::helper::Action::Get(ctx), Some(token)) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        // GitHub, GitLab, Gitea and Bitbucket take a token as the password
                        // with any user name; GitLab documents `oauth2`.
                        username: "oauth2".into(),
                        password: token.clone(),
                        oauth_refresh_token: None,
                    },
                    next: ctx.clone().into(),
                }))
            }
            _ => Ok(None),
        });
        Ok(())
    });
    let (repo, _outcome) = prepare
        .fetch_only(gix::progress::Discard, interrupt)
        .map_err(|e| {
            let text = format!("{e:#}");
            if text.contains("not found") || text.contains("couldn't find remote ref") {
                BuildError::Commit(match &req.commit {
                    Some(c) => format!("the commit {c} does not exist in the repository"),
                    None => format!(
                        "the branch '{}' does not exist in the repository",
                        req.branch
                    ),
                })
            } else {
                fetch_error(text)
            }
        })?;
    let commit = match (&full_commit, &req.commit) {
        (Some(c), _) => {
            repo.find_commit(gix::ObjectId::from_hex(c.as_bytes()).map_err(fetch_error)?)
                .map_err(|_| BuildError::Commit(format!("the commit {c} does not exist")))?;
            c.clone()
        }
        (None, Some(short)) => {
            let id = repo.rev_parse_single(short.as_str()).map_err(|_| {
                BuildError::Commit(format!(
                    "the commit {short} is not on the branch '{}'",
                    req.branch
                ))
            })?;
            repo.find_commit(id.detach())
                .map_err(|_| BuildError::Commit(format!("{short} does not name a commit")))?;
            id.detach().to_string()
        }
        (None, None) => {
            let name = format!("refs/heads/{}", req.branch);
            let mut reference = repo.find_reference(name.as_str()).map_err(|_| {
                BuildError::Commit(format!("the branch '{}' does not exist", req.branch))
            })?;
            reference
                .peel_to_id()
                .map_err(fetch_error)?
                .detach()
                .to_string()
        }
    };
    Ok((repo, commit))
}

/// Writes the tree of `commit` under `context_dir` (`.` for the root) as a tar into a buffer
/// of at most `max_bytes`. Blocking.
///
/// # Errors
/// `BuildError::Context` when the directory does not exist in the commit, the Dockerfile is
/// missing, or the context is larger than `max_bytes`.
pub fn context_tar(
    repo: &gix::Repository,
    commit: &str,
    context_dir: &str,
    dockerfile: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, BuildError> {
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(fetch_error)?;
    let commit_obj = repo.find_commit(id).map_err(fetch_error)?;
    let commit_time = commit_obj.time().map(|t| t.seconds).unwrap_or_default();
    let root = commit_obj.tree().map_err(fetch_error)?;
    let context = context_dir.trim_start_matches("./").trim_end_matches('/');
    let tree = if context.is_empty() || context == "." {
        root
    } else {
        let entry = root
            .lookup_entry_by_path(context)
            .map_err(fetch_error)?
            .filter(|e| e.mode().is_tree())
            .ok_or_else(|| {
                BuildError::Context(format!(
                    "the build context '{context_dir}' is not a directory in commit {}",
                    &commit[..12]
                ))
            })?;
        entry
            .object()
            .map_err(fetch_error)?
            .try_into_tree()
            .map_err(fetch_error)?
    };
    let has_dockerfile = tree
        .lookup_entry_by_path(dockerfile)
        .map_err(fetch_error)?
        .is_some_and(|e| e.mode().is_blob() || e.mode().is_link());
    if !has_dockerfile {
        return Err(BuildError::Context(format!(
            "there is no Dockerfile at '{dockerfile}' in the build context of commit {}",
            &commit[..12]
        )));
    }
    let (mut stream, _index) = repo.worktree_stream(tree.id).map_err(fetch_error)?;
    let mut out = Capped {
        buf: Vec::new(),
        max: max_bytes,
    };
    gix_archive::write_stream(
        &mut stream,
        gix::worktree::stream::Stream::next_entry,
        &mut out,
        gix_archive::Options {
            format: gix_archive::Format::Tar,
            tree_prefix: None,
            modification_time: commit_time,
        },
    )
    .map_err(|e| {
        if out.buf.len() as u64 >= max_bytes {
            BuildError::Context(format!(
                "the build context is larger than {max_bytes} bytes (build_context_max_bytes)"
            ))
        } else {
            BuildError::Context(format!("cannot write the build context: {e}"))
        }
    })?;
    Ok(out.buf)
}

/// A buffer that refuses to grow past `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: u64,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.max {
            return Err(std::io::Error::other("build context too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
