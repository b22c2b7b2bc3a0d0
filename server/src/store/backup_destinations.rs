//! Backup destinations: per region, where new backup repositories are made (no row: a local
//! directory under the data directory).

use sqlx::{AnyPool, Row};

use super::{now_ms, touched, StoreError, StoreResult};

/// A region's S3 destination as stored; `secret_access_key` is sealed (`server::secrets`).
#[derive(Clone, PartialEq, Eq)]
pub struct BackupDestinationRecord {
    pub region: String,
    pub endpoint: String,
    pub bucket: String,
    pub s3_region: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for BackupDestinationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupDestinationRecord")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub struct BackupDestinations<'a> {
    pool: &'a AnyPool,
}

const SELECT: &str = "SELECT r.name AS region, d.endpoint, d.bucket, d.s3_region, d.prefix, \
     d.access_key_id, d.secret_access_key, d.updated_at_ms \
     FROM backup_destinations d JOIN regions r ON r.id = d.region_id";

fn from_row(row: &sqlx::any::AnyRow) -> Result<BackupDestinationRecord, sqlx::Error> {
    Ok(BackupDestinationRecord {
        region: row.try_get("region")?,
        endpoint: row.try_get("endpoint")?,
        bucket: row.try_get("bucket")?,
        s3_region: row.try_get("s3_region")?,
        prefix: row.try_get("prefix")?,
        access_key_id: row.try_get("access_key_id")?,
        secret_access_key: row.try_get("secret_access_key")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl<'a> BackupDestinations<'a> {
    pub fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// The region's destination; `None` for local (or an unknown region).
    pub async fn get(&self, region: &str) -> StoreResult<Option<BackupDestinationRecord>> {
        let row = sqlx::query(&format!("{SELECT} WHERE r.name = $1"))
            .bind(region)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Sets the region's destination (`record.region` names it; `updated_at_ms` is now).
    ///
    /// # Errors
    /// `NotFound` for an unknown region.
    pub async fn put(&self, record: &BackupDestinationRecord) -> StoreResult<()> {
        let region_id: Option<String> = sqlx::query("SELECT id FROM regions WHERE name = $1")
            .bind(&record.region)
            .fetch_optional(self.pool)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
        let region_id = region_id.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO backup_destinations (region_id, kind, endpoint, bucket, s3_region, \
             prefix, access_key_id, secret_access_key, updated_at_ms) \
             VALUES ($1, 's3', $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (region_id) DO UPDATE SET endpoint = excluded.endpoint, \
             bucket = excluded.bucket, s3_region = excluded.s3_region, prefix = excluded.prefix, \
             access_key_id = excluded.access_key_id, \
             secret_access_key = excluded.secret_access_key, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(region_id)
        .bind(&record.endpoint)
        .bind(&record.bucket)
        .bind(&record.s3_region)
        .bind(&record.prefix)
        .bind(&record.access_key_id)
        .bind(&record.secret_access_key)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Back to local for the region's new repositories.
    ///
    /// # Errors
    /// `NotFound` when the region had no destination set.
    pub async fn remove(&self, region: &str) -> StoreResult<()> {
        touched(
            sqlx::query(
                "DELETE FROM backup_destinations \
                 WHERE region_id = (SELECT id FROM regions WHERE name = $1)",
            )
            .bind(region)
            .execute(self.pool)
            .await?,
        )
    }

    /// Every repository kept in S3, as `(project id, sealed S3 settings)`.
    pub async fn s3_repositories(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT project_id, s3 FROM backup_repositories WHERE s3 IS NOT NULL \
             ORDER BY project_id",
        )
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("project_id")?, r.try_get("s3")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Replaces the sealed S3 settings of the project's repository (new keys).
    ///
    /// # Errors
    /// `NotFound` when the project has no repository.
    pub async fn set_repository_s3(&self, project_id: &str, sealed: &str) -> StoreResult<()> {
        touched(
            sqlx::query("UPDATE backup_repositories SET s3 = $2 WHERE project_id = $1")
                .bind(project_id)
                .bind(sealed)
                .execute(self.pool)
                .await?,
        )
    }

    /// The destination for a new repository of the project: that of the first region (by
    /// name) the project's instances are placed in, if that region has one.
    pub async fn for_project(
        &self,
        project_id: &str,
    ) -> StoreResult<Option<BackupDestinationRecord>> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE r.id = (SELECT z.region_id FROM deployment_locations l \
             JOIN deployments dep ON dep.id = l.deployment_id \
             JOIN nodes n ON n.id = l.node_id \
             JOIN availability_zones z ON z.id = n.availability_zone_id \
             JOIN regions rr ON rr.id = z.region_id \
             WHERE dep.project_id = $1 ORDER BY rr.name LIMIT 1)"
        ))
        .bind(project_id)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }
}
