//! Image builds: a tar build context sent to the engine's `POST /build` (the classic builder;
//! see `builds` for why not BuildKit), its output streamed line by line.

use std::collections::HashMap;

use bollard::query_parameters::{BuildImageOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::StreamExt;

use super::{bounded, containers::status_of, Engine, ResolvedImage, RuntimeError, CALL_TIMEOUT};

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// The tag, e.g. `berth-build/<deployment>:<commit>`.
    pub tag: String,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    pub build_args: HashMap<String, String>,
    /// Labels on the image (`berth.deployment`, `berth.build`, ...).
    pub labels: HashMap<String, String>,
}

impl Engine {
    /// Builds `context` (a tar) into an image and returns its id (`sha256:…`). Each line the
    /// builder prints goes to `on_line` as it arrives. Dropping the future closes the
    /// connection, which makes the engine stop the build (how timeouts and cancels work).
    ///
    /// # Errors
    /// `BuildFailed` with the builder's message (the failing step is in the lines before);
    /// `Unreachable`/`Engine` when the engine cannot be used.
    pub async fn build_image(
        &self,
        context: Vec<u8>,
        build: &ImageBuild,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<String, RuntimeError> {
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(build.tag.clone()),
            rm: true,
            forcerm: true,
            // Never reach for a registry: base images must be on the node (none is reachable
            // from an offline installation, and a pull would let a Dockerfile choose what runs).
            pull: None,
            buildargs: Some(build.build_args.clone()),
            labels: Some(build.labels.clone()),
            ..Default::default()
        };
        let mut stream = self.docker.build_image(
            options,
            None,
            Some(bollard::body_full(bytes::Bytes::from(context))),
        );
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => {
                    RuntimeError::BuildFailed(error)
                }
                other => RuntimeError::from(other),
            })?;
            if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                // The engine sends a step's text and its newline as separate messages.
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    on_line(line);
                }
            }
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::BuildFailed(message));
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
            }
        }
        match image_id {
            Some(id) => Ok(id),
            // Older engines print "Successfully built <id>" instead of an aux record.
            None => match self.resolve_image(&build.tag).await {
                Ok(image) => Ok(image.id),
                Err(RuntimeError::ImageUnavailable { .. }) => Err(RuntimeError::BuildFailed(
                    "the engine built no image".into(),
                )),
                Err(e) => Err(e),
            },
        }
    }

    /// Removes an image by tag or id; missing is fine, one in use by a container is kept
    /// (`Conflict`).
    ///
    /// # Errors
    /// `Conflict` when a container uses it, `Timeout`/`Engine` otherwise.
    pub async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        match bounded(self.docker.remove_image(
            reference,
            Some(RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            }),
            None,
        ))
        .await
        {
            Ok(_) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The tags of every image labelled `key=value` (`docker images --filter label=…`),
    /// one list per image.
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn labelled_image_tags(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<Vec<String>>, RuntimeError> {
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{key}={value}")],
            )])),
            ..Default::default()
        };
        let images = bounded(self.docker.list_images(Some(options))).await?;
        Ok(images.into_iter().map(|i| i.repo_tags).collect())
    }

    /// The image `reference` as the engine has it; `None` when it is not on the node (nothing
    /// is pulled).
    ///
    /// # Errors
    /// `Timeout`, `Engine`.
    pub async fn inspect_image(
        &self,
        reference: &str,
    ) -> Result<Option<ResolvedImage>, RuntimeError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.docker.inspect_image(reference)).await {
            Err(_) => Err(RuntimeError::Timeout),
            Ok(Err(e)) if status_of(&e) == Some(404) => Ok(None),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(image)) => {
                let id = image.id.unwrap_or_default();
                let digest = image
                    .repo_digests
                    .and_then(|d| d.into_iter().next())
                    .unwrap_or_else(|| id.clone());
                Ok(Some(ResolvedImage { id, digest }))
            }
        }
    }
}
