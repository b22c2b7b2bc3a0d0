//! A git smart-HTTP server for the build tests: `git http-backend` behind Python's CGI
//! server on loopback, with bare repositories and working clones to push from.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// A git smart-HTTP server on loopback: `git http-backend` run as CGI by Python's
/// `http.server` (its CGI handler passes the request body and the path to the script).
pub struct GitServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl GitServer {
    pub fn start() -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir_all(&cgi).unwrap();
        std::fs::create_dir_all(dir.path().join("repos")).unwrap();
        let script = cgi.join("git");
        std::fs::write(
            &script,
            format!(
                // Run as root, Python's CGI handler runs scripts as `nobody`: the repositories
                // are not theirs, so git must be told they are safe (command-line scope).
                "#!/bin/sh\nexport GIT_PROJECT_ROOT={}\nexport GIT_HTTP_EXPORT_ALL=1\n\
                 export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'\n\
                 exec git http-backend\n",
                dir.path().join("repos").display()
            ),
        )
        .unwrap();
        // `nobody` (see above) must be able to read the repositories.
        for p in [dir.path(), &script] {
            Command::new("chmod")
                .args(["755", p.to_str().unwrap()])
                .status()
                .unwrap();
        }
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--cgi",
                "--bind",
                "127.0.0.1",
                "0",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        GitServer { child, port, dir }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/git/{repo}", self.port)
    }

    /// A bare repository `name` and a working clone to commit from.
    pub fn repository(&self, name: &str) -> Repo {
        let bare = self.dir.path().join("repos").join(name);
        git(
            self.dir.path(),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        // Old protocol (the CGI server passes no Git-Protocol header): allow fetching a commit
        // by id, as protocol v2 servers do.
        git(
            &bare,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        let work = self.dir.path().join(format!("work-{name}"));
        git(
            self.dir.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo { work }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Repo {
    work: PathBuf,
}

impl Repo {
    /// Writes `files`, commits them on `branch` and pushes; returns the commit id.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        git(&self.work, &["checkout", "-q", "-B", branch]);
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &[
                "-c",
                "user.name=Test",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-q",
                "-m",
                message,
            ],
        );
        git(&self.work, &["push", "-q", "origin", branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
