//! The "Git & builds" card of a deployment: the repository it builds from (with the webhook to
//! register at the git provider, its secret shown once), "Build & deploy", the builds with
//! their logs, and the webhook deliveries received.

use std::time::Duration;

use leptos::prelude::*;

use crate::{
    api::builds::{
        list_builds, list_webhook_deliveries, load_git_source, ConnectRepository,
        DisconnectRepository, RotateWebhookSecret, StartBuild, StopBuild,
    },
    components::{
        action_error, format_time, ticker, Card, ErrorPanel, Field, FormError, Submit, TextArea,
    },
    model::{BuildStatus, BuildView, GitSourceCreated},
};

fn status_class(s: BuildStatus) -> &'static str {
    match s {
        BuildStatus::Succeeded => "rounded-sm bg-green-100 px-2 py-0.5 text-xs text-green-800",
        BuildStatus::Failed => "rounded-sm bg-red-100 px-2 py-0.5 text-xs text-red-800",
        BuildStatus::Cancelled => "rounded-sm bg-slate-100 px-2 py-0.5 text-xs text-slate-700",
        BuildStatus::Queued | BuildStatus::Running => {
            "rounded-sm bg-sky-100 px-2 py-0.5 text-xs text-sky-800"
        }
    }
}

#[component]
pub fn GitBuilds(id: String) -> impl IntoView {
    let connect = ServerAction::<ConnectRepository>::new();
    let disconnect = ServerAction::<DisconnectRepository>::new();
    let rotate = ServerAction::<RotateWebhookSecret>::new();
    let build = ServerAction::<StartBuild>::new();
    let stop = ServerAction::<StopBuild>::new();
    let connect_error = action_error(connect.value());
    let build_error = action_error(build.value());
    let other_error = action_error(disconnect.value());
    let rotate_error = action_error(rotate.value());
    let stop_error = action_error(stop.value());
    // Builds move on their own: look again every 2 s while the card is shown.
    let tick = ticker(Duration::from_secs(2));
    let sid = id.clone();
    let source = Resource::new(
        move || {
            (
                sid.clone(),
                connect.version().get(),
                disconnect.version().get(),
            )
        },
        |(id, ..)| load_git_source(id),
    );
    let bid = id.clone();
    let builds = Resource::new(
        move || {
            (
                bid.clone(),
                tick.get(),
                build.version().get(),
                stop.version().get(),
            )
        },
        |(id, ..)| list_builds(id),
    );
    let did = id.clone();
    let deliveries = Resource::new(
        move || (did.clone(), tick.get()),
        |(id, ..)| list_webhook_deliveries(id),
    );
    // The log shown: the chosen build's, read again with each tick only while the build list
    // says it runs (once more when it ends, as the key changes).
    let (log_of, set_log_of) = signal(None::<String>);
    let log = Resource::new(
        move || {
            // The build list is tracked only once a log is chosen (never during server
            // rendering, where it resolves after this component is gone).
            let Some(chosen) = log_of.get() else {
                return (None, 0);
            };
            let running = builds.get().and_then(Result::ok).is_some_and(|list| {
                list.iter()
                    .any(|b| b.id.0 == chosen && !b.status.is_finished())
            });
            (Some(chosen), if running { tick.get() } else { 0 })
        },
        |(build, _)| async move {
            match build {
                Some(b) => crate::api::builds::get_build_log(b).await.map(Some),
                None => Ok(None),
            }
        },
    );
    let secret_shown = move || {
        let from = |v: Option<Result<GitSourceCreated, _>>| {
            v.and_then(Result::ok).and_then(|c| c.webhook_secret)
        };
        from(rotate.value().get()).or_else(|| from(connect.value().get()))
    };
    let form_id = id.clone();
    let build_id = id.clone();
    view! {
        <Card heading="Git & builds">
            <p class="mb-3 text-sm text-slate-500">
                "Build this deployment from a git repository's Dockerfile. Each build becomes a new release, rolled out health-gated; a failed build leaves the running release alone."
            </p>
            <FormError error=other_error all=true />
            <FormError error=rotate_error all=true />
            {move || secret_shown().map(|s| view! {
                <div id="webhook-secret" class="mb-3 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm dark:bg-amber-950">
                    <p class="font-medium">"Webhook secret (shown once; copy it into the provider's webhook settings):"</p>
                    <code class="break-all font-mono">{s}</code>
                </div>
            })}
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match source.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(None) => view! { <p id="no-git-source" class="text-sm text-slate-500">"Not connected to a repository."</p> }.into_any(),
                        Ok(Some(s)) => {
                            let rid = s.deployment_id.to_string();
                            let did = rid.clone();
                            view! {
                                <div id="git-source" class="text-sm">
                                    <p><span class="font-mono">{s.source.repository_url.clone()}</span>" · branch "<span class="font-mono">{s.source.branch.clone()}</span>
                                        " · " {s.source.dockerfile_path.clone()} " in " {s.source.context_dir.clone()}
                                        {s.has_https_token.then_some(" · token stored")}</p>
                                    <p class="mt-1 text-slate-600 dark:text-slate-400">"Webhook (content type JSON, push events), prefixed with this site's address:"</p>
                                    <ul class="font-mono text-xs">
                                        {s.webhook_paths.iter().map(|p| view! { <li>{format!("{:?}: ", p.provider)}<span class="webhook-path">{p.path.clone()}</span></li> }).collect_view()}
                                    </ul>
                                    <div class="mt-2 flex gap-3">
                                        <ActionForm action=rotate>
                                            <input type="hidden" name="id" value=rid />
                                            <button type="submit" class="text-sky-700 hover:underline dark:text-sky-400">"New webhook secret"</button>
                                        </ActionForm>
                                        <ActionForm action=disconnect>
                                            <input type="hidden" name="id" value=did />
                                            <button type="submit" class="text-red-700 hover:underline dark:text-red-400">"Disconnect"</button>
                                        </ActionForm>
                                    </div>
                                </div>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
            <ActionForm action=connect attr:id="git-source-form" attr:class="mt-3 grid gap-3 md:grid-cols-2">
                <input type="hidden" name="id" value=form_id />
                <Field label="Repository URL" name="repository_url" placeholder="https://github.com/you/app.git" required=true error=connect_error />
                <Field label="Branch" name="branch" value="main" required=true error=connect_error />
                <Field label="Dockerfile" name="dockerfile_path" value="Dockerfile" error=connect_error />
                <Field label="Build context" name="context_dir" value="." error=connect_error />
                <TextArea label="Build arguments" name="build_args" placeholder="NAME=value, one per line" hint="Not for secrets: build arguments stay in the image's history." error=connect_error />
                <div>
                    <Field label="HTTPS token (private repositories; empty keeps the stored one)" name="https_token" kind="password" error=connect_error />
                    <label class="text-sm"><input type="checkbox" name="remove_token" value="on" />" remove the stored token"</label>
                </div>
                <div><Submit label="Save repository" /></div>
            </ActionForm>
            <FormError error=connect_error />
            <ActionForm action=build attr:id="build-form" attr:class="mt-4 flex flex-wrap items-start gap-3">
                <input type="hidden" name="id" value=build_id />
                <div class="grow"><Field label="Commit (empty: the branch head)" name="commit" placeholder="a1b2c3d" error=build_error /></div>
                <div class="pt-6"><Submit label="Build & deploy" /></div>
            </ActionForm>
            <FormError error=build_error />
            <FormError error=stop_error all=true />
            <h3 class="mt-4 text-sm font-medium">"Builds"</h3>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match builds.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"No builds yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul id="builds" class="divide-y divide-slate-200 text-sm dark:divide-slate-800">
                                {list.into_iter().map(|b| view! { <BuildRow b=b stop=stop set_log_of=set_log_of /> }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match log.await {
                        Ok(Some(d)) => view! {
                            <div class="mt-3">
                                <p class="text-xs text-slate-500">{format!("Log of build #{} ({})", d.build.number, d.build.status.as_str())}</p>
                                <pre id="build-log" class="mt-1 max-h-96 overflow-auto rounded-md bg-slate-950 p-3 font-mono text-xs text-slate-100">{d.log}</pre>
                            </div>
                        }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                    }
                })}
            </Transition>
            <h3 class="mt-4 text-sm font-medium">"Webhook deliveries"</h3>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match deliveries.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"None received yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table id="deliveries" class="w-full text-left text-xs">
                                <thead class="text-slate-500"><tr><th>"Received"</th><th>"Provider"</th><th>"Event"</th><th>"Commit"</th><th>"Outcome"</th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|d| view! {
                                        <tr class="delivery">
                                            <td class="pr-2">{format_time(d.received_at_ms)}</td>
                                            <td class="pr-2">{format!("{:?}", d.provider)}</td>
                                            <td class="pr-2">{d.event.clone()}</td>
                                            <td class="pr-2 font-mono">{d.commit_sha.as_deref().map(|c| c.chars().take(12).collect::<String>())}</td>
                                            <td><span class="outcome font-medium">{d.outcome.clone()}</span>" " {d.reason.clone()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </Card>
    }
}

/// One build: number, status, commit, trigger, times, failure; "Log" and "Cancel".
#[component]
fn BuildRow(
    b: BuildView,
    stop: ServerAction<StopBuild>,
    set_log_of: WriteSignal<Option<String>>,
) -> impl IntoView {
    let id = b.id.to_string();
    let log_id = id.clone();
    let stop_id = id.clone();
    let running = !b.status.is_finished();
    view! {
        <li class="build flex flex-wrap items-center gap-3 py-2" data-build-id=id>
            <span class="font-medium">{format!("#{}", b.number)}</span>
            <span class=format!("build-status {}", status_class(b.status))>{b.status.as_str()}</span>
            <span class="font-mono text-xs">{b.commit_sha.as_deref().or(b.requested_commit.as_deref()).map(|c| c.chars().take(12).collect::<String>()).unwrap_or_else(|| b.branch.clone())}</span>
            <span class="text-xs text-slate-500">{format!("{} · {}", b.trigger, format_time(b.created_at_ms))}</span>
            <button type="button" class="show-log text-sky-700 hover:underline dark:text-sky-400" on:click=move |_| set_log_of.set(Some(log_id.clone()))>"Log"</button>
            {running.then(|| view! {
                <ActionForm action=stop>
                    <input type="hidden" name="build_id" value=stop_id.clone() />
                    <button type="submit" class="text-red-700 hover:underline dark:text-red-400">"Cancel"</button>
                </ActionForm>
            })}
            {(!b.failure.is_empty()).then(|| view! { <span class="build-failure w-full text-xs text-red-700 dark:text-red-400">{b.failure.clone()}</span> })}
        </li>
    }
}
