-- Remote engines: what Berth presents to them, and what it last saw.
-- tls_ca_pem / tls_cert_pem: public PEM certificates for tcp:// endpoints.
-- private_key_enc: the TLS client key (tcp://) or SSH identity (ssh://), encrypted with the
-- installation's secret key (`enc:v1:` format); NULL when none was given.
-- last_error: why the last contact failed; NULL after a successful one.
ALTER TABLE nodes ADD COLUMN tls_ca_pem TEXT;
ALTER TABLE nodes ADD COLUMN tls_cert_pem TEXT;
ALTER TABLE nodes ADD COLUMN private_key_enc TEXT;
ALTER TABLE nodes ADD COLUMN last_error TEXT;
