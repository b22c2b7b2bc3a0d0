//! The projects repository: projects and their members (one aggregate).

use sqlx::{any::AnyRow, AnyPool, Row};

use super::{new_id, now_ms, touched, StoreError, StoreResult};

/// A stored project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub member_count: i64,
    pub created_at_ms: i64,
}

/// A member of a project, joined with the user's email and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub project_id: String,
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    /// `owner` or `member`.
    pub role: String,
    pub added_at_ms: i64,
}

const PROJECT_SELECT: &str = "SELECT p.id, p.name, p.created_at_ms, \
     (SELECT COUNT(*) FROM project_members m WHERE m.project_id = p.id) AS member_count \
     FROM projects p";

fn project_from_row(row: &AnyRow) -> Result<ProjectRecord, sqlx::Error> {
    Ok(ProjectRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        member_count: row.try_get("member_count")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

const MEMBER_SELECT: &str = "SELECT m.project_id, m.user_id, u.email, u.display_name, m.role, \
     m.added_at_ms FROM project_members m JOIN users u ON u.id = m.user_id";

fn member_from_row(row: &AnyRow) -> Result<MemberRecord, sqlx::Error> {
    Ok(MemberRecord {
        project_id: row.try_get("project_id")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: row.try_get("role")?,
        added_at_ms: row.try_get("added_at_ms")?,
    })
}

/// Reads and writes projects and members.
pub struct Projects<'a> {
    pool: &'a AnyPool,
}

impl<'a> Projects<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Creates a project with `owner_id` as its owner, in one transaction.
    ///
    /// # Errors
    /// `Conflict` when the name is taken (names are unique platform-wide).
    pub async fn create(&self, name: &str, owner_id: &str) -> StoreResult<ProjectRecord> {
        let id = new_id();
        let now = now_ms();
        let mut tx = super::begin_write(self.pool).await?;
        sqlx::query(
            "INSERT INTO projects (id, name, created_by, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(name)
        .bind(owner_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, added_at_ms) \
             VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&id)
        .bind(owner_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.by_id(&id).await?.ok_or(StoreError::NotFound)
    }

    /// The project with this id, if any.
    pub async fn by_id(&self, id: &str) -> StoreResult<Option<ProjectRecord>> {
        let row = sqlx::query(&format!("{PROJECT_SELECT} WHERE p.id = $1"))
            .bind(id)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(project_from_row).transpose()?)
    }

    /// Every project, by name (for admins).
    pub async fn list_all(&self) -> StoreResult<Vec<ProjectRecord>> {
        let rows = sqlx::query(&format!("{PROJECT_SELECT} ORDER BY p.name"))
            .fetch_all(self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(project_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Projects `user_id` is a member of, by name, with the user's role in each.
    pub async fn list_for_member(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<(ProjectRecord, String)>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.created_at_ms, me.role AS my_role, \
             (SELECT COUNT(*) FROM project_members m WHERE m.project_id = p.id) AS member_count \
             FROM projects p JOIN project_members me ON me.project_id = p.id AND me.user_id = $1 \
             ORDER BY p.name",
        )
        .bind(user_id)
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((project_from_row(row)?, row.try_get("my_role")?)))
            .collect()
    }

    /// Renames a project.
    ///
    /// # Errors
    /// `Conflict` when the name is taken; `NotFound` when the project is gone.
    pub async fn rename(&self, id: &str, name: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE projects SET name = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(name)
                .bind(now_ms())
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }

    /// Deletes a project and (by cascade) its memberships.
    ///
    /// # Errors
    /// `NotFound` when the project is gone.
    pub async fn delete(&self, id: &str) -> StoreResult<()> {
        touched(
            sqlx::query("DELETE FROM projects WHERE id = $1")
                .bind(id)
                .execute(self.pool)
                .await?,
        )
    }

    /// The role (`owner` / `member`) of `user_id` in the project, if a member.
    pub async fn member_role(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(self.pool)
        .await?)
    }

    /// Members of a project, owners first, then by email.
    pub async fn members(&self, project_id: &str) -> StoreResult<Vec<MemberRecord>> {
        let rows = sqlx::query(&format!(
            "{MEMBER_SELECT} WHERE m.project_id = $1 ORDER BY m.role DESC, u.email"
        ))
        .bind(project_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
    }

    /// Adds a member.
    ///
    /// # Errors
    /// `Conflict` when the user is already a member.
    pub async fn add_member(
        &self,
        project_id: &str,
        user_id: &str,
        role: &str,
    ) -> StoreResult<MemberRecord> {
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, added_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        let row = sqlx::query(&format!(
            "{MEMBER_SELECT} WHERE m.project_id = $1 AND m.user_id = $2"
        ))
        .bind(project_id)
        .bind(user_id)
        .fetch_one(self.pool)
        .await?;
        Ok(member_from_row(&row)?)
    }

    /// Removes a member unless they are the project's last owner, checked and deleted in one
    /// transaction so two concurrent removals cannot leave a project without an owner.
    ///
    /// # Errors
    /// `NotFound` when not a member; `Conflict("last_owner")` for the last owner.
    pub async fn remove_member(&self, project_id: &str, user_id: &str) -> StoreResult<()> {
        let mut tx = super::begin_write(self.pool).await?;
        // Removals of one project take turns (a row lock on PostgreSQL, where read committed
        // would let two of them each count the other owner; SQLite's write lock already does).
        sqlx::query("UPDATE projects SET updated_at_ms = updated_at_ms WHERE id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(role) = role else {
            return Err(StoreError::NotFound);
        };
        if role == "owner" {
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM project_members WHERE project_id = $1 AND role = 'owner'",
            )
            .bind(project_id)
            .fetch_one(&mut *tx)
            .await?;
            if owners <= 1 {
                return Err(StoreError::Conflict("last_owner".into()));
            }
        }
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
