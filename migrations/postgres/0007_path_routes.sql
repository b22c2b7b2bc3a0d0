-- Path routes: requests for a custom domain whose path starts with `path_prefix` go to
-- another deployment of the domain's project (the longest matching prefix wins; the rest of
-- the domain goes to the domain's own deployment). With strip_prefix the app sees the path
-- without the prefix (and the prefix in X-Forwarded-Prefix).
CREATE TABLE path_routes (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    path_prefix TEXT NOT NULL,
    strip_prefix BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (domain_id, path_prefix)
);

CREATE INDEX path_routes_deployment ON path_routes (deployment_id);
