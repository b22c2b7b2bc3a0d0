//! ACME DNS-01 answers published through DNS dynamic updates: RFC 2136 UPDATE messages over
//! TCP to the zone's primary server, signed with a TSIG key (RFC 8945), as BIND, Knot,
//! PowerDNS and most DNS hosting services accept them. `hickory-client` builds, signs and
//! sends the messages and checks the signature of the answer.
//!
//! The zone to update is found with an SOA query for the record's name at the same server
//! (the answer, or the authority section of a negative answer, names the zone), so one key
//! can serve several zones without listing them.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use base64::Engine as _;
use hickory_client::{
    client::{Client, ClientHandle},
    proto::{
        dnssec::{rdata::tsig::TsigAlgorithm, tsig::TSigner},
        op::ResponseCode,
        rr::{rdata::TXT, DNSClass, Name, RData, Record, RecordType},
        runtime::TokioRuntimeProvider,
        tcp::TcpClientStream,
    },
};
use serde::{Deserialize, Serialize};

/// TTL of a published challenge record, seconds (short: it lives for one validation).
const TTL_SECS: u32 = 60;
/// How long one DNS exchange may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Allowed clock difference between Berth and the DNS server for a TSIG signature, seconds
/// (RFC 8945 §10 recommends 300).
const FUDGE_SECS: u16 = 300;

/// Where and with which key DNS-01 answers are published (`[acme_dns_update]` in the
/// configuration). Present only when set; wildcard domains need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsUpdateConfig {
    /// The primary server of the customers' zones, `IP:PORT` (TCP).
    pub server: SocketAddr,
    /// The TSIG key's name as the server knows it, e.g. `berth-acme`.
    pub key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_algorithm")]
    pub key_algorithm: String,
    /// The key itself, base64 (as `tsig-keygen` prints it). Prefer the `_FILE` variant.
    pub key_secret: String,
}

fn default_algorithm() -> String {
    "hmac-sha256".into()
}

impl DnsUpdateConfig {
    /// Checks the key: a known algorithm, a base64 secret, a valid key name.
    ///
    /// # Errors
    /// `(field, message)` naming what is wrong and what is accepted.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        DnsUpdater::new(self).map(|_| ())
    }
}

/// Publishes and withdraws TXT records by RFC 2136 UPDATE.
#[derive(Clone)]
pub struct DnsUpdater {
    server: SocketAddr,
    signer: Arc<TSigner>,
}

impl std::fmt::Debug for DnsUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signer holds the secret: never printed.
        f.debug_struct("DnsUpdater")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl DnsUpdater {
    /// # Errors
    /// `(field, message)` when the algorithm, secret or key name is not usable.
    pub fn new(config: &DnsUpdateConfig) -> Result<Self, (&'static str, String)> {
        let algorithm = match config.key_algorithm.trim().to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err((
                    "key_algorithm",
                    format!(
                        "'{other}' is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512"
                    ),
                ))
            }
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(config.key_secret.trim())
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or((
                "key_secret",
                "must be the key in base64, as tsig-keygen prints it".to_owned(),
            ))?;
        let name = Name::from_ascii(config.key_name.trim())
            .ok()
            .filter(|n| !n.is_root())
            .ok_or((
                "key_name",
                format!("'{}' is not a DNS name", config.key_name),
            ))?;
        let signer = TSigner::new(secret, algorithm, name, FUDGE_SECS)
            .map_err(|e| ("key_algorithm", e.to_string()))?;
        Ok(Self {
            server: config.server,
            signer: Arc::new(signer),
        })
    }

    /// A client connected to the server, signing every message with the key.
    async fn client(&self) -> Result<Client, String> {
        let (stream, sender) = TcpClientStream::new(
            self.server,
            None,
            Some(TIMEOUT),
            TokioRuntimeProvider::new(),
        );
        let (client, background) =
            Client::with_timeout(stream, sender, TIMEOUT, Some(self.signer.clone()))
                .await
                .map_err(|e| format!("cannot reach the DNS server {}: {e}", self.server))?;
        tokio::spawn(background);
        Ok(client)
    }

    /// The zone `name` belongs to at the server: the owner of the SOA record in the answer
    /// (or, for a name that does not exist, in the authority section).
    async fn zone_of(&self, client: &mut Client, name: &Name) -> Result<Name, String> {
        let response = client
            .query(name.clone(), DNSClass::IN, RecordType::SOA)
            .await
            .map_err(|e| format!("SOA query for {name} at {}: {e}", self.server))?;
        response
            .answers()
            .iter()
            .chain(response.name_servers())
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| r.name().clone())
            .ok_or_else(|| {
                format!(
                    "the DNS server {} is not authoritative for {name} (no SOA record; answer {})",
                    self.server,
                    response.response_code()
                )
            })
    }

    /// Adds `value` to the TXT records of `name` (a fully qualified name, e.g.
    /// `_acme-challenge.example.com`), TTL 60 s.
    ///
    /// # Errors
    /// The server cannot be reached, is not authoritative for the name, or refuses the update
    /// (its response code, e.g. `NOTAUTH` for a wrong key, `REFUSED` for a key without the
    /// right to update the zone).
    pub async fn add_txt(&self, name: &str, value: &str) -> Result<(), String> {
        self.update(name, value, true).await
    }

    /// Removes `value` from the TXT records of `name` (others stay).
    ///
    /// # Errors
    /// As [`DnsUpdater::add_txt`].
    pub async fn remove_txt(&self, name: &str, value: &str) -> Result<(), String> {
        self.update(name, value, false).await
    }

    async fn update(&self, name: &str, value: &str, add: bool) -> Result<(), String> {
        let mut fqdn = Name::from_ascii(name).map_err(|e| format!("'{name}': {e}"))?;
        fqdn.set_fqdn(true);
        let mut client = self.client().await?;
        let zone = self.zone_of(&mut client, &fqdn).await?;
        let record = Record::from_rdata(
            fqdn.clone(),
            if add { TTL_SECS } else { 0 },
            RData::TXT(TXT::new(vec![value.to_owned()])),
        );
        let response = if add {
            client.append(record, zone.clone(), false).await
        } else {
            client.delete_by_rdata(record, zone.clone()).await
        }
        .map_err(|e| {
            tracing::warn!(server = %self.server, record = %fqdn, error = ?e, "DNS update failed");
            format!(
                "the DNS server {} did not accept the update of {fqdn} in zone {zone}: {}",
                self.server,
                describe(&e)
            )
        })?;
        match response.response_code() {
            ResponseCode::NoError => Ok(()),
            code => Err(format!(
                "the DNS server {} refused the update of {fqdn} in zone {zone}: {code} \
                 (check the TSIG key and that it may update this zone)",
                self.server
            )),
        }
    }
}

/// Words for a failed exchange. A server that does not accept the key answers without a
/// valid TSIG (RFC 8945 §5.3.2), which the client reports as an unverifiable answer.
fn describe(e: &hickory_client::ClientError) -> String {
    use hickory_client::ClientErrorKind;
    match e.kind() {
        ClientErrorKind::Proto(p) if p.to_string().contains("TSIG") => {
            "its answer is not signed with the key (NOTAUTH: the server does not accept this \
             key; check key_name, key_secret and key_algorithm against the server's)"
                .into()
        }
        ClientErrorKind::Proto(p) => p.to_string(),
        ClientErrorKind::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(algorithm: &str, secret: &str, name: &str) -> DnsUpdateConfig {
        DnsUpdateConfig {
            server: "127.0.0.1:53".parse().unwrap(),
            key_name: name.into(),
            key_algorithm: algorithm.into(),
            key_secret: secret.into(),
        }
    }

    #[test]
    fn keys_are_checked_with_the_field_named() {
        let good = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMi1ieXRlcw==";
        assert!(config("hmac-sha256", good, "berth-acme").validate().is_ok());
        assert!(config("HMAC-SHA512", good, "berth-acme.")
            .validate()
            .is_ok());
        assert_eq!(
            config("hmac-md5", good, "k").validate().unwrap_err().0,
            "key_algorithm"
        );
        assert_eq!(
            config("hmac-sha256", "not base64!", "k")
                .validate()
                .unwrap_err()
                .0,
            "key_secret"
        );
        assert_eq!(
            config("hmac-sha256", good, "bad name..")
                .validate()
                .unwrap_err()
                .0,
            "key_name"
        );
        // The secret is never printed.
        let updater = DnsUpdater::new(&config("hmac-sha256", good, "k")).unwrap();
        assert!(!format!("{updater:?}").contains(good));
    }
}
