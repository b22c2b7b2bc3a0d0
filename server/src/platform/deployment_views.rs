//! Stored deployment records as the API shows them. Secret env values never leave here.

use std::collections::HashMap;

use app::model::*;

use crate::store::{DeploymentRecord, JobRecord, LocationRecord, ReleaseRecord};

/// The spec with every secret value removed (`value: None`).
pub fn masked_spec(mut spec: DeploymentSpec) -> DeploymentSpec {
    for var in spec.env.iter_mut().filter(|v| v.secret) {
        var.value = None;
    }
    spec
}

/// The stored spec of a release (sealed secrets inside), or `None` if unreadable.
pub fn stored_spec(release: &ReleaseRecord) -> Option<DeploymentSpec> {
    serde_json::from_str(&release.spec).ok()
}

pub fn deployment_view(d: DeploymentRecord, releases: &[ReleaseRecord]) -> DeploymentView {
    let current = d
        .current_release_id
        .as_ref()
        .and_then(|id| releases.iter().find(|r| &r.id == id));
    // Before any release is healthy, show the newest spec so the form can be corrected.
    let shown = current.or_else(|| releases.first());
    DeploymentView {
        id: DeploymentId(d.id),
        project_id: ProjectId(d.project_id),
        name: d.name,
        replicas: u32::try_from(d.replicas).unwrap_or(0),
        desired_state: d.desired_state,
        status: DeploymentStatus::parse(&d.status).unwrap_or(DeploymentStatus::Degraded),
        status_message: d.status_message,
        spec: shown.and_then(stored_spec).map(masked_spec),
        current_release: current.map(|r| u32::try_from(r.number).unwrap_or(0)),
        created_at_ms: d.created_at_ms,
        updated_at_ms: d.updated_at_ms,
    }
}

pub fn release_view(r: &ReleaseRecord) -> ReleaseView {
    ReleaseView {
        id: ReleaseId(r.id.clone()),
        number: u32::try_from(r.number).unwrap_or(0),
        image: stored_spec(r).map(|s| s.image).unwrap_or_default(),
        image_digest: r.image_digest.clone(),
        status: r.status.clone(),
        failure_reason: r.failure_reason.clone(),
        cause: r.cause.clone(),
        created_at_ms: r.created_at_ms,
    }
}

pub fn instance_view(
    l: LocationRecord,
    release_numbers: &HashMap<String, i64>,
    node_names: &HashMap<String, String>,
) -> InstanceView {
    InstanceView {
        id: InstanceId(l.id),
        release_number: release_numbers
            .get(&l.release_id)
            .and_then(|n| u32::try_from(*n).ok())
            .unwrap_or(0),
        slot: u32::try_from(l.slot).unwrap_or(0),
        node_name: node_names.get(&l.node_id).cloned().unwrap_or_default(),
        node_id: NodeId(l.node_id),
        container_name: l.container_name,
        container_id: l.container_id,
        status: l.status,
        health: l.health,
        address: match (l.ip_address, l.port) {
            (Some(ip), Some(port)) => Some(format!("{ip}:{port}")),
            (Some(ip), None) => Some(ip),
            _ => None,
        },
        restart_count: u32::try_from(l.restart_count).unwrap_or(0),
        last_exit_code: l.last_exit_code,
        last_error: l.last_error,
        started_at_ms: l.started_at_ms,
    }
}

pub fn job_view(j: JobRecord) -> JobView {
    JobView {
        id: JobId(j.id),
        kind: j.kind,
        deployment_id: j.deployment_id.map(DeploymentId),
        status: j.status,
        steps: serde_json::from_str(&j.steps).unwrap_or_default(),
        error: j.error,
        created_at_ms: j.created_at_ms,
        finished_at_ms: j.finished_at_ms,
    }
}
