//! A rustic_core [`ReadSource`] over a tar stream: the volumes as the engine's archive
//! endpoint returns them become the tree of one snapshot, without being written to the host
//! first. It also serves one finished file (a database dump) as a snapshot.
//!
//! rustic_core's archiver builds trees from entries in walk order (each directory before
//! its contents, names in byte order, as `LocalSource` walks), and it reads file contents in
//! parallel after the entries were listed. A tar stream is one pass: each file's bytes are
//! taken out of the stream as its entry is listed, kept in memory up to [`IN_MEMORY_BYTES`]
//! and spilled to an unnamed temporary file beyond. The archiver skips entries that fail
//! with only a warning, so every failure is also recorded in [`SourceStats::failure`], and
//! the caller discards a snapshot that has one.

use std::{
    io::{self, Cursor, Read, Seek},
    path::{Component, Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use super::human_bytes;
use rustic_core::{
    repofile::{Metadata, Node, NodeType},
    ErrorKind, ReadSource, ReadSourceEntry, RusticError, RusticResult,
};

/// Files up to this size are held in memory between listing and archiving; larger ones go
/// to a temporary file.
pub const IN_MEMORY_BYTES: u64 = 1 << 20;
/// Entries listed ahead of the archiver.
const LIST_AHEAD: usize = 32;

// Go's `io/fs.FileMode` type bits, which restic's tree format stores in `mode`
// (<https://pkg.go.dev/io/fs#FileMode>).
pub(super) const GO_MODE_DIR: u32 = 1 << 31;
pub(super) const GO_MODE_SYMLINK: u32 = 1 << 27;
pub(super) const GO_MODE_DEVICE: u32 = 1 << 26;
pub(super) const GO_MODE_FIFO: u32 = 1 << 25;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
pub(super) const GO_MODE_CHARDEV: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

/// What the source has read, shared with whoever reports progress.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Entries listed that are not directories (files, symlinks, devices, fifos), as restic
    /// counts files.
    pub files: AtomicU64,
    /// Bytes of regular files listed.
    pub bytes: AtomicU64,
    /// Files whose contents were fetched one by one after a listing (`listing`); the others
    /// matched the parent snapshot and were not read.
    pub fetched_files: AtomicU64,
    /// Bytes of those files.
    pub fetched_bytes: AtomicU64,
    /// Whether the entries come from the volume agent's listing (contents fetched only where
    /// changed) rather than from the archive stream (every byte read).
    pub listed: std::sync::atomic::AtomicBool,
    /// The first failure; a snapshot made while one happened is incomplete.
    pub failure: Mutex<Option<String>>,
}

impl SourceStats {
    pub(super) fn fail(&self, why: String) {
        let mut f = self.failure.lock().expect("failure lock");
        if f.is_none() {
            *f = Some(why);
        }
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure lock").clone()
    }

    /// A running backup's progress for its job step: `"6 files, 2.0 MiB read"` from the
    /// archive stream; `"6 files (2.0 MiB) listed, 1 fetched (11 B)"` from a listing, where
    /// only changed files are read.
    pub fn progress(&self) -> String {
        let files = self.files.load(Ordering::Relaxed);
        let bytes = human_bytes(self.bytes.load(Ordering::Relaxed));
        if self.listed.load(Ordering::Relaxed) {
            format!(
                "{files} files ({bytes}) listed, {} fetched ({})",
                self.fetched_files.load(Ordering::Relaxed),
                human_bytes(self.fetched_bytes.load(Ordering::Relaxed))
            )
        } else {
            format!("{files} files, {bytes} read")
        }
    }
}

/// A file's bytes between listing and archiving.
pub enum Content {
    Memory(Cursor<Vec<u8>>),
    Spilled(std::fs::File),
    /// Read from the engine only when the archiver asks for it.
    Fetch(Box<super::listing::Fetch>),
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Memory(c) => c.read(buf),
            Self::Spilled(f) => f.read(buf),
            Self::Fetch(f) => f.read(buf),
        }
    }
}

/// Reads the file at a path of the archive (as the archive names it, e.g.
/// `berth-volumes/data/a.txt`) again, as a tar stream holding that one file: the content of a
/// hard link, which a tar stream gives only once, for its first name.
pub type LinkFetcher = Box<dyn Fn(&Path) -> Result<Box<dyn Read + Send>, String> + Send>;

/// What a snapshot is made from.
pub enum SourceInput {
    /// The engine's archive stream; its entries under `tar_root` (the archive's root
    /// directory, e.g. `berth-volumes`) become the snapshot's entries. A hard link becomes a
    /// file of its own (restic stores hard links so, and its chunks are the first name's, so
    /// nothing is stored twice), its content read again through `links`; without `links`, a
    /// hard link fails the backup.
    Tar {
        reader: Box<dyn Read + Send>,
        tar_root: String,
        links: Option<LinkFetcher>,
    },
    /// One finished file (a database dump, written out first: restic's tree records each
    /// file's size, which a stream only knows at its end), named `name` in the snapshot's
    /// root directory.
    File { name: String, file: std::fs::File },
    /// The volume agent's listing: the files are fetched one by one, and only those the
    /// parent snapshot does not match.
    Listing(super::listing::ListingInput),
}

/// A snapshot's source: a tar stream or one streamed file, listed under `snapshot_root`
/// (e.g. `/volumes` or `/databases`).
pub struct TarSource {
    input: Mutex<Option<SourceInput>>,
    snapshot_root: PathBuf,
    spill_dir: PathBuf,
    pub stats: Arc<SourceStats>,
}

impl TarSource {
    pub fn new(input: SourceInput, snapshot_root: &Path, spill_dir: &Path) -> Self {
        Self {
            input: Mutex::new(Some(input)),
            snapshot_root: snapshot_root.to_owned(),
            spill_dir: spill_dir.to_owned(),
            stats: Arc::new(SourceStats::default()),
        }
    }
}

pub(super) fn rustic_error(why: &str) -> Box<RusticError> {
    RusticError::new(ErrorKind::Backend, "{why}").attach_context("why", why.to_owned())
}

/// `path` of a tar entry, relative to `tar_root`, checked: only plain components (no `..`,
/// no root, no `.` other than a leading one). `None` for the root entry itself.
///
/// # Errors
/// A message naming the entry when it lies outside `tar_root` or has a component that is
/// not a plain name.
pub fn relative_entry_path(path: &Path, tar_root: &str) -> Result<Option<PathBuf>, String> {
    let mut parts = path.components().filter(|c| *c != Component::CurDir);
    match parts.next() {
        Some(Component::Normal(first)) if first == tar_root => {}
        _ => {
            return Err(format!(
                "the archive has an entry outside '{tar_root}': {}",
                path.display()
            ))
        }
    }
    let mut rel = PathBuf::new();
    for c in parts {
        match c {
            Component::Normal(name) => rel.push(name),
            _ => {
                return Err(format!(
                    "the archive has an entry with a path that is not plain: {}",
                    path.display()
                ))
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Go's permission bits for Unix permissions `perm` (`st_mode & 0o7777`).
pub(super) fn go_permissions(perm: u32) -> u32 {
    let mut go_mode = perm & 0o777;
    if perm & 0o4000 != 0 {
        go_mode |= GO_MODE_SETUID;
    }
    if perm & 0o2000 != 0 {
        go_mode |= GO_MODE_SETGID;
    }
    if perm & 0o1000 != 0 {
        go_mode |= GO_MODE_STICKY;
    }
    go_mode
}

/// The node type and Go file mode of a tar entry.
fn node_type(header: &tar::Header, path: &Path) -> Result<(NodeType, u32), String> {
    let go_mode = go_permissions(header.mode().unwrap_or(0o644));
    let device = || {
        let major = u64::from(header.device_major().ok().flatten().unwrap_or(0));
        let minor = u64::from(header.device_minor().ok().flatten().unwrap_or(0));
        // Linux's makedev (glibc's gnu_dev_makedev bit layout).
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    };
    let t = header.entry_type();
    Ok(match t {
        tar::EntryType::Directory => (NodeType::Dir, go_mode | GO_MODE_DIR),
        tar::EntryType::Regular | tar::EntryType::Continuous => (NodeType::File, go_mode),
        tar::EntryType::Symlink => {
            let target = header
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| format!("the symlink {} has no target", path.display()))?;
            (NodeType::from_link(&target), go_mode | GO_MODE_SYMLINK)
        }
        tar::EntryType::Char => (
            NodeType::Chardev { device: device() },
            go_mode | GO_MODE_DEVICE | GO_MODE_CHARDEV,
        ),
        tar::EntryType::Block => (NodeType::Dev { device: device() }, go_mode | GO_MODE_DEVICE),
        tar::EntryType::Fifo => (NodeType::Fifo, go_mode | GO_MODE_FIFO),
        // Its content comes from the first name (`Lister::linked`).
        tar::EntryType::Link => (NodeType::File, go_mode),
        other => {
            return Err(format!(
                "{} has a tar entry type Berth does not back up ({other:?})",
                path.display()
            ))
        }
    })
}

fn metadata(header: &tar::Header, go_mode: u32, size: u64) -> Metadata {
    let mtime = header
        .mtime()
        .ok()
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| rustic_core::jiff::Timestamp::from_second(s).ok());
    Metadata {
        mode: Some(go_mode),
        mtime,
        uid: header.uid().ok().and_then(|u| u32::try_from(u).ok()),
        gid: header.gid().ok().and_then(|g| u32::try_from(g).ok()),
        user: header.username().ok().flatten().map(str::to_owned),
        group: header.groupname().ok().flatten().map(str::to_owned),
        size,
        ..Metadata::default()
    }
}

struct Lister {
    tar_root: String,
    snapshot_root: PathBuf,
    spill_dir: PathBuf,
    stats: Arc<SourceStats>,
    links: Option<LinkFetcher>,
}

impl Lister {
    /// Lists every entry of `reader` into `tx`; stops at the first failure (recorded).
    fn run<R: Read>(
        &self,
        reader: R,
        tx: &std::sync::mpsc::SyncSender<RusticResult<ReadSourceEntry<Content>>>,
    ) {
        if let Err(why) = self.list(reader, tx) {
            self.stats.fail(why.clone());
            let _ = tx.send(Err(rustic_error(&why)));
        }
    }

    fn list<R: Read>(
        &self,
        reader: R,
        tx: &std::sync::mpsc::SyncSender<RusticResult<ReadSourceEntry<Content>>>,
    ) -> Result<(), String> {
        let mut archive = tar::Archive::new(reader);
        let mut last: Option<PathBuf> = None;
        let entries = archive
            .entries()
            .map_err(|e| format!("cannot read the archive: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("cannot read the archive: {e}"))?;
            let raw = entry
                .path()
                .map_err(|e| format!("an archive entry has an unreadable path: {e}"))?
                .into_owned();
            let path = match relative_entry_path(&raw, &self.tar_root)? {
                Some(rel) => self.snapshot_root.join(rel),
                None => self.snapshot_root.clone(),
            };
            if let Some(prev) = &last {
                if path <= *prev {
                    return Err(format!(
                        "the archive lists {} after {}: entries must come in walk order",
                        path.display(),
                        prev.display()
                    ));
                }
            }
            let (node_type, go_mode) = node_type(entry.header(), &raw)?;
            let (size, open) = if entry.header().entry_type() == tar::EntryType::Link {
                let (size, content) = self.linked(entry.header(), &raw)?;
                (size, Some(content))
            } else if matches!(node_type, NodeType::File) {
                let size = entry.size();
                (size, Some(self.take_content(&mut entry, size, &raw)?))
            } else {
                (0, None)
            };
            let name = path
                .file_name()
                .ok_or_else(|| format!("an archive entry has no name: {}", raw.display()))?
                .to_owned();
            let node = Node::new_node(&name, node_type, metadata(entry.header(), go_mode, size));
            if !node.is_dir() {
                self.stats.files.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(size, Ordering::Relaxed);
            }
            last = Some(path.clone());
            if tx.send(Ok(ReadSourceEntry { path, node, open })).is_err() {
                return Err("the backup stopped reading the archive".into());
            }
        }
        Ok(())
    }

    /// The size and content of hard link `raw`: its first name's file, read again.
    fn linked(&self, header: &tar::Header, raw: &Path) -> Result<(u64, Content), String> {
        let target = header
            .link_name()
            .ok()
            .flatten()
            .ok_or_else(|| format!("the hard link {} has no target", raw.display()))?
            .into_owned();
        relative_entry_path(&target, &self.tar_root)?;
        let fetch = self.links.as_ref().ok_or_else(|| {
            format!(
                "{} is a hard link, and this source cannot read its target again",
                raw.display()
            )
        })?;
        let mut archive = tar::Archive::new(fetch(&target)?);
        let read_err = |e: io::Error| format!("cannot read {} again: {e}", target.display());
        let mut entries = archive.entries().map_err(read_err)?;
        let mut first = entries
            .next()
            .ok_or_else(|| {
                format!(
                    "{} is gone (the target of {})",
                    target.display(),
                    raw.display()
                )
            })?
            .map_err(read_err)?;
        if first.header().entry_type() != tar::EntryType::Regular {
            return Err(format!(
                "the hard link {} names {}, which is not a regular file",
                raw.display(),
                target.display()
            ));
        }
        let size = first.size();
        let content = self.take_content(&mut first, size, raw)?;
        Ok((size, content))
    }

    fn take_content<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        size: u64,
        raw: &Path,
    ) -> Result<Content, String> {
        take_content(entry, size, &self.spill_dir, &raw.display())
    }
}

/// The `size` bytes of `entry` (named `shown` in errors), in memory up to
/// [`IN_MEMORY_BYTES`], else in an unnamed temporary file in `spill_dir`.
pub(super) fn take_content<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    size: u64,
    spill_dir: &Path,
    shown: &dyn std::fmt::Display,
) -> Result<Content, String> {
    let read_err = |e: io::Error| format!("cannot read {shown} from the archive: {e}");
    if size <= IN_MEMORY_BYTES {
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(read_err)?;
        return Ok(Content::Memory(Cursor::new(data)));
    }
    let mut file = tempfile::tempfile_in(spill_dir).map_err(|e| {
        format!(
            "cannot make a temporary file in {}: {e}",
            spill_dir.display()
        )
    })?;
    io::copy(entry, &mut file).map_err(read_err)?;
    file.rewind().map_err(read_err)?;
    Ok(Content::Spilled(file))
}

fn now_metadata(go_mode: u32) -> Metadata {
    Metadata {
        mode: Some(go_mode),
        mtime: Some(rustic_core::jiff::Timestamp::now()),
        ..Metadata::default()
    }
}

impl ReadSource for TarSource {
    type Open = Content;
    type Iter = std::sync::mpsc::IntoIter<RusticResult<ReadSourceEntry<Content>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    /// Lists the entries, from a thread of its own for a tar stream; a second call lists
    /// nothing (a stream can be read once) and records that as a failure.
    fn entries(&self) -> Self::Iter {
        let (tx, rx) = std::sync::mpsc::sync_channel(LIST_AHEAD);
        let input = self.input.lock().expect("input lock").take();
        match input {
            Some(SourceInput::Tar {
                reader,
                tar_root,
                links,
            }) => {
                let lister = Lister {
                    tar_root,
                    snapshot_root: self.snapshot_root.clone(),
                    spill_dir: self.spill_dir.clone(),
                    stats: self.stats.clone(),
                    links,
                };
                std::thread::spawn(move || lister.run(reader, &tx));
            }
            Some(SourceInput::File { name, file }) => {
                let root = self.snapshot_root.clone();
                let dir_name = root.file_name().unwrap_or_default().to_owned();
                let dir =
                    Node::new_node(&dir_name, NodeType::Dir, now_metadata(0o700 | GO_MODE_DIR));
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                let mut meta = now_metadata(0o600);
                meta.size = size;
                let node = Node::new_node(std::ffi::OsStr::new(&name), NodeType::File, meta);
                self.stats.files.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(size, Ordering::Relaxed);
                // Both fit in the channel: no thread needed.
                let _ = tx.send(Ok(ReadSourceEntry {
                    path: root.clone(),
                    node: dir,
                    open: None,
                }));
                let _ = tx.send(Ok(ReadSourceEntry {
                    path: root.join(&name),
                    node,
                    open: Some(Content::Spilled(file)),
                }));
            }
            Some(SourceInput::Listing(input)) => {
                let (root, spill, stats) = (
                    self.snapshot_root.clone(),
                    self.spill_dir.clone(),
                    self.stats.clone(),
                );
                std::thread::spawn(move || {
                    super::listing::send_entries(input, &root, &spill, &stats, &tx);
                });
            }
            None => self.stats.fail("the source was read already".into()),
        }
        rx.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_what_was_read() {
        let stats = SourceStats::default();
        stats.files.store(6, Ordering::Relaxed);
        stats.bytes.store(3 << 20, Ordering::Relaxed);
        assert_eq!(stats.progress(), "6 files, 3.0 MiB read");
        stats.listed.store(true, Ordering::Relaxed);
        stats.fetched_files.store(1, Ordering::Relaxed);
        stats.fetched_bytes.store(11, Ordering::Relaxed);
        assert_eq!(
            stats.progress(),
            "6 files (3.0 MiB) listed, 1 fetched (11 B)"
        );
    }

    #[test]
    fn entry_paths_stay_under_the_root() {
        let ok = |p: &str| relative_entry_path(Path::new(p), "berth-volumes");
        assert_eq!(ok("berth-volumes/").unwrap(), None);
        assert_eq!(
            ok("berth-volumes/data/a/b.txt").unwrap(),
            Some(PathBuf::from("data/a/b.txt"))
        );
        assert_eq!(
            ok("./berth-volumes/data").unwrap(),
            Some(PathBuf::from("data"))
        );
        for bad in [
            "other/data",
            "/berth-volumes/data",
            "berth-volumes/../etc/passwd",
            "berth-volumes/data/../../x",
            "../berth-volumes/x",
        ] {
            assert!(ok(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn makedev_matches_linux() {
        // /dev/null is 1:3, /dev/tty 5:0.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        let (t, mode) = node_type(&h, Path::new("null")).unwrap();
        assert_eq!(t, NodeType::Chardev { device: 0x103 });
        assert_eq!(mode, 0o666 | GO_MODE_DEVICE | GO_MODE_CHARDEV);
    }
}
