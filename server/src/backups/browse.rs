//! Browsing a snapshot: the paths a user may ask for, a directory's entries, one file's
//! bytes (`repo::` re-exports these).

use std::path::{Component, Path};

use rustic_core::{repofile::Node, LsOptions, OpenStatus, Repository};

use super::{
    repo::{rustic, DUMP_ROOT, SNAPSHOT_ROOT},
    BackupError,
};

/// Checks a path a user asks to browse or download: absolute, plain components only, and
/// under one of the snapshot roots. Returns it without a trailing `/`.
///
/// # Errors
/// `Unsafe` saying what is accepted.
pub fn snapshot_path(path: &str) -> Result<String, BackupError> {
    let trimmed = path.trim_end_matches('/');
    let p = Path::new(trimmed);
    let plain = p.is_absolute()
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    let rooted = [SNAPSHOT_ROOT, DUMP_ROOT]
        .iter()
        .any(|root| p.starts_with(root));
    if !plain || !rooted || trimmed.contains("//") {
        return Err(BackupError::Unsafe(format!(
            "'{path}' is not a path in the snapshot: give an absolute path under {SNAPSHOT_ROOT} or {DUMP_ROOT} without '.' or '..'"
        )));
    }
    Ok(trimmed.to_owned())
}

fn entry_view(path: &Path, node: &Node) -> app::model::SnapshotEntry {
    let kind = match node.node_type {
        rustic_core::repofile::NodeType::Dir => "dir",
        rustic_core::repofile::NodeType::File => "file",
        rustic_core::repofile::NodeType::Symlink { .. } => "symlink",
        _ => "other",
    };
    app::model::SnapshotEntry {
        name: node.name().to_string_lossy().into_owned(),
        path: path.to_string_lossy().into_owned(),
        kind: kind.into(),
        size: if node.is_file() { node.meta.size } else { 0 },
        mtime_ms: node.meta.mtime.map(|t| t.as_millisecond()),
        link_target: node
            .is_symlink()
            .then(|| node.node_type.to_link().to_string_lossy().into_owned()),
    }
}

/// The entries of directory `dir` (see [`snapshot_path`]) of a snapshot, directories first,
/// then by name.
///
/// # Errors
/// `Repository` when the snapshot or path does not exist; `WrongKind` when it is not a
/// directory.
pub fn list_dir(
    repo: Repository<OpenStatus>,
    snapshot_id: &str,
    dir: &str,
) -> Result<Vec<app::model::SnapshotEntry>, BackupError> {
    let repo = repo.to_indexed().map_err(rustic)?;
    let node = repo
        .node_from_snapshot_path(&format!("{snapshot_id}:{dir}"), |_| true)
        .map_err(rustic)?;
    if !node.is_dir() {
        return Err(BackupError::WrongKind(format!("{dir} is not a directory")));
    }
    let mut entries: Vec<_> = repo
        .ls(&node, &LsOptions::default().recursive(false))
        .map_err(rustic)?
        .map(|item| item.map(|(p, n)| entry_view(&Path::new(dir).join(p), &n)))
        .collect::<Result<_, _>>()
        .map_err(rustic)?;
    entries.sort_by(|a, b| (a.kind != "dir", &a.name).cmp(&(b.kind != "dir", &b.name)));
    Ok(entries)
}

/// Writes the file `path` of a snapshot to `out`; returns its size first through `size`.
///
/// # Errors
/// `Repository` when the snapshot or path does not exist or cannot be read; `WrongKind`
/// when it is not a regular file.
pub fn dump_file(
    repo: Repository<OpenStatus>,
    snapshot_id: &str,
    path: &str,
    size: &dyn Fn(u64),
    out: &mut dyn std::io::Write,
) -> Result<(), BackupError> {
    let repo = repo.to_indexed().map_err(rustic)?;
    let node = repo
        .node_from_snapshot_path(&format!("{snapshot_id}:{path}"), |_| true)
        .map_err(rustic)?;
    if !node.is_file() {
        return Err(BackupError::WrongKind(format!("{path} is not a file")));
    }
    size(node.meta.size);
    let mut out = out;
    repo.dump(&node, &mut out).map_err(rustic)
}
