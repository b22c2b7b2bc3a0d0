//! Orchestration: the topology Berth places instances on (more to come: placement,
//! deployments, the reconciler).

pub mod topology;
