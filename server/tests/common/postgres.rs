//! A PostgreSQL server image built locally, with no registry: `FROM scratch` with this
//! machine's PostgreSQL (Debian's `postgresql` package, which scripts/install-deps.sh
//! installs for the tests), the shared libraries `ldd` names for its programs, time zone
//! data and busybox as the shell. The server runs as user `postgres` (uid 999), initialises
//! `$PGDATA` on first start (trust authentication, locale C) and listens on 5432.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use super::docker;

/// The image's tag.
pub const POSTGRES_IMAGE: &str = "berth-test/postgres:1";

fn copy_into(root: &Path, file: &Path) {
    let target = root.join(file.strip_prefix("/").unwrap());
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    // The file a library link points to, stored under the link's own name.
    let resolved = std::fs::canonicalize(file).unwrap();
    std::fs::copy(&resolved, &target)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", resolved.display(), target.display()));
}

/// Copies `dir` to the same path under `root`: directories, files (with their modes) and
/// symlinks as links.
fn copy_tree(root: &Path, dir: &Path) {
    let target = root.join(dir.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let link = std::fs::read_link(&path).unwrap();
            std::os::unix::fs::symlink(link, target.join(entry.file_name())).unwrap();
        } else if kind.is_dir() {
            copy_tree(root, &path);
        } else {
            std::fs::copy(&path, target.join(entry.file_name())).unwrap();
        }
    }
}

/// The shared libraries (and the loader) the ELF files under `dir` need.
fn libraries(dir: &Path, found: &mut BTreeSet<PathBuf>) {
    for entry in walk(dir) {
        let out = Command::new("ldd").arg(&entry).output().unwrap();
        if !out.status.success() {
            continue; // not a dynamic ELF file
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                found.insert(PathBuf::from(p));
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

/// Builds [`POSTGRES_IMAGE`] unless it exists.
pub fn ensure_postgres_image() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let exists = Command::new("docker")
            .args(["image", "inspect", POSTGRES_IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if exists {
            return;
        }
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL from Debian's postgresql package (scripts/install-deps.sh)")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .max()
            .unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let lib = PathBuf::from(format!("/usr/lib/postgresql/{version}"));
        copy_tree(&root, &lib);
        copy_tree(&root, Path::new(&format!("/usr/share/postgresql/{version}")));
        copy_tree(&root, Path::new("/usr/share/zoneinfo"));
        let mut libs = BTreeSet::new();
        libraries(&lib, &mut libs);
        for l in &libs {
            copy_into(&root, l);
        }
        for dir in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/sh")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:999:\n").unwrap();
        // Owned by postgres: the data directory (a new volume mounted there takes its owner)
        // and the socket directory.
        let owned = ctx.path().join("owned");
        std::fs::create_dir_all(owned.join("var/lib/postgresql/data")).unwrap();
        std::fs::create_dir_all(owned.join("var/run/postgresql")).unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM scratch\nLABEL berth.test=1\nCOPY root/ /\nCOPY --chown=999:999 owned/ /\n\
                 ENV PATH=/usr/lib/postgresql/{version}/bin:/bin PGDATA=/var/lib/postgresql/data TZ=UTC\n\
                 USER postgres\nSTOPSIGNAL SIGINT\n\
                 CMD [\"/bin/sh\", \"-c\", \"/bin/busybox chmod 700 \\\"$PGDATA\\\"; [ -s \\\"$PGDATA/PG_VERSION\\\" ] || initdb --auth=trust --username=postgres --encoding=UTF8 --locale=C -D \\\"$PGDATA\\\" >/dev/null && exec postgres -D \\\"$PGDATA\\\" -c listen_addresses=* -c shared_buffers=16MB\"]\n"
            ),
        )
        .unwrap();
        docker(&["build", "-q", "-t", POSTGRES_IMAGE, ctx.path().to_str().unwrap()]);
    });
}

/// Runs SQL with `psql` inside `container` as user postgres on `database`; the rows, one per
/// line, fields separated by `|`.
pub fn psql(container: &str, database: &str, sql: &str) -> String {
    docker(&[
        "exec",
        container,
        "psql",
        "-U",
        "postgres",
        "-d",
        database,
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ])
}
