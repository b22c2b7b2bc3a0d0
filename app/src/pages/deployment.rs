//! One deployment: status, lifecycle buttons, instances, releases (with rollback), jobs with
//! their steps, settings (a new release on save), custom domains, live metrics and logs.
//! Status, instances, releases and jobs refresh every 2 s; the settings form, domains and
//! logs keep their state.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::{
    backups::Backups,
    builds::GitBuilds,
    deployments::StatusBadge,
    domains::{Domains, PathRoutes},
    metrics::LiveMetrics,
};
use crate::{
    api::deployments::{deployment_logs, get_deployment, DeploymentLifecycle, UpdateDeployment},
    components::{
        action_error, format_time, ticker, Card, ErrorPanel, Field, FormError, LiveSocket, Portal,
        Submit, TextArea,
    },
    model::{DeploymentDetail, DeploymentForm, InstanceView, JobView, ReleaseView},
};

#[component]
pub fn DeploymentPage() -> impl IntoView {
    view! {
        <Portal title="Deployment">
            <DeploymentDetailView />
        </Portal>
    }
}

#[component]
fn DeploymentDetailView() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let lifecycle = ServerAction::<DeploymentLifecycle>::new();
    let update = ServerAction::<UpdateDeployment>::new();
    let tick = ticker(Duration::from_secs(2));
    let detail = Resource::new(
        move || {
            (
                id(),
                tick.get(),
                lifecycle.version().get(),
                update.version().get(),
            )
        },
        |(id, _, _, _)| get_deployment(id),
    );
    // The settings form is read again only after a change, not on every refresh, so that
    // what the user is typing is not replaced; logs and domains keep their own state.
    let settings = Resource::new(
        move || (id(), lifecycle.version().get(), update.version().get()),
        |(id, _, _)| get_deployment(id),
    );
    view! {
        <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                    Ok(d) => view! { <DeploymentBody detail=d lifecycle=lifecycle /> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                settings.await.ok().and_then(|d| {
                    let id = d.deployment.id.to_string();
                    d.deployment.spec.map(|spec| view! {
                        <Settings id=id form=DeploymentForm::from_spec(&spec) update=update />
                    })
                })
            })}
        </Transition>
        {move || {
            let id = id();
            view! {
                <Domains id=id.clone() />
                <PathRoutes id=id.clone() />
                <GitBuilds id=id.clone() />
                <Backups id=id.clone() />
                <LiveMetrics id=id.clone() />
                <Logs id=id />
            }
        }}
    }
}

#[component]
fn DeploymentBody(
    detail: DeploymentDetail,
    lifecycle: ServerAction<DeploymentLifecycle>,
) -> impl IntoView {
    let d = detail.deployment.clone();
    let id = d.id.to_string();
    let lifecycle_error = action_error(lifecycle.value());
    let button = "rounded-md border border-slate-300 px-3 py-1.5 text-sm hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800";
    let simple = move |action: &'static str, label: &'static str, id: String| {
        view! {
            <ActionForm action=lifecycle>
                <input type="hidden" name="id" value=id />
                <input type="hidden" name="action" value=action />
                <button type="submit" class=button>{label}</button>
            </ActionForm>
        }
    };
    let running = d.desired_state == "running";
    let id_releases = id.clone();
    let (id_scale, id_delete) = (id.clone(), id.clone());
    view! {
        <Card>
            <div class="flex flex-wrap items-center gap-3">
                <h2 id="deployment-name" class="text-2xl font-semibold">{d.name.clone()}</h2>
                <StatusBadge status=d.status />
                <a class="text-sm text-sky-700 hover:underline dark:text-sky-400" href=format!("/projects/{}", d.project_id)>
                    {format!("in {}", detail.project_name)}
                </a>
            </div>
            {detail.url.clone().map(|url| view! {
                <a id="app-url" class="mt-1 inline-block font-mono text-sm text-sky-700 hover:underline dark:text-sky-400" href=url.clone() target="_blank" rel="noopener">{url.clone()}</a>
            })}
            {detail.https_url.clone().map(|url| view! {
                <a id="app-https-url" class="mt-1 ml-3 inline-block font-mono text-sm text-sky-700 hover:underline dark:text-sky-400" href=url.clone() target="_blank" rel="noopener">{url.clone()}</a>
            })}
            {(!d.status_message.is_empty())
                .then(|| view! { <pre id="status-message" class="mt-2 whitespace-pre-wrap text-sm text-slate-600 dark:text-slate-400">{d.status_message.clone()}</pre> })}
            <div class="mt-4 flex flex-wrap items-center gap-2">
                {simple("redeploy", "Redeploy", id.clone())}
                {simple("restart", "Restart", id.clone())}
                {if running { simple("stop", "Stop", id.clone()) } else { simple("start", "Start", id.clone()) }}
                <ActionForm action=lifecycle attr:class="flex items-center gap-2">
                    <input type="hidden" name="id" value=id_scale />
                    <input type="hidden" name="action" value="scale" />
                    <input name="replicas" value=d.replicas.to_string() size="3" class="w-16 rounded-md border border-slate-300 px-2 py-1.5 text-sm dark:border-slate-700 dark:bg-slate-900" />
                    <button type="submit" class=button>"Scale"</button>
                </ActionForm>
                <ActionForm action=lifecycle attr:class="flex items-center gap-2">
                    <input type="hidden" name="id" value=id_delete />
                    <input type="hidden" name="action" value="delete" />
                    <label class="text-sm"><input type="checkbox" name="remove_volumes" /> " also delete volumes"</label>
                    <button type="submit" class="rounded-md bg-red-600 px-3 py-1.5 text-sm text-white hover:bg-red-700">"Delete"</button>
                </ActionForm>
            </div>
            <FormError error=lifecycle_error all=true />
        </Card>
        <Instances instances=detail.instances.clone() />
        <Releases releases=detail.releases.clone() current=d.current_release id=id_releases lifecycle=lifecycle />
        <Jobs jobs=detail.jobs.clone() />
    }
}

#[component]
fn Instances(instances: Vec<InstanceView>) -> impl IntoView {
    view! {
        <Card heading="Instances">
            <table id="instances" class="w-full text-left text-sm">
                <thead class="text-slate-500">
                    <tr>
                        <th class="py-2">"#"</th><th>"Release"</th><th>"Node"</th><th>"Container"</th>
                        <th>"Status"</th><th>"Health"</th><th>"Address"</th><th>"Restarts"</th><th>"Started"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                    {instances
                        .into_iter()
                        .map(|i| {
                            let short = i.container_id.clone().map(|c| c.chars().take(12).collect::<String>()).unwrap_or_default();
                            view! {
                                <tr class="instance">
                                    <td class="py-2">{i.slot}</td>
                                    <td>{format!("#{}", i.release_number)}</td>
                                    <td class="node">{i.node_name.clone()}</td>
                                    <td class="container-id font-mono text-xs" title=i.container_id.clone().unwrap_or_default()>{short}</td>
                                    <td>{i.status.clone()}</td>
                                    <td class="health">{i.health.clone()}</td>
                                    <td class="font-mono text-xs">{i.address.clone().unwrap_or_default()}</td>
                                    <td>{i.restart_count}</td>
                                    <td>{i.started_at_ms.map(format_time).unwrap_or_default()}</td>
                                </tr>
                                {(!i.last_error.is_empty()).then(|| view! {
                                    <tr><td></td><td colspan="8"><pre class="whitespace-pre-wrap text-xs text-red-700 dark:text-red-300">{i.last_error.clone()}</pre></td></tr>
                                })}
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </Card>
    }
}

#[component]
fn Releases(
    releases: Vec<ReleaseView>,
    current: Option<u32>,
    id: String,
    lifecycle: ServerAction<DeploymentLifecycle>,
) -> impl IntoView {
    view! {
        <Card heading="Releases">
            <table id="releases" class="w-full text-left text-sm">
                <thead class="text-slate-500">
                    <tr><th class="py-2">"#"</th><th>"Image"</th><th>"Status"</th><th>"Cause"</th><th>"Created"</th><th></th></tr>
                </thead>
                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                    {releases
                        .into_iter()
                        .map(|r| {
                            let is_current = Some(r.number) == current;
                            let id = id.clone();
                            view! {
                                <tr>
                                    <td class="py-2">{format!("#{}", r.number)}</td>
                                    <td class="font-mono text-xs" title=r.image_digest.clone().unwrap_or_default()>{r.image.clone()}</td>
                                    <td>{r.status.clone()}</td>
                                    <td>{r.cause.clone()}</td>
                                    <td>{format_time(r.created_at_ms)}</td>
                                    <td class="text-right">
                                        {(!is_current && r.status != "pending").then(|| view! {
                                            <ActionForm action=lifecycle>
                                                <input type="hidden" name="id" value=id />
                                                <input type="hidden" name="action" value="rollback" />
                                                <input type="hidden" name="release_id" value=r.id.to_string() />
                                                <button type="submit" class="text-sky-700 hover:underline dark:text-sky-400">"Roll back to this"</button>
                                            </ActionForm>
                                        })}
                                    </td>
                                </tr>
                                {(!r.failure_reason.is_empty()).then(|| view! {
                                    <tr><td></td><td colspan="5"><pre class="whitespace-pre-wrap text-xs text-red-700 dark:text-red-300">{r.failure_reason.clone()}</pre></td></tr>
                                })}
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </Card>
    }
}

#[component]
fn Jobs(jobs: Vec<JobView>) -> impl IntoView {
    view! {
        <Card heading="Jobs">
            <ul id="jobs" class="space-y-3 text-sm">
                {jobs
                    .into_iter()
                    .map(|j| view! {
                        <li class="job">
                            <p><span class="font-medium">{j.kind.clone()}</span> " · " {j.status.clone()} " · " {format_time(j.created_at_ms)}</p>
                            <ol class="ml-4 list-decimal text-slate-600 dark:text-slate-400">
                                {j.steps.iter().map(|s| view! {
                                    <li>{format!("{} — {}", s.name, s.status)} {(!s.message.is_empty()).then(|| format!(": {}", s.message))}</li>
                                }).collect_view()}
                            </ol>
                            {(!j.error.is_empty()).then(|| view! { <pre class="whitespace-pre-wrap text-xs text-red-700 dark:text-red-300">{j.error.clone()}</pre> })}
                        </li>
                    })
                    .collect_view()}
            </ul>
        </Card>
    }
}

#[component]
fn Settings(
    id: String,
    form: DeploymentForm,
    update: ServerAction<UpdateDeployment>,
) -> impl IntoView {
    let error = action_error(update.value());
    view! {
        <Card heading="Settings">
            <p class="mb-3 text-sm text-slate-600 dark:text-slate-400">
                "Saving creates a new release. It replaces the running one only once it is healthy."
            </p>
            <ActionForm action=update attr:id="settings-form" attr:class="grid gap-3 md:grid-cols-2">
                <input type="hidden" name="id" value=id />
                <input type="hidden" name="plan_id" value=form.plan_id.clone() />
                <input type="hidden" name="restart_policy" value=form.restart_policy.clone() />
                <Field label="Image" name="image" value=form.image.clone() required=true error=error />
                <Field label="HTTP port" name="http_port" value=form.http_port.clone() error=error />
                <TextArea label="Environment" name="env" value=form.env.clone() error=error />
                <TextArea label="Secrets" name="secret_env" value=form.secret_env.clone() hint="A bare NAME keeps its stored value; NAME=value replaces it." error=error />
                <TextArea label="Volumes" name="volumes" value=form.volumes.clone() error=error />
                <TextArea label="Command" name="command" value=form.command.clone() error=error />
                <Field label="Health check path" name="health_path" value=form.health_path.clone() error=error />
                <label class="block text-sm">
                    <span class="mb-1 block font-medium text-slate-700 dark:text-slate-300">"Load balancing"</span>
                    <select name="balance" class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-900">
                        <option value="round-robin" selected=form.balance != "least-connections">"round robin"</option>
                        <option value="least-connections" selected=form.balance == "least-connections">"least connections"</option>
                    </select>
                </label>
                <Field label="Request timeout (s)" name="route_timeout_secs" value=form.route_timeout_secs.clone() placeholder="(installation default)" error=error />
                <Field label="Largest request body (bytes)" name="route_max_body_bytes" value=form.route_max_body_bytes.clone() placeholder="(installation default)" error=error />
                <Field label="Database (backups take dumps)" name="database" value=form.database.clone() placeholder="postgres:user@database[:PASSWORD_ENV]" error=error />
                <div class="md:col-span-2"><Submit label="Save and deploy" /></div>
            </ActionForm>
            <FormError error=error />
        </Card>
    }
}

fn format_line(l: &crate::model::LogLine) -> String {
    format!("{} {} {}\n", l.timestamp, l.stream, l.text)
}

#[component]
fn Logs(id: String) -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let lid = id.clone();
    let logs = Resource::new(
        move || (lid.clone(), refresh.get()),
        |(id, _)| deployment_logs(id, 200),
    );
    // Following live: the lines received over /ws/deployments/{id}/logs, and the socket.
    let following = RwSignal::new(false);
    let live = RwSignal::new(Vec::<String>::new());
    let ended = RwSignal::new(None::<String>);
    // The socket lives in the browser only: thread-local storage there; on the server (a
    // multi-threaded runtime, where a thread-local value must not be touched from another
    // thread) the placeholder is plain shared storage.
    #[cfg(feature = "hydrate")]
    let socket = StoredValue::new_local(None::<LiveSocket>);
    #[cfg(not(feature = "hydrate"))]
    let socket = StoredValue::new(None::<LiveSocket>);
    let fid = id.clone();
    let toggle = move |_| {
        if following.get_untracked() {
            socket.set_value(None);
            following.set(false);
        } else {
            live.set(Vec::new());
            ended.set(None);
            socket.set_value(follow_logs(&fid, live, ended));
            following.set(true);
        }
    };
    on_cleanup(move || socket.set_value(None));
    view! {
        <Card heading="Logs">
            <div class="mb-2 flex gap-3 text-sm">
                <button type="button" id="follow-logs" class="text-sky-700 hover:underline dark:text-sky-400" on:click=toggle>
                    {move || if following.get() { "Stop following" } else { "Follow live" }}
                </button>
                <button type="button" class="text-sky-700 hover:underline dark:text-sky-400" on:click=move |_| refresh.update(|r| *r += 1)>"Refresh"</button>
                <a class="text-sky-700 hover:underline dark:text-sky-400" href=format!("/api/v1/deployments/{id}/logs?format=text&tail=5000")>"Download"</a>
                {move || ended.get().map(|why| view! { <span class="text-amber-700 dark:text-amber-400">{why}</span> })}
            </div>
            <Show
                when=move || following.get()
                fallback=move || view! {
                    <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                        {move || Suspend::new(async move {
                            match logs.await {
                                Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                                Ok(lines) => view! {
                                    <pre id="logs" class="max-h-96 overflow-auto rounded-md bg-slate-950 p-3 font-mono text-xs text-slate-100">
                                        {lines.iter().map(format_line).collect::<String>()}
                                    </pre>
                                }.into_any(),
                            }
                        })}
                    </Transition>
                }
            >
                <pre id="live-logs" class="flex max-h-96 flex-col-reverse overflow-auto rounded-md bg-slate-950 p-3 font-mono text-xs text-slate-100">
                    <span>{move || live.with(|lines| lines.concat())}</span>
                </pre>
            </Show>
        </Card>
    }
}

/// Most lines the live view keeps; older ones scroll away.
const LIVE_LINES_MAX: usize = 2000;

/// Follows `/ws/deployments/{id}/logs`: each line is appended to `lines` (the oldest dropped
/// beyond the cap); why the stream ended goes to `ended`.
fn follow_logs(
    id: &str,
    lines: RwSignal<Vec<String>>,
    ended: RwSignal<Option<String>>,
) -> Option<LiveSocket> {
    LiveSocket::open(
        &format!("/ws/deployments/{id}/logs?tail=200"),
        move |text| {
            let Ok(line) = serde_json::from_str::<crate::model::LogLine>(&text) else {
                return;
            };
            lines.update(|v| {
                v.push(format_line(&line));
                let excess = v.len().saturating_sub(LIVE_LINES_MAX);
                v.drain(..excess);
            });
        },
        move |code| {
            let why = match code {
                1000 | 1005 => "The log stream ended.".to_owned(),
                4404 => "The deployment is gone or no longer yours.".to_owned(),
                _ => format!("The log stream was cut ({code}). Follow again to resume."),
            };
            ended.set(Some(why));
        },
    )
}
