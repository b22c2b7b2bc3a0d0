//! Registering engines as nodes.

use crate::{
    runtime::{Engine, RuntimeError},
    store::{NodeCapacity, NodeRecord, Store, StoreError},
};

/// Name of the node of the engine Berth runs beside, and of its default region and zone.
pub const LOCAL_NODE: &str = "local";
/// Region and availability zone the local node is registered in.
pub const DEFAULT_ZONE: (&str, &str) = ("default", "default");

/// Why a node could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registers (or refreshes) the local engine as node `local` in region `default`, zone
/// `default`, with the capacity the engine reports: `NCPU` × 1000 millicores and `MemTotal`
/// bytes.
///
/// # Errors
/// The engine does not answer, or the store fails.
pub async fn register_local_node(
    store: &Store,
    engine: &Engine,
    max_instances: i64,
) -> Result<NodeRecord, RegisterError> {
    let info = engine.info().await?;
    let zone = store
        .topology()
        .ensure_zone(DEFAULT_ZONE.0, DEFAULT_ZONE.1)
        .await?;
    let capacity = NodeCapacity {
        cpu_millicores: info.cpus * 1000,
        memory_bytes: info.memory_bytes,
        engine_version: info.version,
    };
    Ok(store
        .topology()
        .register_node(
            LOCAL_NODE,
            &zone,
            engine.endpoint(),
            &capacity,
            max_instances,
        )
        .await?)
}
