//! Custom domains of deployments, behind [`DeploymentService`](app::services::DeploymentService):
//! adding one (with its token), the DNS records to show, "verify now" and removal. The DNS
//! checks themselves run in `ingress::domains`.

use app::{model::*, services::RequestContext};
use serde_json::json;

use super::{audit, deployments::DeploymentsService, internal};
use crate::store::{now_ms, CertificateRecord, DeploymentRecord, DomainRecord, StoreError};

/// Where the ingress serves apps: `http://<deployment>-<project>.<base_domain>[:port]`, and
/// custom domains over HTTPS once they hold a certificate.
#[derive(Debug, Clone)]
pub struct AppUrls {
    base_domain: String,
    port: u16,
    https_port: Option<u16>,
}

impl AppUrls {
    /// `port`: the ingress's HTTP port; `https_port`: its HTTPS port, if it has one.
    pub fn new(base_domain: &str, port: u16, https_port: Option<u16>) -> Self {
        Self {
            base_domain: base_domain.to_owned(),
            port,
            https_port,
        }
    }

    /// `https://<hostname>[:port]/` (port left out when 443); `None` without HTTPS.
    pub fn https_url(&self, hostname: &str) -> Option<String> {
        match self.https_port? {
            443 => Some(format!("https://{hostname}/")),
            port => Some(format!("https://{hostname}:{port}/")),
        }
    }

    /// The generated hostname of deployment `deployment` of project `project`.
    pub fn host(&self, deployment: &str, project: &str) -> String {
        crate::ingress::routes::generated_host(deployment, project, &self.base_domain)
    }

    /// The address of deployment `deployment` of project `project` (port left out when 80).
    pub fn url(&self, deployment: &str, project: &str) -> String {
        let host = self.host(deployment, project);
        match self.port {
            80 => format!("http://{host}/"),
            port => format!("http://{host}:{port}/"),
        }
    }
}

impl DeploymentsService {
    /// The generated hostname's HTTPS address when a CA-issued, unexpired certificate covers
    /// it: its own slot, else `*.<base domain>` when that one is from the CA.
    pub(super) async fn generated_https_url(
        &self,
        deployment: &str,
        project: &str,
    ) -> Result<Option<String>, ApiError> {
        let Some(urls) = self.app_urls.as_ref() else {
            return Ok(None);
        };
        let host = urls.host(deployment, project);
        let wildcard = format!("*.{}", urls.base_domain.to_ascii_lowercase());
        let certificates = self.store.certificates();
        let now = now_ms();
        for name in [host.as_str(), wildcard.as_str()] {
            let slot = certificates
                .by_hostname(name)
                .await
                .map_err(internal("read a certificate"))?;
            let usable = slot.is_some_and(|c| {
                c.source == "acme"
                    && c.cert_pem.is_some()
                    && c.not_after_ms.is_some_and(|t| t > now)
            });
            if usable {
                return Ok(urls.https_url(&host));
            }
        }
        Ok(None)
    }

    /// The generated hostnames' domain, the ingress addresses custom domains may point at
    /// with A/AAAA records, and whether wildcard domains can get certificates (DNS-01).
    pub fn with_domain_settings(
        mut self,
        base_domain: &str,
        ingress_ips: Vec<std::net::IpAddr>,
        wildcard_domains: bool,
    ) -> Self {
        self.base_domain = base_domain.to_ascii_lowercase();
        self.ingress_ips = ingress_ips;
        self.wildcard_domains = wildcard_domains;
        self
    }

    /// Shows each deployment's address on the ingress (`None`: no ingress, no address).
    pub fn with_app_urls(mut self, app_urls: Option<AppUrls>) -> Self {
        self.app_urls = app_urls;
        self
    }

    fn domain_view(
        &self,
        d: DomainRecord,
        target: &str,
        cert: Option<CertificateRecord>,
    ) -> DomainView {
        let mut dns_records = vec![
            DnsRecord {
                kind: "TXT".into(),
                name: proof_record(&d.hostname),
                value: d.token.clone(),
            },
            DnsRecord {
                kind: "CNAME".into(),
                name: d.hostname.clone(),
                value: target.to_owned(),
            },
        ];
        // A zone apex cannot have a CNAME: address records to the ingress instead.
        for ip in &self.ingress_ips {
            dns_records.push(DnsRecord {
                kind: if ip.is_ipv4() { "A" } else { "AAAA" }.into(),
                name: d.hostname.clone(),
                value: ip.to_string(),
            });
        }
        let certificate = cert.map(|c| CertificateView {
            state: match crate::ingress::acme::describe(&c, now_ms()) {
                "issued" => CertificateState::Issued,
                "renewal_failing" => CertificateState::RenewalFailing,
                "expired" => CertificateState::Expired,
                "failed" => CertificateState::Failed,
                _ => CertificateState::Pending,
            },
            source: c.source,
            not_before_ms: c.not_before_ms,
            not_after_ms: c.not_after_ms,
            last_error: c.last_error,
            next_attempt_at_ms: c.next_attempt_at_ms,
        });
        let https_url = certificate
            .as_ref()
            .filter(|c| {
                matches!(
                    c.state,
                    CertificateState::Issued | CertificateState::RenewalFailing
                )
            })
            .and_then(|_| self.app_urls.as_ref()?.https_url(&d.hostname));
        DomainView {
            redirect_https: d.redirect_https,
            certificate,
            https_url,
            id: DomainId(d.id),
            deployment_id: DeploymentId(d.deployment_id),
            hostname: d.hostname,
            status: if d.status == "verified" {
                DomainStatus::Verified
            } else {
                DomainStatus::Pending
            },
            dns_records,
            last_result: d.last_result,
            last_check_at_ms: d.last_check_at_ms,
            next_check_at_ms: d.next_check_at_ms.filter(|_| d.status != "verified"),
            verified_at_ms: d.verified_at_ms,
        }
    }

    /// The generated hostname of deployment `d`.
    async fn generated_host(&self, d: &DeploymentRecord) -> Result<String, ApiError> {
        let project = self
            .store
            .projects()
            .by_id(&d.project_id)
            .await
            .map_err(internal("load project"))?
            .map(|p| p.name)
            .unwrap_or_default();
        Ok(crate::ingress::routes::generated_host(
            &d.name,
            &project,
            &self.base_domain,
        ))
    }

    /// The domain and its deployment, if the caller may see the deployment's project.
    async fn visible_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
    ) -> Result<(DomainRecord, DeploymentRecord), ApiError> {
        let not_found = || {
            ApiError::not_found(
                "domain_not_found",
                "No domain with this id is visible to you.",
            )
        };
        ctx.user()?;
        let domain = self
            .store
            .domains()
            .by_id(&id.0)
            .await
            .map_err(internal("load domain"))?
            .ok_or_else(not_found)?;
        let d = self
            .visible(ctx, &DeploymentId(domain.deployment_id.clone()))
            .await
            .map_err(|e| if e.status == 404 { not_found() } else { e })?;
        Ok((domain, d))
    }

    pub(super) async fn domains_of(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
    ) -> Result<Vec<DomainView>, ApiError> {
        let d = self.visible(ctx, id).await?;
        let target = self.generated_host(&d).await?;
        let domains = self
            .store
            .domains()
            .for_deployment(&d.id)
            .await
            .map_err(internal("list domains"))?;
        let mut views = Vec::with_capacity(domains.len());
        for x in domains {
            let cert = self.certificate_of(&x).await?;
            views.push(self.domain_view(x, &target, cert));
        }
        Ok(views)
    }

    pub(super) async fn attach_domain(
        &self,
        ctx: &RequestContext,
        id: &DeploymentId,
        domain: AddDomain,
    ) -> Result<DomainView, ApiError> {
        let d = self.visible(ctx, id).await?;
        let hostname = validate_domain(&domain.hostname, &self.base_domain, self.wildcard_domains)?;
        let token = {
            use argon2::password_hash::rand_core::{OsRng, RngCore};
            let mut bytes = [0u8; 16];
            OsRng.fill_bytes(&mut bytes);
            format!(
                "berth-verify-{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        };
        let record = match self
            .store
            .domains()
            .add(&d.project_id, &d.id, &hostname, &token)
            .await
        {
            Ok(r) => r,
            // Which project holds it is not said: that would leak other customers' domains.
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::conflict_field(
                    "hostname",
                    "domain_taken",
                    format!("{hostname} is already used by a deployment, in this project or another one. A domain belongs to one project only."),
                ))
            }
            Err(e) => return Err(internal("add domain")(e)),
        };
        audit(
            &self.store,
            ctx,
            None,
            "domain.add",
            format!("domain:{}", record.id),
            json!({"deployment": d.id, "hostname": hostname}),
        )
        .await?;
        let target = self.generated_host(&d).await?;
        Ok(self.domain_view(record, &target, None))
    }

    pub(super) async fn check_domain_now(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
    ) -> Result<DomainView, ApiError> {
        let (domain, d) = self.visible_domain(ctx, id).await?;
        if domain.status != "verified" {
            match self.store.domains().check_now(&domain.id).await {
                // Verified (or removed) since it was read: the reload below tells which.
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(internal("schedule domain check")(e)),
            }
        }
        let domain = self
            .store
            .domains()
            .by_id(&domain.id)
            .await
            .map_err(internal("load domain"))?
            .unwrap_or(domain);
        let target = self.generated_host(&d).await?;
        let cert = self.certificate_of(&domain).await?;
        Ok(self.domain_view(domain, &target, cert))
    }

    /// The certificate slot of a verified domain.
    async fn certificate_of(
        &self,
        d: &DomainRecord,
    ) -> Result<Option<CertificateRecord>, ApiError> {
        if d.status != "verified" {
            return Ok(None);
        }
        self.store
            .certificates()
            .by_hostname(&d.hostname)
            .await
            .map_err(internal("load certificate"))
    }

    pub(super) async fn change_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
        update: UpdateDomain,
    ) -> Result<DomainView, ApiError> {
        let (domain, d) = self.visible_domain(ctx, id).await?;
        self.store
            .domains()
            .set_redirect_https(&domain.id, update.redirect_https)
            .await
            .map_err(internal("update domain"))?;
        self.orchestrator.routes_changed.notify_one();
        audit(
            &self.store,
            ctx,
            None,
            "domain.update",
            format!("domain:{}", domain.id),
            json!({"hostname": domain.hostname, "redirect_https": update.redirect_https}),
        )
        .await?;
        let domain = DomainRecord {
            redirect_https: update.redirect_https,
            ..domain
        };
        let target = self.generated_host(&d).await?;
        let cert = self.certificate_of(&domain).await?;
        Ok(self.domain_view(domain, &target, cert))
    }

    pub(super) async fn detach_domain(
        &self,
        ctx: &RequestContext,
        id: &DomainId,
    ) -> Result<(), ApiError> {
        let (domain, _) = self.visible_domain(ctx, id).await?;
        self.store
            .domains()
            .delete(&domain.id)
            .await
            .map_err(internal("remove domain"))?;
        self.orchestrator.routes_changed.notify_one();
        audit(
            &self.store,
            ctx,
            None,
            "domain.remove",
            format!("domain:{}", domain.id),
            json!({"hostname": domain.hostname}),
        )
        .await
    }
}
