-- Builds from git: a deployment's git source (one per deployment, with its webhook), the
-- builds made from it (each with its log), and every webhook delivery received.
-- Secrets (the HTTPS token, the webhook secret) are sealed (see server::secrets).

CREATE TABLE git_sources (
    deployment_id TEXT PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    repository_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    dockerfile_path TEXT NOT NULL,
    context_dir TEXT NOT NULL,
    build_args TEXT NOT NULL DEFAULT '[]',
    https_token TEXT,
    webhook_id TEXT NOT NULL UNIQUE,
    webhook_secret TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    trigger_kind TEXT NOT NULL,
    branch TEXT NOT NULL,
    requested_commit TEXT,
    commit_sha TEXT,
    image TEXT,
    release_id TEXT,
    failure TEXT NOT NULL DEFAULT '',
    log TEXT NOT NULL DEFAULT '',
    job_id TEXT,
    created_by TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    UNIQUE (deployment_id, number)
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    event TEXT NOT NULL,
    delivery_id TEXT,
    branch TEXT,
    commit_sha TEXT,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    build_id TEXT,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_deployment ON webhook_deliveries (deployment_id, received_at_ms);
CREATE INDEX webhook_deliveries_replay ON webhook_deliveries (deployment_id, provider, delivery_id);
