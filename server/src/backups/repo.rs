//! Restic-format repositories through rustic_core (blocking calls: run them off the async
//! threads). The format is restic's (<https://restic.readthedocs.io/en/stable/100_references.html#design>),
//! so stock `restic` reads what Berth writes: the exit path for users.

use std::{
    collections::HashSet,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use rustic_backend::LocalBackend;
use rustic_core::{
    jiff::Zoned,
    repofile::{Node, SnapshotFile},
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeepOptions, KeyOptions,
    LocalDestination, LsOptions, OpenStatus, PruneOptions, ReadSubsetOption, Repository,
    RepositoryBackends, RepositoryOptions, RestoreOptions, SnapshotOptions,
};

pub use super::browse::{dump_file, list_dir, snapshot_path};
use super::{
    keys,
    s3::{S3Backend, S3Repository},
    tar_source::{SourceInput, SourceStats, TarSource},
    BackupError,
};

/// Where a snapshot keeps the volumes: `/volumes/<volume name>/…`.
pub const SNAPSHOT_ROOT: &str = "/volumes";
/// Where a snapshot keeps a database dump: `/databases/<database>.sql`.
pub const DUMP_ROOT: &str = "/databases";

/// What a finished backup reports (restic's summary fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The snapshot id, 64 hex digits.
    pub snapshot_id: String,
    /// Files in the snapshot as restic counts them: every entry that is not a directory.
    pub files: u64,
    /// Bytes of the regular files.
    pub bytes_total: u64,
    /// Bytes of new data the repository stored for it (before compression).
    pub bytes_added: u64,
}

/// The tags and grouping of a new snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotTags {
    /// Snapshots of one deployment form one group (rustic's `label`), so each backup's
    /// parent is the deployment's previous one.
    pub label: String,
    /// `key:value` tags (project, deployment, release, kind).
    pub tags: Vec<String>,
}

/// rustic_core's error in one line (its `Display` adds guidance paragraphs and a
/// backtrace meant for a terminal).
#[expect(
    clippy::boxed_local,
    reason = "called as map_err(rustic) on RusticResult, whose error comes boxed"
)]
pub(super) fn rustic(e: Box<rustic_core::RusticError>) -> BackupError {
    if e.is_incorrect_password() {
        return BackupError::Repository(
            "the stored password opens none of the repository's keys (was its key changed \
             outside Berth?)"
                .into(),
        );
    }
    BackupError::Repository(one_line(&e.display_log()))
}

/// rustic's multi-paragraph error text as one line: the messages, without the guidance,
/// context and links meant for a terminal (`error processing Pack:7d73965a … — Data
/// decryption failed, MAC check failed.`).
pub fn one_line(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut skipping = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Context:") || line.starts_with("Some additional details") {
            skipping = line.starts_with("Context:");
            continue;
        }
        if line.is_empty()
            || line == "Message:"
            || line == "Caused by:"
            || line.starts_with("For more information")
        {
            skipping = false;
            continue;
        }
        if skipping || line.starts_with("- ") {
            continue;
        }
        // rustic's category sentence adds nothing a person can act on.
        let line = match line.find("`rustic_core` experienced an error") {
            Some(at) => line[..at].trim_end_matches([' ', ':']),
            None => line,
        };
        let line = line.trim_start_matches("Error: ");
        if line.is_empty() {
            continue;
        }
        if !parts.contains(&line) {
            parts.push(line);
        }
    }
    parts.join(" — ")
}

/// Where a repository lives.
#[derive(Clone)]
pub enum Location {
    /// A directory on this host.
    Local(PathBuf),
    /// A key prefix in an S3-compatible bucket.
    S3(S3Repository),
}

impl Location {
    /// restic's name of it (`restic -r <this>`).
    pub fn describe(&self) -> String {
        match self {
            Self::Local(path) => path.display().to_string(),
            Self::S3(repo) => repo.location(),
        }
    }
}

/// Opens the repository in `location`, creating it (and a local directory) when it has no
/// `config` yet and `may_init` (only for a project's first backup: anywhere else a missing
/// config means the repository was lost, and a new empty one would hide that).
///
/// # Errors
/// `Repository` when the place cannot be used (a directory that cannot be made, an S3
/// endpoint, bucket or key that does not answer), it holds no repository and may not be
/// made, the password does not open it (a wrong key), or the files are not a repository.
pub fn open_or_init(
    location: &Location,
    password: &str,
    may_init: bool,
) -> Result<Repository<OpenStatus>, BackupError> {
    let backend: Arc<dyn rustic_core::WriteBackend> = match location {
        Location::Local(path) => {
            Arc::new(LocalBackend::new(path.to_string_lossy(), []).map_err(rustic)?)
        }
        Location::S3(repo) => Arc::new(S3Backend::new(repo)?),
    };
    let backends = RepositoryBackends::new(backend.clone(), None);
    // No local cache: a local repository is on this host already, and an S3 one is read
    // fresh each time (a cache would need its own upkeep per controller).
    let options = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&options, &backends).map_err(rustic)?;
    let credentials = Credentials::password(password);
    // The master key from an earlier open in this process, while its key file is unchanged
    // (`keys`): no scrypt.
    let slot = keys::Slot::of(location, password);
    let remember = |repo: Repository<OpenStatus>| {
        if let Some(key_id) = repo.key_id() {
            slot.remember(repo.key(), **key_id, backend.as_ref());
        }
        repo
    };
    if repo.config_id().map_err(rustic)?.is_some() {
        if let Some(cached) = slot.cached() {
            if cached.still_valid(backend.as_ref()) {
                if let Ok(opened) = repo.open(&Credentials::Masterkey(cached.key)) {
                    return Ok(opened);
                }
            }
            slot.forget();
            let repo = Repository::new(&options, &backends).map_err(rustic)?;
            return repo.open(&credentials).map(remember).map_err(rustic);
        }
        return repo.open(&credentials).map(remember).map_err(rustic);
    }
    if !may_init {
        return Err(BackupError::Repository(format!(
            "{} holds no repository (its config is gone): the backups recorded in it cannot be \
             read",
            location.describe()
        )));
    }
    if let Location::Local(path) = location {
        std::fs::create_dir_all(path).map_err(|e| {
            BackupError::Repository(format!("cannot create {}: {e}", path.display()))
        })?;
    }
    repo.init(
        &credentials,
        &KeyOptions::default(),
        // zstd level 1, the level of restic's default (`auto`, zstd's fastest); rustic's
        // default is level 3, which costs ~20 % of a first backup's throughput here.
        &ConfigOptions::default().set_compression(1),
    )
    .map(remember)
    .map_err(rustic)
}

/// Opens the existing repository in `location` (see [`open_or_init`]).
///
/// # Errors
/// As [`open_or_init`], and `Repository` when it holds no repository.
pub fn open(location: &Location, password: &str) -> Result<Repository<OpenStatus>, BackupError> {
    open_or_init(location, password, false)
}

/// Backs up `input` as one snapshot whose tree holds it under `snapshot_root`
/// (`/volumes` for the volumes' tar stream, `/databases` for a dump). Files over 1 MiB of a
/// tar stream wait in unnamed temporary files in `spill_dir` while they are archived.
///
/// # Errors
/// `Source` when the stream failed or held an entry Berth refuses (the snapshot is deleted
/// again, so no incomplete snapshot is ever listed); `Repository` when writing failed.
pub fn backup(
    repo: Repository<OpenStatus>,
    input: SourceInput,
    snapshot_root: &str,
    spill_dir: &Path,
    tags: &SnapshotTags,
    stats_out: &dyn Fn(Arc<SourceStats>),
) -> Result<BackupSummary, BackupError> {
    let repo = repo.to_indexed_ids().map_err(rustic)?;
    let mut snapshot_options = SnapshotOptions::default()
        .host(Some("berth".to_owned()))
        .label(tags.label.clone());
    for tag in &tags.tags {
        snapshot_options = snapshot_options.add_tags(tag).map_err(rustic)?;
    }
    let snap = snapshot_options.to_snapshot().map_err(rustic)?;
    let source = TarSource::new(input, Path::new(snapshot_root), spill_dir);
    stats_out(source.stats.clone());
    let stats = source.stats.clone();
    let snap = repo
        .archive(
            &BackupOptions::default(),
            &source,
            snap,
            &[PathBuf::from(snapshot_root)],
        )
        .map_err(rustic)?;
    if let Some(why) = stats.failure() {
        if let Err(e) = repo.delete_snapshots(&[snap.id]) {
            tracing::error!(snapshot.id = %snap.id, error = %e, "cannot delete an incomplete snapshot");
        }
        return Err(BackupError::Source(why));
    }
    let summary = snap.summary.clone().unwrap_or_default();
    Ok(BackupSummary {
        snapshot_id: snap.id.to_hex().to_string(),
        files: summary.total_files_processed,
        bytes_total: summary.total_bytes_processed,
        bytes_added: summary.data_added,
    })
}

/// Checks the entries of a snapshot before anything of it is written: every path must be
/// plain and relative (no `..`, no root), no name may repeat, and nothing may lie below a
/// symlink (which a malformed tree could use to write outside the target).
///
/// # Errors
/// `Unsafe` naming the first entry that breaks a rule.
pub fn check_restore_entries(entries: &[(PathBuf, Node)]) -> Result<(), BackupError> {
    let mut seen = HashSet::new();
    let mut symlinks: Vec<&Path> = Vec::new();
    for (path, node) in entries {
        if path.as_os_str().is_empty()
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(BackupError::Unsafe(format!(
                "the snapshot has an entry whose path is not plain: {}",
                path.display()
            )));
        }
        if !seen.insert(path.clone()) {
            return Err(BackupError::Unsafe(format!(
                "the snapshot lists {} twice",
                path.display()
            )));
        }
        if let Some(link) = symlinks.iter().find(|l| path.starts_with(l)) {
            return Err(BackupError::Unsafe(format!(
                "the snapshot has {} below the symlink {}",
                path.display(),
                link.display()
            )));
        }
        if node.is_symlink() {
            symlinks.push(path);
        }
    }
    Ok(())
}

/// Restores the snapshot's `subtree` ([`SNAPSHOT_ROOT`] or [`DUMP_ROOT`]) into the empty
/// directory `dest` (so volume `data` lands in `dest/data`), with owners, modes and times.
/// Returns (files as restic counts them, bytes of the regular files).
///
/// # Errors
/// `Repository` when the snapshot does not exist or cannot be read (missing or corrupt pack
/// files); `Unsafe` when its entries break [`check_restore_entries`]'s rules.
pub fn restore_to(
    repo: Repository<OpenStatus>,
    snapshot_id: &str,
    subtree: &str,
    dest: &Path,
) -> Result<(u64, u64), BackupError> {
    let repo = repo.to_indexed().map_err(rustic)?;
    let root = repo
        .node_from_snapshot_path(&format!("{snapshot_id}:{subtree}"), |_| true)
        .map_err(rustic)?;
    let entries: Vec<(PathBuf, Node)> = repo
        .ls(&root, &LsOptions::default().recursive(true))
        .map_err(rustic)?
        .collect::<Result<_, _>>()
        .map_err(rustic)?;
    check_restore_entries(&entries)?;
    let files = entries.iter().filter(|(_, n)| !n.is_dir()).count() as u64;
    let bytes = entries
        .iter()
        .filter(|(_, n)| n.is_file())
        .map(|(_, n)| n.meta.size)
        .sum();
    let dest_text = format!("{}/", dest.display());
    let destination = LocalDestination::new(&dest_text, true, false).map_err(rustic)?;
    let options = RestoreOptions::default();
    let plan = repo
        .prepare_restore(
            &options,
            entries.clone().into_iter().map(Ok),
            &destination,
            false,
        )
        .map_err(rustic)?;
    repo.restore(plan, &options, entries.into_iter().map(Ok), &destination)
        .map_err(rustic)?;
    Ok((files, bytes))
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Snapshots whose trees were checked.
    pub snapshots: usize,
    /// rustic's errors (integrity is affected), one line each.
    pub errors: Vec<String>,
    /// rustic's warnings (something to tidy; integrity is not affected).
    pub warnings: Vec<String>,
}

/// restic's `check`: the repository's structure, every snapshot's trees and the index, and
/// the contents of about `read_data_percent` % of the pack files picked at random (their
/// blobs decrypted and hashed; 0 reads none, 100 all).
///
/// # Errors
/// `Repository` when the repository cannot be read at all; what `check` finds is in the
/// report, not an error.
pub fn check(
    repo: Repository<OpenStatus>,
    read_data_percent: u8,
) -> Result<CheckReport, BackupError> {
    let snapshots = repo.get_all_snapshots().map_err(rustic)?.len();
    let subset = if read_data_percent >= 100 {
        ReadSubsetOption::All
    } else {
        ReadSubsetOption::Percentage(f64::from(read_data_percent))
    };
    let options = CheckOptions::default()
        .read_data(read_data_percent > 0)
        .read_data_subset(subset);
    let results = repo.check(options).map_err(rustic)?;
    let failed = results.is_ok().is_err();
    let mut report = CheckReport {
        snapshots,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for (level, finding) in results.0 {
        // The level type is not exported; its Debug name is `Error` or `Warn`.
        let text = one_line(&finding.to_string());
        if format!("{level:?}") == "Error" {
            report.errors.push(text);
        } else {
            report.warnings.push(text);
        }
    }
    // `is_ok` is rustic's own verdict: never let a renamed level pass a damaged repository.
    if failed && report.errors.is_empty() {
        report
            .errors
            .push("rustic's check found errors it did not list".into());
    }
    Ok(report)
}

/// The snapshots in the repository (for checks and the listing of what restic sees).
///
/// # Errors
/// `Repository` when the snapshot files cannot be read.
pub fn snapshots(repo: &Repository<OpenStatus>) -> Result<Vec<SnapshotFile>, BackupError> {
    repo.get_all_snapshots().map_err(rustic)
}

/// Applies restic's forget policy `keep` to the snapshots of one group (`label`, one
/// deployment's), deletes those it does not keep, then prunes the repository (data no
/// snapshot uses any more is removed, partly used packs repacked as `restic prune` does).
/// Returns the ids (64 hex digits) of the snapshots removed.
///
/// # Errors
/// `Repository` when the snapshots cannot be read, deleted or pruned.
pub fn apply_retention(
    repo: Repository<OpenStatus>,
    label: &str,
    keep: &KeepOptions,
) -> Result<Vec<String>, BackupError> {
    let mine: Vec<SnapshotFile> = snapshots(&repo)?
        .into_iter()
        .filter(|s| s.label == label)
        .collect();
    let decisions = keep.apply(mine, &Zoned::now()).map_err(rustic)?;
    let remove: Vec<_> = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.snapshot.id)
        .collect();
    if remove.is_empty() {
        return Ok(Vec::new());
    }
    repo.delete_snapshots(&remove).map_err(rustic)?;
    let options = PruneOptions::default();
    let plan = repo.prune_plan(&options).map_err(rustic)?;
    repo.prune(&options, plan).map_err(rustic)?;
    Ok(remove.iter().map(|id| id.to_hex().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsStr, path::Path};

    use rustic_core::repofile::{Metadata, NodeType};

    use super::*;

    fn entry(path: &str, node_type: NodeType) -> (PathBuf, Node) {
        let name = Path::new(path)
            .file_name()
            .unwrap_or(OsStr::new("x"))
            .to_owned();
        (
            PathBuf::from(path),
            Node::new_node(&name, node_type, Metadata::default()),
        )
    }

    #[test]
    fn plain_trees_pass() {
        let entries = vec![
            entry("data", NodeType::Dir),
            entry("data/a.txt", NodeType::File),
            entry("data/link", NodeType::from_link(Path::new("/etc/passwd"))),
            entry("data/sub", NodeType::Dir),
            entry("data/sub/b", NodeType::File),
        ];
        check_restore_entries(&entries).unwrap();
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["../etc/passwd", "/etc/passwd", "data/../../x", ""] {
            let entries = vec![entry(bad, NodeType::File)];
            let e = check_restore_entries(&entries).unwrap_err();
            assert!(matches!(e, BackupError::Unsafe(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn nothing_may_lie_below_a_symlink_or_repeat() {
        let below = vec![
            entry("data", NodeType::Dir),
            entry("data/out", NodeType::from_link(Path::new("/etc"))),
            entry("data/out/passwd", NodeType::File),
        ];
        let e = check_restore_entries(&below).unwrap_err().to_string();
        assert!(e.contains("below the symlink"), "{e}");
        let twice = vec![
            entry("data", NodeType::Dir),
            entry("data/a", NodeType::File),
            entry("data/a", NodeType::Dir),
        ];
        let e = check_restore_entries(&twice).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn rustic_errors_read_as_one_line() {
        let text = "error checking trees : `rustic_core` experienced an error related to \
                    `cryptographic operations`.\n\nMessage:\nerror processing Pack:7d73965a at \
                    offset 596\n\n\nSome additional details ...\n\nCaused by:\n`rustic_core` \
                    experienced an error related to `cryptographic operations`.\n\nMessage:\n\
                    Data decryption failed, MAC check failed.\n\nFor more information, see: \
                    https://rustic.cli.rs/docs/errors/C001\n\n\nSome additional details ...\n\n\
                    Context:\n- nonce: [2, 249]\n\nCaused by:\naead::Error\n";
        assert_eq!(
            one_line(text),
            "error checking trees — error processing Pack:7d73965a at offset 596 — \
             Data decryption failed, MAC check failed. — aead::Error"
        );
    }
}
