//! `volume-lister ROOT`: Berth's volume agent. It runs inside a backup's helper container
//! (no network, volumes mounted read-only, only `CAP_DAC_READ_SEARCH`) and prints the
//! metadata of every entry under ROOT, without reading any file's contents, so that a
//! backup with a parent snapshot only fetches the files that changed.
//!
//! Compiled by `server/build.rs` with plain `rustc` as a static executable (std only, no
//! crates), and put into a `FROM scratch` image by `backups::listing`.
//!
//! Output: one line per entry, in walk order (a directory, then its entries sorted by the
//! bytes of their names, each directory's contents right after it), the root first. Eleven
//! space-separated fields:
//!
//! `KIND MODE UID GID SIZE MTIME_S CTIME_S CTIME_NS INODE RDEV PATH [TARGET]`
//!
//! - KIND: `d` directory, `f` regular file, `l` symlink, `c` character device, `b` block
//!   device, `p` fifo, `s` socket.
//! - MODE: `st_mode & 0o7777` in octal; SIZE: bytes (0 but for files); times: seconds since
//!   the epoch and nanoseconds; RDEV: `st_rdev` (devices).
//! - PATH: relative to ROOT (`.` for ROOT itself), TARGET: a symlink's target; both as hex
//!   of their bytes, so any name survives the line format.
//!
//! A line `! PATH MESSAGE` (PATH as hex, MESSAGE plain text) reports an entry that could not
//! be read; the lister goes on and exits with status 1 at the end. The last line is
//! `= COUNT`, the number of entry lines before it, so a reader knows it has all of them. A
//! failure to write the output stops it with status 2.

use std::{
    ffi::OsStr,
    fs,
    io::{self, BufWriter, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt},
    },
    path::Path,
};

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

struct Lister<W: Write> {
    out: W,
    failed: bool,
    /// Entry lines printed.
    count: u64,
}

impl<W: Write> Lister<W> {
    fn fail(&mut self, rel: &Path, e: &io::Error) -> io::Result<()> {
        self.failed = true;
        writeln!(self.out, "! {} {e}", hex(rel.as_os_str().as_bytes()))
    }

    /// Prints `rel` (whose path on disk is `abs`) and, for a directory, everything below it.
    fn walk(&mut self, abs: &Path, rel: &Path) -> io::Result<()> {
        let meta = match fs::symlink_metadata(abs) {
            Ok(m) => m,
            Err(e) => return self.fail(rel, &e),
        };
        let t = meta.file_type();
        let kind = if t.is_dir() {
            'd'
        } else if t.is_file() {
            'f'
        } else if t.is_symlink() {
            'l'
        } else if t.is_char_device() {
            'c'
        } else if t.is_block_device() {
            'b'
        } else if t.is_fifo() {
            'p'
        } else {
            's'
        };
        let target = if t.is_symlink() {
            match fs::read_link(abs) {
                Ok(target) => format!(" {}", hex(target.as_os_str().as_bytes())),
                Err(e) => return self.fail(rel, &e),
            }
        } else {
            String::new()
        };
        self.count += 1;
        writeln!(
            self.out,
            "{kind} {:o} {} {} {} {} {} {} {} {} {}{target}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            if t.is_file() { meta.len() } else { 0 },
            meta.mtime(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.ino(),
            meta.rdev(),
            hex(rel.as_os_str().as_bytes()),
        )?;
        if !t.is_dir() {
            return Ok(());
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        match fs::read_dir(abs) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                        Err(e) => return self.fail(rel, &e),
                    }
                }
            }
            Err(e) => return self.fail(rel, &e),
        }
        names.sort();
        for name in names {
            let name = OsStr::from_bytes(&name);
            let child = if rel == Path::new(".") {
                Path::new(name).to_owned()
            } else {
                rel.join(name)
            };
            self.walk(&abs.join(name), &child)?;
        }
        Ok(())
    }
}

fn main() {
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: volume-lister ROOT");
        std::process::exit(2);
    };
    let stdout = io::stdout();
    let mut lister = Lister {
        out: BufWriter::with_capacity(1 << 16, stdout.lock()),
        failed: false,
        count: 0,
    };
    let written = lister
        .walk(Path::new(&root), Path::new("."))
        .and_then(|()| writeln!(lister.out, "= {}", lister.count))
        .and_then(|()| lister.out.flush());
    if let Err(e) = written {
        eprintln!("volume-lister: cannot write the listing: {e}");
        std::process::exit(2);
    }
    std::process::exit(i32::from(lister.failed));
}
