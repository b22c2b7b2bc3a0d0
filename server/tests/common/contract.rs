//! Helpers of the store contract tests: a store on a fresh database, and a new user.

use berth::store::{NewUser, Store};

use super::{fresh_db, Db, TestDb};

pub async fn store(db: Db) -> (Store, TestDb) {
    let tdb = fresh_db(db).await;
    let store = Store::connect(&tdb.url, 4).await.unwrap();
    (store, tdb)
}

/// A customer with a stub password hash.
pub fn user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        display_name: email.into(),
        role: "customer".into(),
        password_hash: Some("$argon2id$stub".into()),
        must_change_password: false,
        oidc_issuer: None,
        oidc_subject: None,
    }
}
