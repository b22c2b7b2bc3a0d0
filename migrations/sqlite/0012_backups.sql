-- Backups: one restic-format repository per project (its password sealed, see
-- server::secrets), the backups taken of a deployment's volumes (each one snapshot in that
-- repository), the schedules that take them, and the restores made from them. A backup
-- outlives its deployment (the deployment's name is kept) so that it can still be read and
-- restored elsewhere; a snapshot that retention removed keeps its row (removed_at_ms).
--
-- Volumes get a generation: a restore fills a new Docker volume
-- (`berth-<project>-<volume>-g<generation>`, generation 0 being the original
-- `berth-<project>-<volume>`) and switches to it only once it is complete, so the live
-- data is never half-restored.

CREATE TABLE backup_repositories (
    project_id TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('local')),
    location TEXT NOT NULL,
    password TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL,
    deployment_name TEXT NOT NULL,
    release_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('volumes', 'database')),
    trigger_kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    volumes TEXT NOT NULL DEFAULT '[]',
    node_id TEXT,
    snapshot_id TEXT,
    files INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER NOT NULL DEFAULT 0,
    bytes_added INTEGER NOT NULL DEFAULT 0,
    failure TEXT NOT NULL DEFAULT '',
    job_id TEXT,
    created_by TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    removed_at_ms INTEGER
);
CREATE INDEX backups_deployment ON backups (deployment_id, created_at_ms);

-- A deployment's backup schedule (cron, evaluated in UTC) and retention (restic's forget
-- policy: 0 keeps none by that rule; all 0 keeps every snapshot). A firing moves
-- next_run_at_ms on with a compare-and-set, so each due time queues one backup.
CREATE TABLE backup_schedules (
    deployment_id TEXT PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    cron TEXT NOT NULL,
    keep_last INTEGER NOT NULL DEFAULT 0,
    keep_hourly INTEGER NOT NULL DEFAULT 0,
    keep_daily INTEGER NOT NULL DEFAULT 0,
    keep_weekly INTEGER NOT NULL DEFAULT 0,
    keep_monthly INTEGER NOT NULL DEFAULT 0,
    next_run_at_ms INTEGER NOT NULL,
    last_run_at_ms INTEGER,
    missed INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX backup_schedules_due ON backup_schedules (next_run_at_ms);

CREATE TABLE restores (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    backup_id TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    files INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER NOT NULL DEFAULT 0,
    failure TEXT NOT NULL DEFAULT '',
    job_id TEXT,
    created_by TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX restores_deployment ON restores (deployment_id, created_at_ms);

ALTER TABLE volumes ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
