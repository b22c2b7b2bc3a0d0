-- Custom domains: a customer's hostname routed to one of their deployments once DNS proves
-- control (a TXT record holding the token, and a CNAME/A record pointing at Berth).
-- A hostname belongs to at most one project (UNIQUE across the installation).
CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    hostname TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'verified')),
    last_result TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_check_at_ms INTEGER,
    next_check_at_ms INTEGER,
    verified_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);

CREATE INDEX domains_deployment ON domains (deployment_id);
CREATE INDEX domains_due ON domains (status, next_check_at_ms);
