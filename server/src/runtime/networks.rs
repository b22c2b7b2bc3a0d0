//! Networks and named volumes on one engine: created when missing, removed when gone is no
//! error (idempotent, like the container calls).

use std::collections::HashMap;

use bollard::{
    models::{NetworkCreateRequest, VolumeCreateRequest},
    query_parameters::RemoveVolumeOptions,
};

use super::{bounded, containers::status_of, Engine, RuntimeError, CALL_TIMEOUT};

impl Engine {
    /// Creates the bridge network `name` unless it exists.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.docker.inspect_network(name, None)).await {
            Err(_) => return Err(RuntimeError::Timeout),
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if status_of(&e) == Some(404) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
        let created = bounded(self.docker.create_network(NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        }))
        .await;
        match created {
            // Created concurrently by another job: fine.
            Err(RuntimeError::Conflict(_)) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes network `name`; a missing network is no error.
    ///
    /// # Errors
    /// `Conflict` while containers still use it, `Timeout`, `Engine`.
    pub async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match bounded(self.docker.remove_network(name)).await {
            Err(RuntimeError::NotFound(_)) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the local volume `name` (Docker returns the existing one if it exists).
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        bounded(self.docker.create_volume(VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some("local".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        }))
        .await
        .map(|_| ())
    }

    /// Removes volume `name`; a missing volume is no error.
    ///
    /// # Errors
    /// `Conflict` while a container uses it, `Timeout`, `Engine`.
    pub async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        match bounded(
            self.docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: false })),
        )
        .await
        {
            Err(RuntimeError::NotFound(_)) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
