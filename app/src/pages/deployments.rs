//! The project page's deployments: the list with status badges and the "New deployment" form.

use std::time::Duration;

use leptos::prelude::*;

use crate::{
    api::{
        deployments::{list_deployments, SubmitNewDeployment},
        projects::project_metrics_now,
        topology::list_plans,
    },
    components::{
        action_error,
        chart::{format_value, Unit},
        ticker, Card, ErrorPanel, Field, FormError, Submit, TextArea,
    },
    model::{DeploymentNow, DeploymentStatus, ProjectId},
};

/// How often the "CPU now" and "Memory now" columns are read again.
const NOW_REFRESH: Duration = Duration::from_secs(5);

/// The "CPU now" and "Memory now" cells of one deployment: "–" without a fresh sample.
fn now_cells(now: Option<&DeploymentNow>) -> impl IntoView {
    let (cpu, memory) = match now {
        Some(n) => (
            format_value(Unit::Percent, n.cpu_percent),
            format!(
                "{} / {}",
                format_value(Unit::Bytes, n.memory_bytes as f64),
                format_value(Unit::Bytes, n.memory_limit_bytes as f64)
            ),
        ),
        None => ("–".to_owned(), "–".to_owned()),
    };
    view! {
        <td class="tabular-nums" data-cpu-now="">{cpu}</td>
        <td class="tabular-nums" data-memory-now="">{memory}</td>
    }
}

/// A coloured badge for a deployment status.
#[component]
pub fn StatusBadge(status: DeploymentStatus) -> impl IntoView {
    let colour = match status {
        DeploymentStatus::Running => {
            "bg-emerald-100 text-emerald-800 dark:bg-emerald-900 dark:text-emerald-200"
        }
        DeploymentStatus::Deploying => "bg-sky-100 text-sky-800 dark:bg-sky-900 dark:text-sky-200",
        DeploymentStatus::Degraded => {
            "bg-amber-100 text-amber-800 dark:bg-amber-900 dark:text-amber-200"
        }
        DeploymentStatus::CrashLoop | DeploymentStatus::Failed => {
            "bg-red-100 text-red-800 dark:bg-red-900 dark:text-red-200"
        }
        DeploymentStatus::Stopped | DeploymentStatus::Deleting => {
            "bg-slate-200 text-slate-700 dark:bg-slate-800 dark:text-slate-300"
        }
    };
    let label = status.as_str().replace('_', " ");
    view! {
        <span class=format!("status-badge rounded-full px-2 py-0.5 text-xs font-medium {colour}")>
            {label}
        </span>
    }
}

/// The deployments of one project, and the form to add one.
#[component]
pub fn ProjectDeployments(project: ProjectId) -> impl IntoView {
    let create = ServerAction::<SubmitNewDeployment>::new();
    let error = action_error(create.value());
    let pid = project.clone();
    let list = Resource::new(
        move || (pid.clone(), create.version().get()),
        |(id, _)| list_deployments(id.0),
    );
    let plans = Resource::new(|| (), |_| list_plans());
    let tick = ticker(NOW_REFRESH);
    let pid = project.clone();
    // A process without the metrics role answers 503: the columns then show "–".
    let now = Resource::new(
        move || (pid.clone(), tick.get()),
        |(id, _)| project_metrics_now(id.0),
    );
    view! {
        <Card heading="Deployments">
            <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(items) if items.is_empty() => {
                            view! { <p class="text-sm text-slate-500">"No deployments yet."</p> }.into_any()
                        }
                        Ok(items) => {
                            let now = now.await.unwrap_or_default();
                            view! {
                                <table id="deployments" class="w-full text-left text-sm">
                                    <thead class="text-slate-500">
                                        <tr>
                                            <th class="py-2">"Name"</th>
                                            <th>"Status"</th>
                                            <th>"Image"</th>
                                            <th>"Instances"</th>
                                            <th>"Release"</th>
                                            <th title="Percent of one core, all instances">"CPU now"</th>
                                            <th title="In use / limit, all instances">"Memory now"</th>
                                        </tr>
                                    </thead>
                                    <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                        {items
                                            .into_iter()
                                            .map(|d| {
                                                let image = d.spec.as_ref().map(|s| s.image.clone()).unwrap_or_default();
                                                let current = now.iter().find(|n| n.deployment_id == d.id);
                                                view! {
                                                    <tr data-deployment=d.id.to_string()>
                                                        <td class="py-2 font-medium">
                                                            <a class="text-sky-700 hover:underline dark:text-sky-400" href=format!("/deployments/{}", d.id)>
                                                                {d.name.clone()}
                                                            </a>
                                                        </td>
                                                        <td><StatusBadge status=d.status /></td>
                                                        <td class="font-mono text-xs">{image}</td>
                                                        <td>{d.replicas}</td>
                                                        <td>{d.current_release.map(|n| format!("#{n}")).unwrap_or_else(|| "–".into())}</td>
                                                        {now_cells(current)}
                                                    </tr>
                                                }
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
            <h3 class="mt-6 mb-3 font-semibold">"New deployment"</h3>
            <ActionForm action=create attr:id="new-deployment-form" attr:class="grid gap-3 md:grid-cols-2">
                <input type="hidden" name="project_id" value=project.to_string() />
                <Field label="Name" name="name" required=true placeholder="web" error=error />
                <Field label="Image" name="image" required=true placeholder="berth-demo/httpd:latest" error=error />
                <Field label="HTTP port" name="http_port" placeholder="8080" error=error />
                <Field label="Instances" name="replicas" value="1" required=true error=error />
                <label class="block text-sm">
                    <span class="mb-1 block font-medium text-slate-700 dark:text-slate-300">"Plan"</span>
                    <select name="plan_id" class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-900">
                        <Suspense fallback=|| view! { <option>"…"</option> }>
                            {move || Suspend::new(async move {
                                plans
                                    .await
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|p| view! { <option value=p.id.to_string()>{format!("{} ({:.2} cores, {} MiB)", p.name, p.cpu_millicores as f64 / 1000.0, p.memory_bytes >> 20)}</option> })
                                    .collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <label class="block text-sm">
                    <span class="mb-1 block font-medium text-slate-700 dark:text-slate-300">"Restart policy"</span>
                    <select name="restart_policy" class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-900">
                        <option value="always">"always"</option>
                        <option value="on-failure">"on failure"</option>
                        <option value="never">"never"</option>
                    </select>
                </label>
                <TextArea label="Environment" name="env" placeholder="NAME=value" hint="One NAME=value per line." error=error />
                <TextArea label="Secrets" name="secret_env" placeholder="API_KEY=…" hint="Encrypted at rest and never shown again." error=error />
                <TextArea label="Volumes" name="volumes" placeholder="data:/data" hint="name:/path per line; kept across releases." error=error />
                <TextArea label="Command" name="command" placeholder="(the image's)" hint="One argument per line; no shell." error=error />
                <Field label="Health check path" name="health_path" placeholder="/healthz (empty: wait for the port)" error=error />
                <label class="block text-sm">
                    <span class="mb-1 block font-medium text-slate-700 dark:text-slate-300">"Load balancing"</span>
                    <select name="balance" class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-900">
                        <option value="round-robin">"round robin"</option>
                        <option value="least-connections">"least connections"</option>
                    </select>
                </label>
                <Field label="Request timeout (s)" name="route_timeout_secs" placeholder="(installation default)" error=error />
                <Field label="Largest request body (bytes)" name="route_max_body_bytes" placeholder="(installation default)" error=error />
                <Field label="Database (backups take dumps)" name="database" placeholder="postgres:user@database[:PASSWORD_ENV]" error=error />
                <div class="md:col-span-2">
                    <Submit label="Deploy" />
                </div>
            </ActionForm>
            <FormError error=error />
        </Card>
    }
}
