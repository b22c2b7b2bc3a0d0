-- SSH deploy keys for git sources: an Ed25519 key pair Berth generates per source (the
-- private half sealed, see server::secrets; the public half in OpenSSH's one-line form, shown
-- so the customer can register it at the git host), and the host keys seen on the first
-- fetch (known_hosts lines), pinned for later fetches.

ALTER TABLE git_sources ADD COLUMN ssh_private_key TEXT;
ALTER TABLE git_sources ADD COLUMN ssh_public_key TEXT;
ALTER TABLE git_sources ADD COLUMN ssh_known_hosts TEXT NOT NULL DEFAULT '';
