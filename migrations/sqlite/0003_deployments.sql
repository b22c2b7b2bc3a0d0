-- Deployments: desired state per app, immutable releases, where each instance runs
-- (deployment_locations), named volumes, and the persisted job queue.
-- Specs are JSON text; secret env values inside them are encrypted (see server::secrets).

CREATE TABLE installation (
    id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    replicas INTEGER NOT NULL CHECK (replicas >= 0),
    desired_state TEXT NOT NULL CHECK (desired_state IN ('running', 'stopped')),
    status TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    current_release_id TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    spec TEXT NOT NULL,
    image_digest TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'failed', 'superseded')),
    failure_reason TEXT NOT NULL DEFAULT '',
    cause TEXT NOT NULL,
    created_by TEXT,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (deployment_id, number)
);

CREATE TABLE deployment_locations (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    release_id TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE RESTRICT,
    slot INTEGER NOT NULL,
    container_name TEXT NOT NULL UNIQUE,
    container_id TEXT,
    status TEXT NOT NULL,
    health TEXT NOT NULL,
    ip_address TEXT,
    port INTEGER,
    cpu_millicores INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    restart_count INTEGER NOT NULL DEFAULT 0,
    last_exit_code INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    started_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (release_id, slot)
);
CREATE INDEX deployment_locations_node ON deployment_locations (node_id);
CREATE INDEX deployment_locations_deployment ON deployment_locations (deployment_id);

CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    project_id TEXT,
    deployment_id TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    steps TEXT NOT NULL DEFAULT '[]',
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    created_by TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX jobs_status ON jobs (status, created_at_ms);
CREATE INDEX jobs_deployment ON jobs (deployment_id, created_at_ms);
