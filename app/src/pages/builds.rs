//! The "Git & builds" card of a deployment: the repository it builds from (with the webhook to
//! register at the git provider, its secret shown once), "Build & deploy", the builds with
//! their logs, and the webhook deliveries received.

use std::time::Duration;

use leptos::prelude::*;

use crate::{
    api::builds::{
        list_builds, list_webhook_deliveries, load_git_source, ConnectRepository,
        DisconnectRepository, RotateDeployKey, RotateWebhookSecret, StartBuild, StopBuild,
    },
    components::{
        action_error, format_time, ticker, Card, ErrorPanel, Field, FormError, LiveSocket, Submit,
        TextArea,
    },
    model::{BuildLogFrame, BuildStatus, BuildView, GitSourceCreated},
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
    let rotate_key = ServerAction::<RotateDeployKey>::new();
    let build = ServerAction::<StartBuild>::new();
    let stop = ServerAction::<StopBuild>::new();
    let connect_error = action_error(connect.value());
    let build_error = action_error(build.value());
    let other_error = action_error(disconnect.value());
    let rotate_error = action_error(rotate.value());
    let rotate_key_error = action_error(rotate_key.value());
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
                rotate_key.version().get(),
            )
        },
        |(id, ..)| load_git_source(id),
    );
    // The followed log's end (set below) also refreshes the list.
    let log_end = RwSignal::new(None::<String>);
    let bid = id.clone();
    let builds = Resource::new(
        move || {
            (
                bid.clone(),
                tick.get(),
                log_end.get().is_some(),
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
    // The log shown: the chosen build's, followed live over /ws/builds/{id}/log (the log so
    // far, then each new line, then how it ended). The socket lives in the browser only.
    let log_of = RwSignal::new(None::<(String, i64)>);
    let log_text = RwSignal::new(String::new());
    #[cfg(feature = "hydrate")]
    let socket = StoredValue::new_local(None::<LiveSocket>);
    #[cfg(not(feature = "hydrate"))]
    let socket = StoredValue::new(None::<LiveSocket>);
    let show_log = move |build: String, number: i64| {
        socket.set_value(None);
        log_text.set(String::new());
        log_end.set(None);
        log_of.set(Some((build.clone(), number)));
        socket.set_value(follow_build_log(&build, log_text, log_end));
    };
    on_cleanup(move || socket.set_value(None));
    // A build just started shows its log at once.
    Effect::new(move |_| {
        if let Some(Ok(b)) = build.value().get() {
            show_log(b.id.0.clone(), b.number);
        }
    });
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
            <FormError error=rotate_key_error all=true />
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
                            let kid = rid.clone();
                            view! {
                                <div id="git-source" class="text-sm">
                                    <p><span class="font-mono">{s.source.repository_url.clone()}</span>" · branch "<span class="font-mono">{s.source.branch.clone()}</span>
                                        " · " {s.source.dockerfile_path.clone()} " in " {s.source.context_dir.clone()}
                                        {s.has_https_token.then_some(" · token stored")}</p>
                                    {s.ssh_public_key.clone().map(|key| view! {
                                        <p class="mt-1 text-slate-600 dark:text-slate-400">"Deploy key: add it at the git host as a read-only deploy key."</p>
                                        <code id="deploy-key" class="block break-all rounded-sm bg-slate-100 p-2 font-mono text-xs dark:bg-slate-900">{key}</code>
                                        <ActionForm action=rotate_key>
                                            <input type="hidden" name="id" value=kid.clone() />
                                            <button type="submit" class="text-sm text-sky-700 hover:underline dark:text-sky-400">"New deploy key"</button>
                                        </ActionForm>
                                    })}
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
                <Field label="Repository URL" name="repository_url" placeholder="https://github.com/you/app.git or git@github.com:you/app.git" required=true error=connect_error />
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
                                {list.into_iter().map(|b| view! { <BuildRow b=b stop=stop show_log=show_log /> }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            {move || log_of.get().map(|(_, number)| view! {
                <div class="mt-3">
                    <p class="text-xs text-slate-500">
                        {format!("Log of build #{number}")}
                        " · "
                        <span id="build-log-state">{move || log_end.get().unwrap_or_else(|| "following live…".into())}</span>
                    </p>
                    <pre id="build-log" class="mt-1 flex max-h-96 flex-col-reverse overflow-auto rounded-md bg-slate-950 p-3 font-mono text-xs text-slate-100"><span>{move || log_text.get()}</span></pre>
                </div>
            })}
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
    show_log: impl Fn(String, i64) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let id = b.id.to_string();
    let log_id = id.clone();
    let stop_id = id.clone();
    let running = !b.status.is_finished();
    let number = b.number;
    view! {
        <li class="build flex flex-wrap items-center gap-3 py-2" data-build-id=id>
            <span class="font-medium">{format!("#{}", b.number)}</span>
            <span class=format!("build-status {}", status_class(b.status))>{b.status.as_str()}</span>
            <span class="font-mono text-xs">{b.commit_sha.as_deref().or(b.requested_commit.as_deref()).map(|c| c.chars().take(12).collect::<String>()).unwrap_or_else(|| b.branch.clone())}</span>
            <span class="text-xs text-slate-500">{format!("{} · {}", b.trigger, format_time(b.created_at_ms))}</span>
            <button type="button" class="show-log text-sky-700 hover:underline dark:text-sky-400" on:click=move |_| show_log(log_id.clone(), number)>"Log"</button>
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

/// Most bytes of a build log the page keeps; the beginning is cut beyond it.
const LOG_MAX_BYTES: usize = 512 * 1024;

/// Follows `/ws/builds/{build}/log`: text is appended to `text` (its beginning cut beyond
/// [`LOG_MAX_BYTES`]); how the build or the stream ended goes to `end`.
fn follow_build_log(
    build: &str,
    text: RwSignal<String>,
    end: RwSignal<Option<String>>,
) -> Option<LiveSocket> {
    LiveSocket::open(
        &format!("/ws/builds/{build}/log"),
        move |frame| match serde_json::from_str::<BuildLogFrame>(&frame) {
            Ok(BuildLogFrame::Text { text: more }) => text.update(|t| {
                t.push_str(&more);
                if t.len() > LOG_MAX_BYTES {
                    let mut cut = t.len() - LOG_MAX_BYTES;
                    while !t.is_char_boundary(cut) {
                        cut += 1;
                    }
                    t.drain(..cut);
                }
            }),
            Ok(BuildLogFrame::End { status, failure }) => end.set(Some(if failure.is_empty() {
                format!("build {}", status.as_str())
            } else {
                format!("build {}: {failure}", status.as_str())
            })),
            Err(_) => {}
        },
        move |code| {
            if end.get_untracked().is_none() {
                end.set(Some(match code {
                    1000 | 1005 => "the log stream ended".to_owned(),
                    4404 => "the build is gone or no longer yours".to_owned(),
                    _ => format!("the log stream was cut ({code}); choose Log again to resume"),
                }));
            }
        },
    )
}
