//! Certificates for the ingress (role `scheduler`): `*.<base_domain>` for the generated
//! hostnames (self-signed, or from the CA when DNS-01 is set up and the base domain is not
//! `localhost`), one certificate per generated hostname from the CA when the base domain is
//! public but DNS-01 is not set up, and certificates from an ACME CA (RFC 8555, through
//! `instant-acme`) for every verified custom domain.
//!
//! - **Challenges**: HTTP-01 (RFC 8555 §8.3; the answer is stored in the database, so any
//!   ingress process serves it at `/.well-known/acme-challenge/<token>`) or TLS-ALPN-01
//!   (RFC 8737; the challenge certificate is handed to this process's TLS listener), or
//!   DNS-01 (RFC 8555 §8.4; a TXT record published by RFC 2136 dynamic update, see
//!   [`super::dns_update`]), which wildcard names (`*.example.com`) always use. An
//!   authorization the CA already holds as valid is reused.
//! - **Keys**: a new ECDSA P-256 key per certificate, sealed with the installation's secret
//!   key before it is stored. The ACME account key is stored the same way, per directory.
//! - **Renewal** at `not_after − min(30 days, lifetime / 3)` (Let's Encrypt's advice for
//!   90-day certificates, scaled for short-lived ones). A failed attempt keeps the working
//!   certificate, records the error and retries with exponential backoff
//!   ([`retry_delay_ms`]); a `rateLimited` problem from the CA waits at least an hour.
//! - **Clock**: [`CertificateManager::tick`] takes the time as an argument, so renewal is
//!   tested by moving the clock, not by waiting.

use std::{path::PathBuf, sync::Arc, time::Duration};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tokio::sync::Notify;

use super::{
    dns_update::DnsUpdater,
    tls::{self, CertStore},
};
use crate::{
    secrets::SecretBox,
    store::{now_ms, Issued, Store, StoreError},
};

mod policy;

pub use policy::{describe, renew_at, retry_delay_ms};
use policy::{Failure, BAD_NONCE_ORDERS, DAY_MS};
/// How often the manager looks for work.
pub const TICK: Duration = Duration::from_secs(5);
/// Lifetime of the self-signed fallback, days.
pub const SELF_SIGNED_DAYS: i64 = 397;
/// How long an HTTP-01 answer stays published, ms.
const CHALLENGE_TTL_MS: i64 = 10 * 60 * 1000;

/// Which ACME challenge proves control of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChallengeKind {
    /// HTTP-01: the CA fetches `http://<name>/.well-known/acme-challenge/<token>` (port 80).
    #[serde(rename = "http-01")]
    Http01,
    /// TLS-ALPN-01: the CA connects to `<name>:443` offering `acme-tls/1`.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// DNS-01: the CA looks up the TXT record `_acme-challenge.<name>`, which Berth publishes
    /// by RFC 2136 dynamic update (`acme_dns_update`). Wildcard names always use it.
    #[serde(rename = "dns-01")]
    Dns01,
}

/// Where certificates come from.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The CA's directory URL; `None`: no ACME, only the self-signed fallback.
    pub directory_url: Option<String>,
    /// Account contacts, e.g. `mailto:ops@example.com`.
    pub contact: Vec<String>,
    /// A PEM file of extra roots to trust for the directory's HTTPS (a test CA).
    pub ca_roots: Option<PathBuf>,
    /// The challenge for ordinary names.
    pub challenge: ChallengeKind,
    /// Publishes DNS-01 answers; `None`: no DNS-01, so no wildcard certificates.
    pub dns_update: Option<DnsUpdater>,
}

/// What one pass did (tests read it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Hostnames that got a new certificate.
    pub issued: Vec<String>,
    /// Hostnames whose attempt failed, with the error.
    pub failed: Vec<(String, String)>,
}

/// Issues and renews the ingress's certificates.
pub struct CertificateManager {
    store: Store,
    secrets: SecretBox,
    base_domain: String,
    settings: AcmeSettings,
    certs: Arc<CertStore>,
    changed: Arc<Notify>,
    account: tokio::sync::Mutex<Option<Account>>,
}

/// A published challenge answer, withdrawn once the order is decided.
enum Published {
    /// An HTTP-01 token in the `acme_challenges` table.
    Http(String),
    /// A TLS-ALPN-01 certificate for this name in the listener's store.
    Alpn(String),
    /// A DNS-01 TXT record: name and value.
    Dns(String, String),
}

impl CertificateManager {
    /// `certs` is this process's TLS listener's store (for TLS-ALPN-01); `changed` tells the
    /// ingress to reload.
    pub fn new(
        store: Store,
        secrets: SecretBox,
        base_domain: String,
        settings: AcmeSettings,
        certs: Arc<CertStore>,
        changed: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            secrets,
            base_domain: base_domain.to_ascii_lowercase(),
            settings,
            certs,
            changed,
            account: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs [`CertificateManager::tick`] every [`TICK`] until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.tick(now_ms()).await {
                tracing::warn!(error = %e, "certificate pass failed");
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// One pass as if the time were `now_ms`: renews the self-signed fallback when due,
    /// creates certificate slots for verified custom domains and, without DNS-01 on a public
    /// base domain, for generated hostnames (with ACME configured), drops those of removed
    /// ones, then issues or renews every slot that is due.
    ///
    /// # Errors
    /// Store failures; a failed issuance is recorded on its slot, not returned.
    pub async fn tick(&self, now_ms: i64) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        self.ensure_base_certificate(now_ms).await?;
        let certificates = self.store.certificates();
        certificates.prune_orphans().await?;
        if self.settings.directory_url.is_some() {
            // Only domains without a slot are written: a pass over an unchanged installation
            // reads, it does not write.
            let slots: std::collections::HashSet<String> =
                certificates.hostnames().await?.into_iter().collect();
            for d in self.store.domains().verified().await? {
                if !slots.contains(&d.hostname) {
                    certificates
                        .ensure(&d.hostname, Some(&d.id), "acme", now_ms)
                        .await?;
                }
            }
            self.sync_generated(&slots, now_ms).await?;
        }
        let due = match self.settings.directory_url {
            Some(_) => certificates.due(now_ms).await?,
            None => Vec::new(),
        };
        for slot in due {
            let mut outcome = self.issue(&slot.hostname).await;
            for _ in 1..BAD_NONCE_ORDERS {
                match &outcome {
                    Err(f) if f.bad_nonce => {
                        tracing::info!(hostname = %slot.hostname, "the CA refused a nonce; ordering again");
                        outcome = self.issue(&slot.hostname).await;
                    }
                    _ => break,
                }
            }
            match outcome {
                Ok(g) => {
                    self.store_issued(&slot.id, &g, renew_at(g.not_before_ms, g.not_after_ms))
                        .await?;
                    tracing::info!(hostname = %slot.hostname, not_after_ms = g.not_after_ms, "certificate issued");
                    report.issued.push(slot.hostname.clone());
                }
                Err(f) => {
                    let next = now_ms + retry_delay_ms(slot.attempts, f.rate_limited);
                    let message = format!(
                        "{} (next attempt in {} s)",
                        f.message,
                        (next - now_ms) / 1000
                    );
                    tracing::warn!(hostname = %slot.hostname, error = %message, "certificate not issued");
                    certificates
                        .record_failure(&slot.id, &message, next)
                        .await?;
                    report.failed.push((slot.hostname.clone(), message));
                }
            }
        }
        if !report.issued.is_empty() {
            self.changed.notify_one();
        }
        Ok(report)
    }

    /// Stores a certificate on slot `id`, its key sealed, due for renewal at `renew_at_ms`.
    async fn store_issued(
        &self,
        id: &str,
        g: &tls::Generated,
        renew_at_ms: i64,
    ) -> Result<(), StoreError> {
        let key_sealed = self.secrets.seal(&g.key_pem);
        self.store
            .certificates()
            .record_issued(
                id,
                &Issued {
                    cert_pem: &g.cert_pem,
                    key_sealed: &key_sealed,
                    not_before_ms: g.not_before_ms,
                    not_after_ms: g.not_after_ms,
                    renew_at_ms,
                },
            )
            .await
    }

    /// Whether the base domain is one a public CA issues for (not `localhost` or a name
    /// under it), with an ACME directory configured.
    fn base_is_public(&self) -> bool {
        let local = self.base_domain == "localhost" || self.base_domain.ends_with(".localhost");
        self.settings.directory_url.is_some() && !local
    }

    /// Whether `*.<base_domain>` comes from the CA: with DNS-01 set up (RFC 8555 §7.1.3: a
    /// wildcard's authorization can only be proved by DNS-01) and a public base domain.
    fn base_from_ca(&self) -> bool {
        self.base_is_public() && self.settings.dns_update.is_some()
    }

    /// Whether each generated hostname gets a certificate of its own, proved by the
    /// configured HTTP-01 or TLS-ALPN-01 challenge: a public base domain without DNS-01,
    /// where no wildcard can be had.
    fn generated_per_host(&self) -> bool {
        self.base_is_public() && self.settings.dns_update.is_none()
    }

    /// Keeps one ACME slot per deployment's generated hostname while
    /// [`CertificateManager::generated_per_host`] holds, and removes the slots of hostnames
    /// that no longer exist (a deleted deployment, another base domain) or are covered by the
    /// wildcard. `slots` are the hostnames that have a slot now.
    async fn sync_generated(
        &self,
        slots: &std::collections::HashSet<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut wanted = std::collections::HashSet::new();
        if self.generated_per_host() {
            let projects: std::collections::HashMap<String, String> = self
                .store
                .projects()
                .list_all()
                .await?
                .into_iter()
                .map(|p| (p.id, p.name))
                .collect();
            for d in self.store.deployments().all().await? {
                if let Some(project) = projects.get(&d.project_id) {
                    wanted.insert(super::routes::generated_host(
                        &d.name,
                        project,
                        &self.base_domain,
                    ));
                }
            }
        }
        let certificates = self.store.certificates();
        for hostname in &wanted {
            if !slots.contains(hostname) {
                certificates.ensure(hostname, None, "acme", now_ms).await?;
            }
        }
        for hostname in certificates.generated_hostnames().await? {
            if !wanted.contains(&hostname) {
                certificates.remove(&hostname).await?;
                self.changed.notify_one();
            }
        }
        Ok(())
    }

    /// Makes sure `*.<base_domain>` has its slot: from the CA (see
    /// [`CertificateManager::base_from_ca`]; issued and renewed like a domain's), else
    /// self-signed with 30 days left. A switch keeps the held certificate until the next one
    /// is stored.
    async fn ensure_base_certificate(&self, now_ms: i64) -> Result<(), StoreError> {
        let hostname = format!("*.{}", self.base_domain);
        let certificates = self.store.certificates();
        let source = if self.base_from_ca() {
            "acme"
        } else {
            "self_signed"
        };
        certificates.ensure(&hostname, None, source, now_ms).await?;
        let Some(slot) = certificates.by_hostname(&hostname).await? else {
            return Ok(());
        };
        if slot.source != source {
            certificates.set_source(&slot.id, source, now_ms).await?;
        }
        if source == "acme"
            || (slot.source == source
                && slot.cert_pem.is_some()
                && slot.next_attempt_at_ms > now_ms)
        {
            return Ok(());
        }
        match tls::self_signed(&self.base_domain, now_ms, SELF_SIGNED_DAYS) {
            Ok(g) => {
                self.store_issued(&slot.id, &g, g.not_after_ms - 30 * DAY_MS)
                    .await?;
                self.changed.notify_one();
            }
            Err(e) => {
                certificates
                    .record_failure(&slot.id, &e, now_ms + DAY_MS)
                    .await?
            }
        }
        Ok(())
    }

    /// The ACME account for the configured directory: loaded from the store, or created
    /// (and stored) on first use.
    async fn account(&self) -> Result<Account, Failure> {
        let mut cached = self.account.lock().await;
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let directory = self
            .settings
            .directory_url
            .clone()
            .ok_or("no ACME directory is configured")?;
        let builder = || match &self.settings.ca_roots {
            Some(path) => Account::builder_with_root(path),
            None => Account::builder(),
        };
        let stored = self.store.certificates().account(&directory).await?;
        let account = match stored.and_then(|s| self.secrets.open(&s).ok()) {
            Some(json) => {
                let credentials: AccountCredentials = serde_json::from_str(&json)?;
                builder()?.from_credentials(credentials).await?
            }
            None => {
                let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.clone(),
                        None,
                    )
                    .await?;
                let json = serde_json::to_string(&credentials)?;
                self.store
                    .certificates()
                    .save_account(&directory, &self.secrets.seal(&json))
                    .await?;
                account
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    /// Orders, proves and downloads a certificate for `hostname`.
    async fn issue(&self, hostname: &str) -> Result<tls::Generated, Failure> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(hostname.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut published = Vec::new();
        let proved = self.answer_challenges(&mut order, &mut published).await;
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .backoff(1.5)
            .timeout(Duration::from_secs(120));
        let status = match proved {
            Ok(()) => order.poll_ready(&retry).await,
            Err(f) => {
                self.withdraw(&published).await;
                return Err(f);
            }
        };
        self.withdraw(&published).await;
        let status = status
            .map_err(|e| Failure::from(format!("the CA did not validate {hostname}: {e}")))?;
        match status {
            OrderStatus::Ready => {}
            other => {
                let why = self.invalid_reason(&mut order).await;
                return Err(Failure::from(format!(
                    "the CA did not validate {hostname} ({other:?}): {why}"
                )));
            }
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![hostname.to_owned()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&retry).await?;
        let (not_before_ms, not_after_ms) = tls::validity(&chain)?;
        Ok(tls::Generated {
            cert_pem: chain,
            key_pem: key.serialize_pem(),
            not_before_ms,
            not_after_ms,
        })
    }

    /// Publishes an answer for every pending authorization and tells the CA it is ready.
    /// `published` collects what to withdraw afterwards.
    async fn answer_challenges(
        &self,
        order: &mut instant_acme::Order,
        published: &mut Vec<Published>,
    ) -> Result<(), Failure> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(Failure::from(format!("authorization is {other:?}"))),
            }
            let wildcard = authz.identifier().wildcard;
            let kind = match (wildcard, self.settings.challenge) {
                (true, _) | (_, ChallengeKind::Dns01) => ChallengeKind::Dns01,
                (false, other) => other,
            };
            let acme_kind = match kind {
                ChallengeKind::Http01 => ChallengeType::Http01,
                ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
                ChallengeKind::Dns01 => ChallengeType::Dns01,
            };
            let mut challenge = authz.challenge(acme_kind.clone()).ok_or_else(|| {
                Failure::from(format!(
                    "the CA offers no {acme_kind:?} challenge for this name"
                ))
            })?;
            let key_auth = challenge.key_authorization();
            let instant_acme::Identifier::Dns(name) = challenge.identifier().identifier.clone()
            else {
                return Err(Failure::from("only DNS names are ordered"));
            };
            match kind {
                ChallengeKind::Http01 => {
                    self.store
                        .certificates()
                        .put_challenge(
                            &challenge.token,
                            key_auth.as_str(),
                            // The ingress compares with the wall clock.
                            now_ms() + CHALLENGE_TTL_MS,
                        )
                        .await?;
                    published.push(Published::Http(challenge.token.clone()));
                }
                ChallengeKind::TlsAlpn01 => {
                    let ck = tls::alpn_challenge_cert(&name, key_auth.digest().as_ref())?;
                    self.certs.set_alpn_challenge(&name, ck);
                    published.push(Published::Alpn(name));
                }
                ChallengeKind::Dns01 => {
                    let updater = self.settings.dns_update.as_ref().ok_or(
                        "wildcard certificates need DNS-01, and no DNS update server is \
                         configured (acme_dns_update)",
                    )?;
                    // RFC 8555 §8.4: the record is at `_acme-challenge.<name>`; a wildcard's
                    // authorization is for the name without `*.`.
                    let record = format!("_acme-challenge.{name}");
                    let value = key_auth.dns_value();
                    updater.add_txt(&record, &value).await?;
                    published.push(Published::Dns(record, value));
                }
            }
            challenge.set_ready().await?;
        }
        Ok(())
    }

    /// Withdraws published answers.
    async fn withdraw(&self, published: &[Published]) {
        for p in published {
            match p {
                Published::Http(token) => {
                    let _ = self.store.certificates().remove_challenge(token).await;
                }
                Published::Alpn(name) => self.certs.clear_alpn_challenge(name),
                Published::Dns(record, value) => {
                    if let Some(updater) = &self.settings.dns_update {
                        if let Err(e) = updater.remove_txt(record, value).await {
                            tracing::warn!(record = %record, error = %e, "DNS-01 answer not withdrawn");
                        }
                    }
                }
            }
        }
    }

    /// The CA's explanation of an order that did not become ready.
    async fn invalid_reason(&self, order: &mut instant_acme::Order) -> String {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(p) = &c.error {
                        reasons.push(p.to_string());
                    }
                }
            }
        }
        if reasons.is_empty() {
            "no reason given".into()
        } else {
            reasons.join("; ")
        }
    }
}
