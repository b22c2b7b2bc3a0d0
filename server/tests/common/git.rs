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

    /// The bare repository `repo` on disk (what an ssh URL names).
    pub fn path(&self, repo: &str) -> PathBuf {
        self.dir.path().join("repos").join(repo)
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

/// OpenSSH's server on loopback, for fetches over ssh: public-key login as the user running
/// the tests, with the keys of [`SshServer::authorize`] only (no password, no PAM), running
/// `git-upload-pack` like any git host.
pub struct SshServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl SshServer {
    pub fn start() -> SshServer {
        let dir = tempfile::tempdir().unwrap();
        // Run as root, sshd wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.path().join("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .expect("ssh-keygen runs");
        assert!(out.status.success(), "{out:?}");
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, "").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\n\
                 UsePAM no\n",
                host_key.display(),
                authorized.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd runs (package openssh-server)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "sshd never listened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        SshServer {
            child,
            port,
            dir,
            user,
        }
    }

    /// Lets `public_line` (an `authorized_keys` line) log in, instead of any key before.
    pub fn authorize(&self, public_line: &str) {
        std::fs::write(
            self.dir.path().join("authorized_keys"),
            format!("{public_line}\n"),
        )
        .unwrap();
    }

    /// `ssh://user@127.0.0.1:port/abs/path` of a repository on disk.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on loopback in front of a [`GitServer`], asking for HTTP basic auth (one user and
/// password, stored `{PLAIN}` in its user file): a private repository as git hosts serve
/// them over HTTPS, minus the TLS.
pub struct BasicAuthFront {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl BasicAuthFront {
    pub fn start(backend: &GitServer, user: &str, password: &str) -> BasicAuthFront {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(p("htpasswd"), format!("{user}:{{PLAIN}}{password}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let temp: String = ["body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|t| format!("{t}_temp_path {};\n", p(t)).replacen("body_", "client_body_", 1))
            .collect();
        std::fs::write(
            p("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\nuser root;\npid {pid};\nerror_log {log} warn;\n\
                 events {{}}\nhttp {{\naccess_log off;\n{temp}\
                 server {{ listen 127.0.0.1:{port}; location / {{ auth_basic git; \
                 auth_basic_user_file {users}; proxy_pass http://127.0.0.1:{backend}; \
                 proxy_buffering off; proxy_request_buffering off; client_max_body_size 0; }} }}\n}}\n",
                pid = p("nginx.pid"),
                log = p("error.log"),
                users = p("htpasswd"),
                backend = backend.port,
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .args(["-c", &p("nginx.conf"), "-e", &p("error.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-deps.sh --test installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx never listened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        BasicAuthFront {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/git/{repo}", self.port)
    }
}

impl Drop for BasicAuthFront {
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
