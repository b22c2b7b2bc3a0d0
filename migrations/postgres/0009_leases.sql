-- Leases: which process runs a loop that must run once per installation (HA and scaled
-- modes run several processes with the same role). A process holds the lease named `name`
-- while `expires_at_ms` is in the future and renews it; another takes it over once it runs
-- out. `mark_ms` is the loop's own progress, written in the same transaction as its work:
-- for `metrics-history`, minutes before it are in `metrics_minutes` (see
-- server/src/store/leases.rs and server/src/metrics/rollup.rs).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    mark_ms BIGINT NOT NULL DEFAULT 0
);
