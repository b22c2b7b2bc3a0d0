//! The master keys of the repositories this process has opened, so a repository's key is
//! derived from its password once per process rather than at every backup, check and
//! restore.
//!
//! A restic key file stretches the password with scrypt, and rustic writes its key files
//! with N = 2^17, r = 8, p = 1 (128 MiB and about 0.3 s of a core here) — work done on every
//! open. Berth's repository passwords are 32 random bytes (`random_hex(32)` in
//! `repository.rs`), so the stretching protects nothing there. The key is held in memory as
//! the password already is.
//!
//! A wrong password never reaches a cached key: the slot is the SHA-256 of the location and
//! the password. A cached key is used only while the key file that password opened is still
//! in the repository, byte for byte (one small read): after `restic key passwd` or
//! `key remove`, the password is tried again, and fails as it would have without the cache.
//! A cached key that does not open the repository (one made anew at the same place) is
//! dropped by the caller and the password used (`repo::open_or_init`).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use rustic_core::{repofile::MasterKey, FileType, Id, ReadBackend};
use sha2::Digest;

use super::repo::Location;

/// A repository's master key and the key file the password opened it with.
#[derive(Clone)]
pub(super) struct Cached {
    pub key: MasterKey,
    /// The key file's id (`keys/<id>`) and the SHA-256 of its bytes.
    key_file: (Id, [u8; 32]),
}

impl Cached {
    /// Whether the key file is still there unchanged (read through `backend`).
    pub(super) fn still_valid(&self, backend: &dyn ReadBackend) -> bool {
        let (id, digest) = &self.key_file;
        backend
            .read_full(FileType::Key, id)
            .is_ok_and(|bytes| sha2::Sha256::digest(&bytes).as_slice() == digest)
    }
}

static MASTER_KEYS: LazyLock<Mutex<HashMap<[u8; 32], Cached>>> = LazyLock::new(Default::default);

/// Where one repository's key is kept: one location opened with one password.
#[derive(Clone, Copy)]
pub(super) struct Slot([u8; 32]);

impl Slot {
    pub(super) fn of(location: &Location, password: &str) -> Self {
        let mut hash = sha2::Sha256::new();
        hash.update(location.describe().as_bytes());
        hash.update([0]);
        hash.update(password.as_bytes());
        Self(hash.finalize().into())
    }

    /// The key this location and password opened before in this process.
    pub(super) fn cached(self) -> Option<Cached> {
        MASTER_KEYS
            .lock()
            .expect("master keys")
            .get(&self.0)
            .cloned()
    }

    /// Keeps `key`, opened with the password through key file `key_id` (read through
    /// `backend`); nothing is kept when that file cannot be read.
    pub(super) fn remember(self, key: MasterKey, key_id: Id, backend: &dyn ReadBackend) {
        let Ok(bytes) = backend.read_full(FileType::Key, &key_id) else {
            return;
        };
        let cached = Cached {
            key,
            key_file: (key_id, sha2::Sha256::digest(&bytes).into()),
        };
        MASTER_KEYS
            .lock()
            .expect("master keys")
            .insert(self.0, cached);
    }

    pub(super) fn forget(self) {
        MASTER_KEYS.lock().expect("master keys").remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::repo::{open, open_or_init, Location};
    use super::*;

    /// A key's bytes, to compare (rustic's key types have no `PartialEq`).
    fn bytes(key: &MasterKey) -> String {
        serde_json::to_string(key).unwrap()
    }

    #[test]
    fn a_key_is_derived_once_while_its_key_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Local(dir.path().join("repo"));
        let made = bytes(&open_or_init(&location, "right", true).unwrap().key());
        let slot = Slot::of(&location, "right");
        assert_eq!(slot.cached().map(|c| bytes(&c.key)), Some(made.clone()));
        // Opened again from the remembered key, not the password: rustic records no key
        // file for a repository opened with its master key.
        let again = open(&location, "right").unwrap();
        assert!(again.key_id().is_none());
        assert_eq!(bytes(&again.key()), made);
        // A wrong password is another slot, and is refused.
        assert!(open(&location, "wrong").is_err());
        assert!(Slot::of(&location, "wrong").cached().is_none());

        // The key file is gone (as after `restic key remove`): the remembered key is not
        // used, and the password opens nothing.
        let keys = dir.path().join("repo/keys");
        std::fs::remove_dir_all(&keys).unwrap();
        std::fs::create_dir(&keys).unwrap();
        assert!(open(&location, "right").is_err());
        assert!(slot.cached().is_none());

        // A repository made anew at the same place: its own key is remembered and used.
        std::fs::remove_dir_all(dir.path().join("repo")).unwrap();
        let remade = bytes(&open_or_init(&location, "right", true).unwrap().key());
        assert_ne!(remade, made);
        let opened = open(&location, "right").unwrap();
        assert!(opened.key_id().is_none());
        assert_eq!(bytes(&opened.key()), remade);
    }
}
