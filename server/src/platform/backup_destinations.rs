//! Admins' backup destinations per region (the `RepositoryService` calls delegate here): read,
//! set after a live check of the bucket, and removed (back to local directories).

use app::{model::*, services::RequestContext};
use serde_json::json;

use super::{audit, internal};
use crate::{
    backups::s3::{probe_destination, S3Repository},
    secrets::SecretBox,
    store::{BackupDestinationRecord, Store, StoreError},
};

fn region_not_found(region: &str) -> ApiError {
    ApiError::not_found(
        "region_not_found",
        format!("There is no region named '{region}'."),
    )
}

async fn require_region(store: &Store, region: &str) -> Result<(), ApiError> {
    let regions = store
        .topology()
        .region_strategies()
        .await
        .map_err(internal("list regions"))?;
    if regions.iter().any(|(name, _)| name == region) {
        Ok(())
    } else {
        Err(region_not_found(region))
    }
}

fn view(region: &str, record: Option<BackupDestinationRecord>) -> BackupDestinationView {
    match record {
        None => BackupDestinationView::local(region),
        Some(d) => BackupDestinationView {
            region: d.region,
            kind: "s3".into(),
            endpoint: Some(d.endpoint),
            bucket: Some(d.bucket),
            s3_region: Some(d.s3_region),
            prefix: Some(d.prefix),
            access_key_id: Some(d.access_key_id),
            updated_at_ms: Some(d.updated_at_ms),
        },
    }
}

/// See `RepositoryService::backup_destination`.
pub async fn get(
    store: &Store,
    ctx: &RequestContext,
    region: &str,
) -> Result<BackupDestinationView, ApiError> {
    ctx.admin()?;
    require_region(store, region).await?;
    let record = store
        .backup_destinations()
        .get(region)
        .await
        .map_err(internal("read backup destination"))?;
    Ok(view(region, record))
}

/// See `RepositoryService::set_backup_destination`.
pub async fn set(
    store: &Store,
    secrets: &SecretBox,
    ctx: &RequestContext,
    region: &str,
    destination: S3Destination,
) -> Result<BackupDestinationView, ApiError> {
    ctx.admin()?;
    require_region(store, region).await?;
    let destination = destination.normalized();
    destination.validate()?;
    if let Err(e) = probe_destination(&destination).await {
        return Err(ApiError::new(
            400,
            "backup_destination_unreachable",
            format!("The bucket cannot be used with these settings, so nothing was saved. {e}"),
        ));
    }
    let previous = store
        .backup_destinations()
        .get(region)
        .await
        .map_err(internal("read backup destination"))?;
    let record = BackupDestinationRecord {
        region: region.to_owned(),
        endpoint: destination.endpoint.clone(),
        bucket: destination.bucket.clone(),
        s3_region: destination.region.clone(),
        prefix: destination.prefix.clone(),
        access_key_id: destination.access_key_id.clone(),
        secret_access_key: secrets.seal(&destination.secret_access_key),
        updated_at_ms: 0,
    };
    // Repositories first: if this fails half-way, the same PUT again finds the rest still
    // under the previous key id.
    let rekeyed = match previous {
        Some(p) if p.endpoint == destination.endpoint && p.bucket == destination.bucket => {
            rekey_repositories(store, secrets, &p.access_key_id, &destination).await?
        }
        _ => 0,
    };
    match store.backup_destinations().put(&record).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(region_not_found(region)),
        Err(e) => return Err(internal("set backup destination")(e)),
    }
    audit(
        store,
        ctx,
        None,
        "region.backup_destination_set",
        format!("region:{region}"),
        json!({"kind": "s3", "endpoint": destination.endpoint, "bucket": destination.bucket,
               "prefix": destination.prefix, "access_key_id": destination.access_key_id,
               "repositories_rekeyed": rekeyed}),
    )
    .await?;
    get(store, ctx, region).await
}

/// Key rotation: gives the new keys of `destination` to every repository in the same bucket
/// at the same endpoint that was made with the region's previous key id `old_key_id`
/// (repositories keep their own copy of the keys, so they go on working after the region's
/// destination changes). Each keeps its own prefix and signing region. Returns how many
/// were updated.
///
/// # Errors
/// Internal when a repository's stored settings cannot be opened or written.
async fn rekey_repositories(
    store: &Store,
    secrets: &SecretBox,
    old_key_id: &str,
    destination: &S3Destination,
) -> Result<usize, ApiError> {
    let repositories = store
        .backup_destinations()
        .s3_repositories()
        .await
        .map_err(internal("list S3 repositories"))?;
    let mut rekeyed = 0;
    for (project_id, sealed) in repositories {
        let mut settings: S3Repository = secrets
            .open(&sealed)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string()))
            .map_err(|e| {
                tracing::error!(project.id = %project_id, error = %e, "cannot open a repository's S3 settings");
                ApiError::internal()
            })?;
        let same = &settings.destination;
        if same.endpoint != destination.endpoint
            || same.bucket != destination.bucket
            || same.access_key_id != old_key_id
        {
            continue;
        }
        settings.destination.access_key_id = destination.access_key_id.clone();
        settings.destination.secret_access_key = destination.secret_access_key.clone();
        let json = serde_json::to_string(&settings).map_err(|e| {
            tracing::error!(error = %e, "cannot write S3 settings");
            ApiError::internal()
        })?;
        store
            .backup_destinations()
            .set_repository_s3(&project_id, &secrets.seal(&json))
            .await
            .map_err(internal("rekey an S3 repository"))?;
        rekeyed += 1;
    }
    Ok(rekeyed)
}

/// See `RepositoryService::remove_backup_destination`.
pub async fn remove(
    store: &Store,
    ctx: &RequestContext,
    region: &str,
) -> Result<BackupDestinationView, ApiError> {
    ctx.admin()?;
    require_region(store, region).await?;
    match store.backup_destinations().remove(region).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(internal("remove backup destination")(e)),
    }
    audit(
        store,
        ctx,
        None,
        "region.backup_destination_removed",
        format!("region:{region}"),
        json!({}),
    )
    .await?;
    Ok(BackupDestinationView::local(region))
}
