-- TLS certificates the ingress serves, by the hostname they cover: ACME certificates for
-- verified custom domains, and the self-signed fallback for `*.<base_domain>`.
-- The private key is sealed with the installation's secret key (`enc:v1:`). A certificate
-- row keeps its working certificate while a renewal fails (last_error says why).
CREATE TABLE certificates (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL UNIQUE,
    domain_id TEXT REFERENCES domains (id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('acme', 'self_signed')),
    cert_pem TEXT,
    key_sealed TEXT,
    not_before_ms INTEGER,
    not_after_ms INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE INDEX certificates_due ON certificates (next_attempt_at_ms);

-- HTTP-01 answers (RFC 8555 §8.3): any ingress process can serve them.
CREATE TABLE acme_challenges (
    token TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

-- One ACME account per directory URL; its credentials (with the account key) sealed.
CREATE TABLE acme_accounts (
    directory_url TEXT PRIMARY KEY,
    credentials_sealed TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- Per-route HTTP -> HTTPS redirect (308), applied once a certificate covers the domain.
ALTER TABLE domains ADD COLUMN redirect_https INTEGER NOT NULL DEFAULT 0;
