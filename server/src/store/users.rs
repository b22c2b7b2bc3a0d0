//! The users repository.

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{flag, new_id, now_ms, touched, StoreError, StoreResult};

/// A stored user, including the secret parts the API never shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    /// Lower-cased.
    pub email: String,
    pub display_name: String,
    /// `admin` or `customer`.
    pub role: String,
    /// PHC string of an argon2id hash; `None` for accounts that sign in only by SSO.
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    pub oidc_issuer: Option<String>,
    pub oidc_subject: Option<String>,
    pub disabled: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Fields of a user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    pub oidc_issuer: Option<String>,
    pub oidc_subject: Option<String>,
}

const COLUMNS: &str = "id, email, display_name, role, password_hash, must_change_password, \
     oidc_issuer, oidc_subject, disabled, created_at_ms, updated_at_ms";

fn from_row(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        must_change_password: flag(row.try_get("must_change_password")?),
        oidc_issuer: row.try_get("oidc_issuer")?,
        oidc_subject: row.try_get("oidc_subject")?,
        disabled: flag(row.try_get("disabled")?),
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Reads and writes users.
pub struct Users<'a> {
    pool: &'a AnyPool,
}

impl<'a> Users<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Inserts a user and returns it.
    ///
    /// # Errors
    /// `Conflict` when the email (or OIDC identity) exists.
    pub async fn create(&self, user: NewUser) -> StoreResult<UserRecord> {
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO users (id, email, display_name, role, password_hash, must_change_password, \
             oidc_issuer, oidc_subject, disabled, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9)",
        )
        .bind(&id)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(&user.role)
        .bind(&user.password_hash)
        .bind(i64::from(user.must_change_password))
        .bind(&user.oidc_issuer)
        .bind(&user.oidc_subject)
        .bind(now)
        .execute(self.pool)
        .await?;
        self.by_id(&id).await?.ok_or(StoreError::NotFound)
    }

    /// The user with this id, if any.
    pub async fn by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The user with this (already lower-cased) email, if any.
    pub async fn by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The user linked to this OIDC identity (issuer URL + `sub` claim), if any.
    pub async fn by_oidc_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2"
        ))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Every user, ordered by email.
    pub async fn list(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY email"))
            .fetch_all(self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// How many users exist (0 on first start).
    pub async fn count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Replaces the password hash and sets whether it must be changed at next sign-in.
    ///
    /// # Errors
    /// `NotFound` when no such user exists.
    pub async fn set_password(
        &self,
        id: &str,
        password_hash: &str,
        must_change: bool,
    ) -> StoreResult<()> {
        touched(sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = $2, updated_at_ms = $3 \
             WHERE id = $4",
        )
        .bind(password_hash)
        .bind(i64::from(must_change))
        .bind(now_ms())
        .bind(id)
        .execute(self.pool)
        .await?)
    }

    /// Removes the password (the account then signs in by SSO only) and clears the
    /// must-change flag.
    ///
    /// # Errors
    /// `NotFound` when no such user exists.
    pub async fn clear_password(&self, id: &str) -> StoreResult<()> {
        touched(sqlx::query(
            "UPDATE users SET password_hash = NULL, must_change_password = 0, updated_at_ms = $1 \
             WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(self.pool)
        .await?)
    }

    /// Links an existing user to an OIDC identity.
    ///
    /// # Errors
    /// `Conflict` when the identity is linked to another user; `NotFound` for a missing user.
    pub async fn link_oidc_identity(
        &self,
        id: &str,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<()> {
        touched(sqlx::query(
            "UPDATE users SET oidc_issuer = $1, oidc_subject = $2, updated_at_ms = $3 WHERE id = $4",
        )
        .bind(issuer)
        .bind(subject)
        .bind(now_ms())
        .bind(id)
        .execute(self.pool)
        .await?)
    }

    /// Sets the platform role (`admin` / `customer`).
    ///
    /// # Errors
    /// `NotFound` for a missing user.
    pub async fn set_role(&self, id: &str, role: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE users SET role = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(role)
                .bind(now_ms())
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }
}
