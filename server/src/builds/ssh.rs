//! SSH deploy keys: the Ed25519 key pair Berth makes for a git source, and the files and `ssh`
//! command line a fetch over ssh uses.
//!
//! The customer registers the public half as a read-only deploy key at the git host (GitHub,
//! GitLab, Gitea and Bitbucket all take `ssh-ed25519` keys). The private half is sealed in the
//! database and written, for one fetch only, into the build's workspace (mode 0600).
//!
//! Host keys are trusted on first use and pinned: the first fetch from a host records its key
//! (OpenSSH's `StrictHostKeyChecking=accept-new`) and later fetches refuse a different one.

use std::path::{Path, PathBuf};

use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{Ed25519KeyPair, KeyPair},
};
use ssh_key::{
    private::{Ed25519Keypair, KeypairData},
    LineEnding, PrivateKey,
};
use zeroize::Zeroizing;

use super::BuildError;

/// A new deploy key: the private half in OpenSSH's PEM form (`-----BEGIN OPENSSH PRIVATE
/// KEY-----`, unencrypted) and the public half as one `authorized_keys` line,
/// `ssh-ed25519 AAAA… <comment>`.
pub struct DeployKey {
    pub private_openssh: Zeroizing<String>,
    pub public_line: String,
}

/// Makes an Ed25519 key pair (RFC 8032; the seed from the system's random source, the public
/// key computed by ring) and writes it in OpenSSH's formats (PROTOCOL.key, RFC 8709).
///
/// # Errors
/// Only when the system's random source fails.
pub fn generate_deploy_key(comment: &str) -> Result<DeployKey, String> {
    let mut bytes = Zeroizing::new([0u8; Ed25519Keypair::BYTE_SIZE]);
    SystemRandom::new()
        .fill(&mut bytes[..32])
        .map_err(|_| "the system's random source failed".to_owned())?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&bytes[..32])
        .map_err(|_| "cannot derive an Ed25519 key".to_owned())?;
    bytes[32..].copy_from_slice(pair.public_key().as_ref());
    let keypair = Ed25519Keypair::from_bytes(&bytes).map_err(|e| e.to_string())?;
    let key = PrivateKey::new(KeypairData::Ed25519(keypair), comment).map_err(|e| e.to_string())?;
    Ok(DeployKey {
        private_openssh: key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?,
        public_line: key.public_key().to_openssh().map_err(|e| e.to_string())?,
    })
}

/// The files of one fetch over ssh, in `dir`: `key` (the private key, 0600), `known_hosts`
/// (the pinned host keys) and `log` (what ssh reports, for the build's failure).
pub struct SshFiles {
    key: PathBuf,
    known_hosts: PathBuf,
    log: PathBuf,
}

impl SshFiles {
    /// Writes the key and the known hosts into `dir` (created, 0700).
    ///
    /// # Errors
    /// `BuildError::Invalid` when the files cannot be written, or `dir` has a quote or a
    /// control character in it (it goes into a shell command line; Berth makes it from the
    /// data directory and the build's id).
    pub fn write(dir: &Path, private_key: &str, known_hosts: &str) -> Result<Self, BuildError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let text = dir.to_string_lossy();
        if text.contains(['\'', '"', '\\', '$', '`']) || text.chars().any(char::is_control) {
            return Err(BuildError::Invalid(format!(
                "the build workspace {text} has a quote or a control character in its path; move the data directory"
            )));
        }
        let io =
            |e: std::io::Error| BuildError::Invalid(format!("cannot write the deploy key: {e}"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let key = dir.join("key");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .map_err(io)?;
        std::io::Write::write_all(&mut file, private_key.as_bytes()).map_err(io)?;
        let known = dir.join("known_hosts");
        std::fs::write(&known, known_hosts).map_err(io)?;
        Ok(Self {
            key,
            known_hosts: known,
            log: dir.join("log"),
        })
    }

    /// `core.sshCommand` for gix: OpenSSH with only this key (no agent, no user or system
    /// configuration), no prompt, host keys pinned in `known_hosts` (new ones accepted and
    /// recorded, changed ones refused), a 30 s connect timeout, its errors into `log`. gix
    /// runs it through `sh -c` with the host and the remote command as separate arguments
    /// after it.
    pub fn command(&self) -> String {
        format!(
            "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
             -o UserKnownHostsFile='{}' -o GlobalKnownHostsFile=/dev/null \
             -o ConnectTimeout=30 -o LogLevel=ERROR -E '{}'",
            self.key.display(),
            self.known_hosts.display(),
            self.log.display()
        )
    }

    /// A failed fetch, said with what ssh reported: a refused key says to register the deploy
    /// key, a changed host key says the pin refused it. Other errors pass unchanged.
    pub fn explain(&self, e: BuildError) -> BuildError {
        let BuildError::Fetch(message) = e else {
            return e;
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let said: Vec<&str> = log
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let said = said[said.len().saturating_sub(3)..].join(" ");
        BuildError::Fetch(
            if said.contains("Host key verification failed")
                || said.contains("IDENTIFICATION HAS CHANGED")
            {
                format!(
                "the git host's ssh key is not the one pinned on the first fetch, so the fetch was refused (ssh: {said})"
            )
            } else if said.contains("Permission denied") {
                format!(
                "the git host refused the deploy key (ssh: {said}); register the deploy key shown on the git source at the git host, with read access"
            )
            } else if said.is_empty() {
                message
            } else {
                format!("{message} (ssh: {said})")
            },
        )
    }

    /// The known hosts after the fetch (with a host key seen for the first time added).
    pub fn known_hosts(&self) -> String {
        std::fs::read_to_string(&self.known_hosts).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_key_reads_back_and_its_public_half_matches() {
        let key = generate_deploy_key("berth-d1").unwrap();
        assert!(key
            .private_openssh
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(key
            .public_line
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"));
        assert!(key.public_line.ends_with(" berth-d1"));
        let parsed = PrivateKey::from_openssh(key.private_openssh.as_bytes()).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), key.public_line);
        let other = generate_deploy_key("berth-d1").unwrap();
        assert_ne!(other.public_line, key.public_line, "each key is new");
    }

    #[test]
    fn a_workspace_path_with_a_quote_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("it's");
        assert!(SshFiles::write(&bad, "k", "").is_err());
        let good = SshFiles::write(&dir.path().join("ssh"), "k", "h").unwrap();
        let mode = std::fs::metadata(dir.path().join("ssh/key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        assert!(good.command().contains("StrictHostKeyChecking=accept-new"));
        assert_eq!(good.known_hosts(), "h");
    }
}
