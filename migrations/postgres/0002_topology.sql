-- Topology: regions > availability zones > nodes (Docker engines), and plans.
-- CPU is stored in millicores (1000 = one core) so that both backends keep integers.

CREATE TABLE regions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    placement_strategy TEXT NOT NULL DEFAULT 'least-loaded'
        CHECK (placement_strategy IN ('least-loaded', 'round-robin', 'resource-based')),
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE availability_zones (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions (id) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (region_id, name)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    availability_zone_id TEXT NOT NULL REFERENCES availability_zones (id) ON DELETE RESTRICT,
    endpoint TEXT NOT NULL,
    cpu_millicores BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    max_instances BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'draining', 'down')),
    engine_version TEXT,
    last_seen_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    cpu_millicores BIGINT NOT NULL CHECK (cpu_millicores > 0),
    memory_bytes BIGINT NOT NULL CHECK (memory_bytes > 0),
    storage_bytes BIGINT NOT NULL CHECK (storage_bytes >= 0),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

INSERT INTO plans (id, name, cpu_millicores, memory_bytes, storage_bytes, created_at_ms, updated_at_ms) VALUES
    ('plan-small', 'small', 250, 268435456, 1073741824, 0, 0),
    ('plan-medium', 'medium', 1000, 1073741824, 10737418240, 0, 0),
    ('plan-large', 'large', 2000, 4294967296, 42949672960, 0, 0);
