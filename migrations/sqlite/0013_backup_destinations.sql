-- Backup destinations: admins may keep a region's new backup repositories in an S3-compatible
-- bucket instead of a local directory (no row: local). The secret access key is sealed (see
-- server::secrets). A repository keeps the destination it was made in (its S3 settings, with
-- the secret, sealed as one JSON document in `s3`), so changing a region's destination later
-- moves no existing repository.

CREATE TABLE backup_destinations (
    region_id TEXT PRIMARY KEY REFERENCES regions (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('s3')),
    endpoint TEXT NOT NULL,
    bucket TEXT NOT NULL,
    s3_region TEXT NOT NULL,
    prefix TEXT NOT NULL,
    access_key_id TEXT NOT NULL,
    secret_access_key TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- SQLite cannot change a CHECK constraint in place: the table is made again.
CREATE TABLE backup_repositories_next (
    project_id TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('local', 's3')),
    location TEXT NOT NULL,
    password TEXT NOT NULL,
    s3 TEXT,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO backup_repositories_next (project_id, kind, location, password, s3, created_at_ms)
    SELECT project_id, kind, location, password, NULL, created_at_ms FROM backup_repositories;
DROP TABLE backup_repositories;
ALTER TABLE backup_repositories_next RENAME TO backup_repositories;

-- Verification: each repository is checked on a schedule (`next_check_at_ms`; 0 for the
-- repositories made before this migration, so they are checked soon), reading a sample of
-- its data, optionally with a restore drill (`restore_drill`) that restores each
-- deployment's latest snapshot into a scratch directory and compares it with the backup.
ALTER TABLE backup_repositories ADD COLUMN restore_drill INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backup_repositories ADD COLUMN next_check_at_ms INTEGER NOT NULL DEFAULT 0;

CREATE TABLE backup_checks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    trigger_kind TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'schedule')),
    restore_drill INTEGER NOT NULL,
    read_data_percent INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    snapshots INTEGER NOT NULL DEFAULT 0,
    drill_files INTEGER NOT NULL DEFAULT 0,
    drill_bytes INTEGER NOT NULL DEFAULT 0,
    findings TEXT NOT NULL DEFAULT '',
    job_id TEXT,
    created_by TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX backup_checks_project ON backup_checks (project_id, created_at_ms);

-- A restore may fill another deployment of the project: which of the backup's volumes goes
-- into which of the target's, as a JSON array of [backup volume, target volume] pairs
-- (empty: each into the volume of the same name).
ALTER TABLE restores ADD COLUMN volume_map TEXT NOT NULL DEFAULT '[]';
