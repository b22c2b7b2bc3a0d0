//! Custom-domain verification: a pending domain is routed only after DNS shows that its
//! owner controls it. Two things must hold, looked up with hickory-resolver:
//!
//! 1. **Ownership**: a TXT record `_berth-challenge.<domain>` holds the domain's token.
//! 2. **Pointing**: `<domain>` is a CNAME to the deployment's generated hostname, or its
//!    A/AAAA records include one of the ingress's public addresses (`ingress_public_ips`).
//!
//! For a wildcard `*.example.com` the TXT record is `_berth-challenge.example.com` and the
//! pointing is checked on a name the wildcard covers, `berth-wildcard-check.example.com`.
//!
//! Pending domains are checked when added, on "Verify now", and otherwise with backoff: 10 s,
//! 20 s, 40 s … up to one hour between checks. Each check records what it found, in words.
//! Verification is final; removing the domain is how it stops being routed.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hickory_resolver::{
    config::{NameServerConfigGroup, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    proto::rr::{RData, RecordType},
    ResolveErrorKind, Resolver,
};
use tokio::sync::Notify;

use super::routes::generated_host;
use crate::store::{now_ms, DomainRecord, Store, StoreError};
use app::model::{proof_record, WILDCARD_PROBE_LABEL};

/// How often the verifier looks for due domains.
pub const TICK: Duration = Duration::from_secs(1);
/// First wait after a failed check; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Wait before the next check after `attempts` failed ones (1-based).
pub fn backoff(attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_BACKOFF)
}

/// Checks pending domains; see the module documentation.
pub struct DomainVerifier {
    store: Store,
    base_domain: String,
    ingress_ips: Vec<IpAddr>,
    /// `None`: the system's resolvers (`/etc/resolv.conf`).
    nameserver: Option<SocketAddr>,
    changed: Arc<Notify>,
}

impl DomainVerifier {
    /// A verifier asking `nameserver` (or the system's resolvers); `changed` is notified
    /// when a domain becomes routable.
    pub fn new(
        store: Store,
        base_domain: String,
        ingress_ips: Vec<IpAddr>,
        nameserver: Option<SocketAddr>,
        changed: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            base_domain,
            ingress_ips,
            nameserver,
            changed,
        }
    }

    /// Checks due domains every [`TICK`] until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "domain verification pass failed");
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Checks every due domain once; returns how many were checked.
    ///
    /// # Errors
    /// Store failures.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let due = self.store.domains().due(now_ms()).await?;
        for domain in &due {
            let Some(target) = self.generated_host_of(domain).await? else {
                continue;
            };
            match self.check(domain, &target).await {
                Ok(()) => {
                    tracing::info!(domain = %domain.hostname, "domain verified");
                    let found = format!(
                        "Verified: the TXT record holds the token and {} points to Berth.",
                        domain.hostname
                    );
                    self.store
                        .domains()
                        .record_check(&domain.id, true, &found, None)
                        .await?;
                    self.changed.notify_one();
                }
                Err(found) => {
                    let next = now_ms() + backoff(domain.attempts + 1).as_millis() as i64;
                    match self
                        .store
                        .domains()
                        .record_check(&domain.id, false, &found, Some(next))
                        .await
                    {
                        // Verified or removed meanwhile: nothing to record.
                        Ok(()) | Err(StoreError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(due.len())
    }

    async fn generated_host_of(&self, domain: &DomainRecord) -> Result<Option<String>, StoreError> {
        let Some(d) = self
            .store
            .deployments()
            .by_id(&domain.deployment_id)
            .await?
        else {
            return Ok(None);
        };
        let Some(p) = self.store.projects().by_id(&d.project_id).await? else {
            return Ok(None);
        };
        Ok(Some(generated_host(&d.name, &p.name, &self.base_domain)))
    }

    /// A fresh resolver per check, so that no cached answer hides a record just created.
    fn resolver(&self) -> Resolver<TokioConnectionProvider> {
        let provider = TokioConnectionProvider::default();
        let builder = match self.nameserver {
            Some(ns) => Resolver::builder_with_config(
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[ns.ip()], ns.port(), true),
                ),
                provider,
            ),
            None => Resolver::builder(provider.clone()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the system's resolvers; using defaults");
                Resolver::builder_with_config(ResolverConfig::default(), provider)
            }),
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        opts.cache_size = 1;
        builder.with_options(opts).build()
    }

    /// Both conditions of the module documentation; `Err` says, for people, what is missing.
    async fn check(&self, domain: &DomainRecord, target: &str) -> Result<(), String> {
        let resolver = self.resolver();
        let challenge_record = proof_record(&domain.hostname);
        let challenge = format!("{challenge_record}.");
        let probe = match domain.hostname.strip_prefix("*.") {
            Some(parent) => format!("{WILDCARD_PROBE_LABEL}.{parent}"),
            None => domain.hostname.clone(),
        };
        let host = &probe;
        let texts: Vec<String> = match resolver.txt_lookup(challenge.as_str()).await {
            Ok(found) => found.iter().map(|t| t.to_string()).collect(),
            Err(e) if is_no_records(&e) => Vec::new(),
            Err(e) => return Err(format!("DNS lookup of {challenge} failed: {e}")),
        };
        if !texts.iter().any(|t| t.trim() == domain.token) {
            return Err(if texts.is_empty() {
                format!(
                    "No TXT record at {challenge_record} yet. Create it with the value {}.",
                    domain.token
                )
            } else {
                format!(
                    "The TXT record at {challenge_record} holds {:?}, not the token {}.",
                    texts, domain.token
                )
            });
        }
        let fqdn = format!("{host}.");
        match resolver.lookup(fqdn.as_str(), RecordType::CNAME).await {
            Ok(found) => {
                let cnames: Vec<String> = found
                    .iter()
                    .filter_map(|r| match r {
                        RData::CNAME(c) => {
                            Some(c.0.to_utf8().trim_end_matches('.').to_ascii_lowercase())
                        }
                        _ => None,
                    })
                    .collect();
                if cnames.iter().any(|c| c == target) {
                    return Ok(());
                }
                if !cnames.is_empty() {
                    return Err(format!(
                        "{host} is a CNAME to {}, not to {target}.",
                        cnames.join(", ")
                    ));
                }
            }
            Err(e) if is_no_records(&e) => {}
            Err(e) => return Err(format!("DNS lookup of {host} failed: {e}")),
        }
        let addresses: Vec<IpAddr> = match resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => found.iter().collect(),
            Err(e) if is_no_records(&e) => Vec::new(),
            Err(e) => return Err(format!("DNS lookup of {host} failed: {e}")),
        };
        if addresses.iter().any(|a| self.ingress_ips.contains(a)) {
            return Ok(());
        }
        let wanted = if self.ingress_ips.is_empty() {
            format!("a CNAME to {target}")
        } else {
            format!(
                "a CNAME to {target}, or A/AAAA records to {}",
                self.ingress_ips
                    .iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(if addresses.is_empty() {
            format!("The ownership TXT record is fine, but {host} has no address records yet: create {wanted}.")
        } else {
            format!(
                "The ownership TXT record is fine, but {host} resolves to {}: create {wanted}.",
                addresses
                    .iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

fn is_no_records(e: &hickory_resolver::ResolveError) -> bool {
    matches!(e.kind(), ResolveErrorKind::Proto(p) if p.is_no_records_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_an_hour() {
        let waits: Vec<u64> = (1..=11).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff(0).as_secs(), 10);
    }
}
