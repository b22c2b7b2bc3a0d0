//! The custom domains card of a deployment: DNS records to create, verification, the TLS
//! certificate's state and expiry, and the HTTP -> HTTPS redirect; and the path routes card
//! (this deployment under a path of one of the project's domains).

use std::time::Duration;

use leptos::prelude::*;

use crate::{
    api::deployments::{
        list_domains, list_path_routes, AttachDomain, AttachPathRoute, RemoveDomain,
        RemovePathRoute, SetDomainRedirect, VerifyDomain,
    },
    components::{action_error, format_time, ticker, Card, ErrorPanel, Field, FormError, Submit},
    model::{CertificateState, CertificateView, DomainStatus},
};

#[component]
pub fn Domains(id: String) -> impl IntoView {
    let add = ServerAction::<AttachDomain>::new();
    let verify = ServerAction::<VerifyDomain>::new();
    let remove = ServerAction::<RemoveDomain>::new();
    let redirect = ServerAction::<SetDomainRedirect>::new();
    let redirect_error = action_error(redirect.value());
    let add_error = action_error(add.value());
    let other_error = action_error(verify.value());
    let remove_error = action_error(remove.value());
    // Checks run in the background: look again every 5 s while the card is shown.
    let tick = ticker(Duration::from_secs(5));
    let lid = id.clone();
    let domains = Resource::new(
        move || {
            (
                lid.clone(),
                tick.get(),
                add.version().get(),
                verify.version().get(),
                remove.version().get(),
                redirect.version().get(),
            )
        },
        |(id, ..)| list_domains(id),
    );
    view! {
        <Card heading="Domains">
            <p class="mb-3 text-sm text-slate-500">
                "Serve this deployment at your own domain. Create the DNS records shown; Berth checks them and routes the domain once they are right."
            </p>
            <FormError error=other_error all=true />
            <FormError error=remove_error all=true />
            <FormError error=redirect_error all=true />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match domains.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"No custom domains yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul id="domains" class="divide-y divide-slate-200 text-sm dark:divide-slate-800">
                                {list.into_iter().map(|dom| {
                                    let verified = dom.status == DomainStatus::Verified;
                                    let badge = if verified {
                                        "rounded-sm bg-green-100 px-2 py-0.5 text-xs text-green-800"
                                    } else {
                                        "rounded-sm bg-amber-100 px-2 py-0.5 text-xs text-amber-800"
                                    };
                                    let domain_id = dom.id.to_string();
                                    let verify_id = domain_id.clone();
                                    let redirect_id = domain_id.clone();
                                    let redirect_on = dom.redirect_https;
                                    let certificate = dom.certificate.clone();
                                    let https_url = dom.https_url.clone();
                                    view! {
                                        <li class="domain py-3">
                                            <div class="flex flex-wrap items-center gap-3">
                                                <span class="font-mono font-medium">{dom.hostname.clone()}</span>
                                                <span class=badge>{if verified { "verified" } else { "pending" }}</span>
                                                {(!verified).then(|| view! {
                                                    <ActionForm action=verify>
                                                        <input type="hidden" name="domain_id" value=verify_id.clone() />
                                                        <button type="submit" class="text-sky-700 hover:underline dark:text-sky-400">"Verify now"</button>
                                                    </ActionForm>
                                                })}
                                                <ActionForm action=remove>
                                                    <input type="hidden" name="domain_id" value=domain_id.clone() />
                                                    <button type="submit" class="text-red-700 hover:underline dark:text-red-400">"Remove"</button>
                                                </ActionForm>
                                            </div>
                                            {(!verified).then(|| view! {
                                                <table class="mt-2 w-full text-left font-mono text-xs">
                                                    <thead class="text-slate-500"><tr><th>"Type"</th><th>"Name"</th><th>"Value"</th></tr></thead>
                                                    <tbody>
                                                        {dom.dns_records.iter().map(|r| view! {
                                                            <tr><td class="pr-3">{r.kind.clone()}</td><td class="pr-3">{r.name.clone()}</td><td class="break-all">{r.value.clone()}</td></tr>
                                                        }).collect_view()}
                                                    </tbody>
                                                </table>
                                                <p class="mt-1 text-xs text-slate-500">"The TXT record, plus either the CNAME or (for a zone apex) the A/AAAA records."</p>
                                            })}
                                            {certificate.map(|c| view! { <CertificateLine cert=c https_url=https_url.clone() /> })}
                                            {verified.then(|| view! {
                                                <ActionForm action=redirect attr:class="mt-1">
                                                    <input type="hidden" name="domain_id" value=redirect_id.clone() />
                                                    <input type="hidden" name="redirect_https" value=if redirect_on { "false" } else { "true" } />
                                                    <span class="text-xs text-slate-600 dark:text-slate-400">
                                                        {if redirect_on { "HTTP is redirected to HTTPS. " } else { "HTTP is served as HTTP. " }}
                                                    </span>
                                                    <button type="submit" class="redirect-toggle text-xs text-sky-700 hover:underline dark:text-sky-400">
                                                        {if redirect_on { "Stop redirecting" } else { "Redirect HTTP to HTTPS" }}
                                                    </button>
                                                </ActionForm>
                                            })}
                                            {(!dom.last_result.is_empty()).then(|| view! {
                                                <p class="domain-result mt-1 text-xs text-slate-600 dark:text-slate-400">
                                                    {dom.last_result.clone()}
                                                    {dom.last_check_at_ms.map(|t| format!(" (checked {})", format_time(t)))}
                                                </p>
                                            })}
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            <ActionForm action=add attr:id="add-domain-form" attr:class="mt-3 flex flex-wrap items-start gap-3">
                <input type="hidden" name="id" value=id.clone() />
                <div class="grow"><Field label="Domain" name="hostname" placeholder="shop.example.com" required=true error=add_error /></div>
                <div class="pt-6"><Submit label="Add domain" /></div>
            </ActionForm>
            <FormError error=add_error />
        </Card>
    }
}

/// One line about a domain's certificate: state, expiry, the last error.
#[component]
fn CertificateLine(cert: CertificateView, https_url: Option<String>) -> impl IntoView {
    let (label, class) = match cert.state {
        CertificateState::Issued => ("certificate issued", "bg-green-100 text-green-800"),
        CertificateState::Pending => ("certificate pending", "bg-slate-100 text-slate-700"),
        CertificateState::Failed => ("certificate failed", "bg-red-100 text-red-800"),
        CertificateState::RenewalFailing => ("renewal failing", "bg-amber-100 text-amber-800"),
        CertificateState::Expired => ("certificate expired", "bg-red-100 text-red-800"),
    };
    view! {
        <div class="certificate mt-1 flex flex-wrap items-center gap-2 text-xs">
            <span class=format!("cert-state rounded-sm px-2 py-0.5 {class}")>{label}</span>
            {cert.not_after_ms.map(|t| view! { <span class="text-slate-600 dark:text-slate-400">{format!("expires {}", format_time(t))}</span> })}
            {https_url.map(|u| view! { <a class="https-url font-mono text-sky-700 hover:underline dark:text-sky-400" href=u.clone() target="_blank" rel="noopener">{u.clone()}</a> })}
            {(!cert.last_error.is_empty()).then(|| view! {
                <span class="cert-error w-full text-red-700 dark:text-red-400">
                    {cert.last_error.clone()}
                    {format!(" Next attempt {}.", format_time(cert.next_attempt_at_ms))}
                </span>
            })}
        </div>
    }
}

/// The path routes a deployment serves: `<domain><prefix>` of its project's custom domains.
#[component]
pub fn PathRoutes(id: String) -> impl IntoView {
    let add = ServerAction::<AttachPathRoute>::new();
    let remove = ServerAction::<RemovePathRoute>::new();
    let add_error = action_error(add.value());
    let remove_error = action_error(remove.value());
    let lid = id.clone();
    let routes = Resource::new(
        move || (lid.clone(), add.version().get(), remove.version().get()),
        |(id, ..)| list_path_routes(id),
    );
    view! {
        <Card heading="Paths">
            <p class="mb-3 text-sm text-slate-500">
                "Serve this deployment under a path of one of the project's domains, e.g. /api of shop.example.com. The longest matching path wins; the rest of the domain stays with its own deployment."
            </p>
            <FormError error=remove_error all=true />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match routes.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"No path routes."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul id="path-routes" class="divide-y divide-slate-200 text-sm dark:divide-slate-800">
                                {list.into_iter().map(|r| view! {
                                    <li class="path-route flex flex-wrap items-center gap-3 py-2">
                                        <span class="font-mono">{format!("{}{}", r.hostname, r.path_prefix)}</span>
                                        {r.strip_prefix.then(|| view! { <span class="text-xs text-slate-500">"prefix stripped"</span> })}
                                        {(!r.routed).then(|| view! { <span class="rounded-sm bg-amber-100 px-2 py-0.5 text-xs text-amber-800">"domain not verified yet"</span> })}
                                        <ActionForm action=remove>
                                            <input type="hidden" name="route_id" value=r.id.to_string() />
                                            <button type="submit" class="text-red-700 hover:underline dark:text-red-400">"Remove"</button>
                                        </ActionForm>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            <ActionForm action=add attr:id="add-path-form" attr:class="mt-3 flex flex-wrap items-start gap-3">
                <input type="hidden" name="id" value=id.clone() />
                <div class="grow"><Field label="Domain" name="hostname" placeholder="shop.example.com" required=true error=add_error /></div>
                <div class="grow"><Field label="Path" name="path_prefix" placeholder="/api" required=true error=add_error /></div>
                <label class="pt-7 text-sm"><input type="checkbox" name="strip_prefix" value="on" />" strip the path"</label>
                <div class="pt-6"><Submit label="Add path" /></div>
            </ActionForm>
            <FormError error=add_error />
        </Card>
    }
}
