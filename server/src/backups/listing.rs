//! Backups that only read what changed: Berth's volume agent (`server/agent/volume_lister.rs`,
//! embedded here as a static executable) lists the volumes' metadata inside a helper
//! container, rustic_core compares each file with the parent snapshot (type, size, mtime;
//! ctime and inode when the parent has them), and only the files that differ are fetched,
//! one archive request each (`GET /containers/{id}/archive?path=…`).
//!
//! The engine's archive stream gives mtimes in whole seconds (moby truncates them), so the
//! listing does too, and a parent made from the archive stream is matched; the listing adds
//! the ctime (nanoseconds) and the inode, which a later backup also compares, as restic does.
//! A change within the same second that keeps the size is thus caught by the ctime, except
//! against a parent made from the archive stream.
//!
//! When more than [`FETCH_LIMIT`] files may have changed since the parent (ctime not before
//! its time, less [`CLOCK_SLACK_S`]), one archive stream of everything is cheaper than a
//! request per file, and the backup reads the stream as before.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
};

use rustic_core::{
    jiff::Timestamp,
    repofile::{Metadata, Node, NodeType},
    RusticResult,
};

use rustic_core::{OpenStatus, Repository};

use super::{
    tar_source::{self, Content, SourceStats},
    BackupError,
};
use crate::runtime::{Engine, ImageBuild, VolumeHelper};

/// The agent, compiled by `server/build.rs`.
pub const AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/volume-lister"));
/// Where the agent lives in its image.
pub const AGENT_PATH: &str = "/volume-lister";
/// Files that may have changed up to which they are fetched one by one.
pub const FETCH_LIMIT: usize = 500;
/// How far a node's clock may lag behind the controller's, seconds: a file whose ctime is
/// this much before the parent's time still counts as possibly changed. The count only
/// chooses how files are read, never which are stored (rustic_core compares every file
/// with the parent either way), so a larger skew costs time, not data.
pub const CLOCK_SLACK_S: i64 = 5;
/// The most listing output read, bytes (about 10 million entries).
pub const MAX_LISTING_BYTES: usize = 1 << 30;

/// The agent's image tag: its name and the first 12 hex digits of the SHA-256 of the
/// executable, so a new Berth brings a new image and an old one is never reused.
pub fn agent_image() -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(AGENT);
    format!("berth-volume-lister:{}", &hex::encode(digest)[..12])
}

/// The build context (tar) of the agent's image: `FROM scratch`, the executable, nothing
/// else.
///
/// # Errors
/// Only if writing to memory fails.
pub fn agent_context() -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = format!("FROM scratch\nCOPY volume-lister {AGENT_PATH}\n");
    for (name, data, mode) in [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("volume-lister", AGENT, 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
    }
    tar.into_inner()
}

/// One entry of the agent's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the listed root; empty for the root itself.
    pub path: PathBuf,
    /// `d`, `f`, `l`, `c`, `b`, `p` or `s`.
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes; 0 but for regular files.
    pub size: u64,
    pub mtime_s: i64,
    pub ctime_s: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    /// `st_rdev`, for devices.
    pub rdev: u64,
    /// A symlink's target.
    pub target: Option<PathBuf>,
}

fn unhex(field: &str) -> Result<Vec<u8>, String> {
    hex::decode(field).map_err(|e| format!("a path in the listing is not hex ({e})"))
}

fn path_of(field: &str) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStringExt;
    let path = PathBuf::from(std::ffi::OsString::from_vec(unhex(field)?));
    if path == Path::new(".") {
        return Ok(PathBuf::new());
    }
    // Checked as the archive's entries are: plain names only.
    tar_source::relative_entry_path(&Path::new("root").join(&path), "root")?;
    Ok(path)
}

/// Parses the agent's output (the format is in `server/agent/volume_lister.rs`).
///
/// # Errors
/// The first entry the agent could not read, or a line that is not in the format.
pub fn parse(output: &[u8]) -> Result<Vec<Listed>, String> {
    let text = std::str::from_utf8(output)
        .map_err(|_| "the volume agent's listing is not text".to_owned())?;
    let mut entries = Vec::new();
    let mut end = None;
    for line in text.lines() {
        if end.is_some() {
            return Err(format!(
                "the volume agent printed a line after its end: {line:?}"
            ));
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if fields[0] == "=" && fields.len() == 2 {
            end = Some(fields[1].parse::<usize>().map_err(|_| {
                format!("the volume agent printed a line Berth does not read: {line:?}")
            })?);
            continue;
        }
        if fields[0] == "!" && fields.len() >= 2 {
            let path = path_of(fields[1])?;
            return Err(format!(
                "cannot list {}: {}",
                path.display(),
                fields[2..].join(" ")
            ));
        }
        let bad = || format!("the volume agent printed a line Berth does not read: {line:?}");
        if !(11..=12).contains(&fields.len()) || fields[0].len() != 1 {
            return Err(bad());
        }
        let int = |i: usize| fields[i].parse::<i64>().map_err(|_| bad());
        let uint = |i: usize| fields[i].parse::<u64>().map_err(|_| bad());
        let kind = fields[0].chars().next().unwrap_or('?');
        if !"dflcbps".contains(kind) || (kind == 'l') != (fields.len() == 12) {
            return Err(bad());
        }
        entries.push(Listed {
            path: path_of(fields[10])?,
            kind,
            mode: u32::from_str_radix(fields[1], 8).map_err(|_| bad())?,
            uid: u32::try_from(uint(2)?).map_err(|_| bad())?,
            gid: u32::try_from(uint(3)?).map_err(|_| bad())?,
            size: uint(4)?,
            mtime_s: int(5)?,
            ctime_s: int(6)?,
            ctime_ns: int(7)?,
            inode: uint(8)?,
            rdev: uint(9)?,
            target: fields.get(11).map(|t| path_of_target(t)).transpose()?,
        });
    }
    match end {
        Some(count) if count == entries.len() => {}
        Some(count) => {
            return Err(format!(
                "the volume agent listed {count} entries, Berth read {}",
                entries.len()
            ))
        }
        None => return Err("the volume agent's listing ends early".into()),
    }
    match entries.first() {
        Some(root) if root.path.as_os_str().is_empty() && root.kind == 'd' => Ok(entries),
        _ => Err("the volume agent's listing does not start with its root directory".into()),
    }
}

/// A symlink's target: any bytes (it is stored, never followed).
fn path_of_target(field: &str) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(unhex(field)?)))
}

/// How many regular files may have changed since a parent snapshot taken at `parent_s`
/// (seconds): those whose ctime is not before it, less [`CLOCK_SLACK_S`].
pub fn possibly_changed(entries: &[Listed], parent_s: i64) -> usize {
    entries
        .iter()
        .filter(|e| e.kind == 'f' && e.ctime_s >= parent_s - CLOCK_SLACK_S)
        .count()
}

/// Whether the files that may have changed since a parent taken at `parent_s` are better
/// fetched one by one than read with everything else from one archive stream: at most
/// [`FETCH_LIMIT`] of them, and every path UTF-8 (the engine's archive endpoint takes the
/// path as text; the stream carries any name).
pub fn fetch_one_by_one(entries: &[Listed], parent_s: i64) -> bool {
    entries.iter().all(|e| e.path.to_str().is_some())
        && possibly_changed(entries, parent_s) <= FETCH_LIMIT
}

/// The restic node of `entry` (named as its last path component, or `root_name`).
fn node(entry: &Listed, root_name: &std::ffi::OsStr) -> Result<Node, String> {
    let mut go_mode = tar_source::go_permissions(entry.mode);
    let node_type = match entry.kind {
        'd' => {
            go_mode |= tar_source::GO_MODE_DIR;
            NodeType::Dir
        }
        'f' => NodeType::File,
        'l' => {
            go_mode |= tar_source::GO_MODE_SYMLINK;
            NodeType::from_link(entry.target.as_deref().unwrap_or(Path::new("")))
        }
        'c' => {
            go_mode |= tar_source::GO_MODE_DEVICE | tar_source::GO_MODE_CHARDEV;
            NodeType::Chardev { device: entry.rdev }
        }
        'b' => {
            go_mode |= tar_source::GO_MODE_DEVICE;
            NodeType::Dev { device: entry.rdev }
        }
        'p' => {
            go_mode |= tar_source::GO_MODE_FIFO;
            NodeType::Fifo
        }
        other => {
            return Err(format!(
                "{} has a kind Berth does not back up ({other})",
                entry.path.display()
            ))
        }
    };
    let name = entry.path.file_name().unwrap_or(root_name);
    let meta = Metadata {
        mode: Some(go_mode),
        mtime: Timestamp::from_second(entry.mtime_s).ok(),
        ctime: Timestamp::new(entry.ctime_s, entry.ctime_ns as i32).ok(),
        inode: entry.inode,
        uid: Some(entry.uid),
        gid: Some(entry.gid),
        size: entry.size,
        ..Metadata::default()
    };
    Ok(Node::new_node(name, node_type, meta))
}

/// Reads one file of the helper container again: the archive stream of that one path
/// (`/berth-volumes/<name>/…`).
pub type FileFetcher = Arc<dyn Fn(&Path) -> Result<Box<dyn Read + Send>, String> + Send + Sync>;

/// A file's content, fetched when the archiver first reads it (it never does for a file the
/// parent snapshot matches).
pub struct Fetch {
    /// The path to ask the engine for.
    archive_path: PathBuf,
    /// The size the listing gave: a longer file is cut to it (it grew after the listing; the
    /// snapshot keeps it as listed), a shorter one fails the backup.
    size: u64,
    fetcher: FileFetcher,
    spill_dir: PathBuf,
    stats: Arc<SourceStats>,
    content: Option<io::Take<Content>>,
}

impl Fetch {
    fn fetch(&self) -> Result<io::Take<Content>, String> {
        let shown = self.archive_path.display();
        let mut archive = tar::Archive::new((self.fetcher)(&self.archive_path)?);
        let read_err = |e: io::Error| format!("cannot read {shown}: {e}");
        let mut entries = archive.entries().map_err(read_err)?;
        let mut first = entries
            .next()
            .ok_or_else(|| format!("{shown} is gone"))?
            .map_err(read_err)?;
        if first.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("{shown} is no longer a regular file"));
        }
        if first.size() < self.size {
            return Err(format!(
                "{shown} shrank from {} to {} bytes while it was backed up; the next backup \
                 will take it as it is then",
                self.size,
                first.size()
            ));
        }
        let size = first.size();
        let content = tar_source::take_content(&mut first, size, &self.spill_dir, &shown)?;
        self.stats.fetched_files.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fetched_bytes
            .fetch_add(self.size, Ordering::Relaxed);
        Ok(content.take(self.size))
    }
}

impl Read for Fetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.content.is_none() {
            match self.fetch() {
                Ok(c) => self.content = Some(c),
                Err(why) => {
                    self.stats.fail(why.clone());
                    return Err(io::Error::other(why));
                }
            }
        }
        self.content.as_mut().expect("fetched").read(buf)
    }
}

/// What [`entries`] needs besides the listing.
pub struct ListingInput {
    pub entries: Vec<Listed>,
    /// The listed root in the helper container, e.g. `/berth-volumes`.
    pub root: PathBuf,
    pub fetcher: FileFetcher,
}

/// Sends the listing's entries, under `snapshot_root`, to the archiver; stops at the first
/// failure (recorded).
pub fn send_entries(
    input: ListingInput,
    snapshot_root: &Path,
    spill_dir: &Path,
    stats: &Arc<SourceStats>,
    tx: &std::sync::mpsc::SyncSender<RusticResult<rustic_core::ReadSourceEntry<Content>>>,
) {
    stats.listed.store(true, Ordering::Relaxed);
    let root_name = snapshot_root.file_name().unwrap_or_default().to_owned();
    // The engine's archive stream leaves sockets out, and so does this: a restored socket
    // is only a name without its server.
    for entry in input.entries.iter().filter(|e| e.kind != 's') {
        let node = match node(entry, &root_name) {
            Ok(n) => n,
            Err(why) => {
                stats.fail(why.clone());
                let _ = tx.send(Err(tar_source::rustic_error(&why)));
                return;
            }
        };
        let open = (entry.kind == 'f').then(|| {
            Content::Fetch(Box::new(Fetch {
                archive_path: input.root.join(&entry.path),
                size: entry.size,
                fetcher: input.fetcher.clone(),
                spill_dir: spill_dir.to_owned(),
                stats: stats.clone(),
                content: None,
            }))
        });
        if !node.is_dir() {
            stats.files.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(entry.size, Ordering::Relaxed);
        }
        let path = snapshot_root.join(&entry.path);
        if tx
            .send(Ok(rustic_core::ReadSourceEntry { path, node, open }))
            .is_err()
        {
            return;
        }
    }
}

/// Lists the volumes of `helper` (whose `agent` must be set to run the agent on
/// `HELPER_ROOT`) with the agent: builds the agent's image on the node first if it is not
/// there, creates the helper and runs it. Returns the helper's id (exited; its volumes can
/// still be read through the archive endpoint) and the listing.
///
/// # Errors
/// A message saying what failed: the image build, the engine, the agent's own report, or a
/// listing Berth cannot read. The helper may exist then; the caller removes it by name.
pub async fn list_volumes(
    engine: &Engine,
    helper: &VolumeHelper,
) -> Result<(String, Vec<Listed>), String> {
    if engine
        .inspect_image(&helper.image)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let build = ImageBuild {
            tag: helper.image.clone(),
            dockerfile: "Dockerfile".into(),
            build_args: Default::default(),
            labels: [(super::HELPER_LABEL.to_owned(), "volume-lister".to_owned())].into(),
        };
        let context = agent_context().map_err(|e| e.to_string())?;
        engine
            .build_image(context, &build, |_| {})
            .await
            .map_err(|e| format!("cannot build the volume agent's image: {e}"))?;
        remove_older_agents(engine, &helper.image).await;
    }
    let container = engine
        .create_volume_helper(helper)
        .await
        .map_err(|e| e.to_string())?;
    let (stdout, code, stderr) = engine
        .run_volume_agent(&container, AGENT_TIME_LIMIT, MAX_LISTING_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    match code {
        // Status 1: an entry could not be read, which the listing names.
        0 | 1 => parse(&stdout).map(|entries| (container, entries)),
        other => Err(format!(
            "the volume agent exited with status {other}: {}",
            stderr.trim()
        )),
    }
}

/// Removes the agent images of other Berth versions from the node, once a new one is built
/// (each version's image is tagged with its executable's digest). One still used by a
/// running helper, or that the engine refuses to remove, stays; the next build tries again.
async fn remove_older_agents(engine: &Engine, current: &str) {
    let images = match engine
        .labelled_image_tags(super::HELPER_LABEL, "volume-lister")
        .await
    {
        Ok(images) => images,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list older volume agent images");
            return;
        }
    };
    for tag in images.iter().flatten().filter(|t| t.as_str() != current) {
        if let Err(e) = engine.remove_image(tag).await {
            tracing::warn!(image = %tag, error = %e, "cannot remove an older volume agent image");
        }
    }
}

/// How long the agent may take to list the volumes.
pub const AGENT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// When the snapshot the next backup labelled `label` of `root` compares with was taken,
/// seconds since the epoch: the newest of host `berth`, that label and that path, as
/// rustic_core chooses the parent (grouped by host, label and paths).
///
/// # Errors
/// The repository's snapshots cannot be read.
pub fn parent_time(
    repo: &Repository<OpenStatus>,
    label: &str,
    root: &str,
) -> Result<Option<i64>, BackupError> {
    let snapshots = repo
        .get_matching_snapshots(|s| {
            s.hostname == "berth" && s.label == label && s.paths.iter().eq([root])
        })
        .map_err(super::repo::rustic)?;
    Ok(snapshots
        .iter()
        .map(|s| s.time.timestamp().as_second())
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, path: &str, extra: &str) -> String {
        format!(
            "{kind} 644 1000 1000 5 1700000000 1700000001 12 77 0 {}{extra}\n",
            hex::encode(path)
        )
    }

    #[test]
    fn a_listing_is_read_in_order_with_its_metadata() {
        let mut out = line("d", ".", "");
        out += &line("f", "a b\nc", "");
        out += &line("l", "ln", &format!(" {}", hex::encode("../x")));
        out += "= 3\n";
        let entries = parse(out.as_bytes()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].path, PathBuf::new());
        assert_eq!(entries[1].path, PathBuf::from("a b\nc"));
        assert_eq!(
            (entries[1].mode, entries[1].size, entries[1].ctime_ns),
            (0o644, 5, 12)
        );
        assert_eq!(entries[2].target, Some(PathBuf::from("../x")));
        assert_eq!(possibly_changed(&entries, 1_700_000_001 + CLOCK_SLACK_S), 1);
        assert_eq!(possibly_changed(&entries, 1_700_000_002 + CLOCK_SLACK_S), 0);
    }

    #[test]
    fn bad_listings_are_refused_with_the_reason() {
        let root = line("d", ".", "");
        for (bad, says) in [
            (root.clone(), "ends early"),
            (format!("{root}= 2\n"), "listed 2 entries, Berth read 1"),
            (
                format!("{root}{root}= 1\n"),
                "listed 1 entries, Berth read 2",
            ),
            (format!("{root}= 1\n{root}"), "after its end"),
            (
                format!("{root}! {} Permission denied\n", hex::encode("x")),
                "cannot list x: Permission denied",
            ),
            (
                format!("{}= 1\n", line("f", "a", "")),
                "does not start with its root",
            ),
            (format!("{root}{}", line("f", "../etc", "")), "not plain"),
            (format!("{root}f 644 1 1\n"), "does not read"),
            (format!("{root}{}", line("l", "ln", "")), "does not read"),
            (
                format!("{root}{}", line("f", "zz", "")).replace(&hex::encode("zz"), "zz"),
                "not hex",
            ),
        ] {
            let e = parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{e} lacks {says}");
        }
    }

    #[test]
    fn the_agent_image_is_named_by_its_content_and_holds_only_the_agent() {
        assert!(agent_image().starts_with("berth-volume-lister:"));
        assert!(AGENT.starts_with(b"\x7fELF"));
        let context = agent_context().unwrap();
        let mut archive = tar::Archive::new(&context[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "volume-lister"]);
    }
}
