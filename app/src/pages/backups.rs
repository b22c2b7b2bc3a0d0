//! The "Backups" card of a deployment: "Back up now", the schedule and retention, the backups
//! (with live progress while one runs) and "Restore", the restores, and how to read the
//! repository with stock `restic`.

use std::time::Duration;

use leptos::prelude::*;

use crate::{
    api::backups::{
        list_backup_files, list_backups, list_restores, load_backup_schedule, restore_targets,
        RemoveBackupSchedule, RestoreBackup, SaveBackupSchedule, StartBackup,
    },
    components::{action_error, format_time, ticker, Card, ErrorPanel, Field, FormError, Submit},
    model::{human_bytes, ApiError, BackupStatus, BackupView},
};

fn status_class(s: BackupStatus) -> &'static str {
    match s {
        BackupStatus::Succeeded => "rounded-sm bg-green-100 px-2 py-0.5 text-xs text-green-800",
        BackupStatus::Failed => "rounded-sm bg-red-100 px-2 py-0.5 text-xs text-red-800",
        BackupStatus::Queued | BackupStatus::Running => {
            "rounded-sm bg-sky-100 px-2 py-0.5 text-xs text-sky-800"
        }
    }
}

fn status_text(s: BackupStatus) -> &'static str {
    match s {
        BackupStatus::Queued => "queued",
        BackupStatus::Running => "running",
        BackupStatus::Succeeded => "succeeded",
        BackupStatus::Failed => "failed",
    }
}

/// A byte count from the API (never negative) for people.
fn size(bytes: i64) -> String {
    human_bytes(u64::try_from(bytes).unwrap_or(0))
}

#[component]
pub fn Backups(id: String) -> impl IntoView {
    let start = ServerAction::<StartBackup>::new();
    let restore = ServerAction::<RestoreBackup>::new();
    let save = ServerAction::<SaveBackupSchedule>::new();
    let remove = ServerAction::<RemoveBackupSchedule>::new();
    let start_error = action_error(start.value());
    let restore_error = action_error(restore.value());
    let save_error = action_error(save.value());
    let remove_error = action_error(remove.value());
    // Backups and restores move on their own: look again every 2 s while the card is shown.
    let tick = ticker(Duration::from_secs(2));
    let bid = id.clone();
    let backups = Resource::new(
        move || {
            (
                bid.clone(),
                tick.get(),
                start.version().get(),
                restore.version().get(),
            )
        },
        |(id, ..)| list_backups(id),
    );
    let rid = id.clone();
    let restores = Resource::new(
        move || (rid.clone(), tick.get(), restore.version().get()),
        |(id, ..)| list_restores(id),
    );
    let tid = id.clone();
    let targets = Resource::new(move || tid.clone(), restore_targets);
    let sid = id.clone();
    let schedule = Resource::new(
        move || {
            (
                sid.clone(),
                save.version().get(),
                remove.version().get(),
                tick.get(),
            )
        },
        |(id, ..)| load_backup_schedule(id),
    );
    let fid = id.clone();
    let form_values = Resource::new(
        move || (fid.clone(), save.version().get(), remove.version().get()),
        |(id, ..)| load_backup_schedule(id),
    );
    let (start_id, save_id, remove_id, repository_id) = (id.clone(), id.clone(), id.clone(), id);
    // The backup whose files are shown, and the directory.
    let browse = RwSignal::new(None::<(String, String)>);
    view! {
        <Card heading="Backups">
            <p class="mb-3 text-sm text-slate-500">
                "Snapshots of this deployment's named volumes in the project's restic repository. A restore fills new volumes first and switches to them while the deployment is stopped, so a failed restore leaves the data as it was."
            </p>
            <ActionForm action=start attr:id="backup-now-form">
                <input type="hidden" name="id" value=start_id />
                <Submit label="Back up now" />
            </ActionForm>
            <FormError error=start_error all=true />

            <h3 class="mt-4 text-sm font-medium">"Schedule and retention"</h3>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match schedule.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(None) => view! { <p id="no-backup-schedule" class="text-sm text-slate-500">"No schedule: backups run when you start them."</p> }.into_any(),
                        Ok(Some(s)) => {
                            let p = s.policy.clone();
                            view! {
                                <p id="backup-schedule" class="text-sm">
                                    <span class="font-mono">{p.cron.clone()}</span>" (UTC) · next run "
                                    <span id="backup-next-run">{format_time(s.next_run_at_ms)}</span>
                                    {format!(" · keep last {}, hourly {}, daily {}, weekly {}, monthly {}", p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly)}
                                    {(s.missed > 0).then(|| view! { <span id="backup-missed" class="text-amber-700 dark:text-amber-400">{format!(" · {} run(s) missed", s.missed)}</span> })}
                                </p>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
            // The form shows the saved schedule (read once, and again after a save, not on
            // every tick, so typing is never overwritten).
            <Transition fallback=|| ()>
                {move || {
                    let save_id = save_id.clone();
                    Suspend::new(async move {
                        let policy = form_values.await.ok().flatten().map(|s| s.policy);
                        let (cron, keep) = match &policy {
                            Some(p) => (
                                p.cron.clone(),
                                [p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly],
                            ),
                            None => ("0 3 * * *".to_owned(), [7, 0, 7, 4, 6]),
                        };
                        view! {
                            <ActionForm action=save attr:id="backup-schedule-form" attr:class="mt-2 grid gap-3 md:grid-cols-3">
                                <input type="hidden" name="id" value=save_id />
                                <Field label="Cron (UTC, 5 fields)" name="cron" value=cron required=true error=save_error />
                                <Field label="Keep last" name="keep_last" value=keep[0].to_string() error=save_error />
                                <Field label="Keep hourly" name="keep_hourly" value=keep[1].to_string() error=save_error />
                                <Field label="Keep daily" name="keep_daily" value=keep[2].to_string() error=save_error />
                                <Field label="Keep weekly" name="keep_weekly" value=keep[3].to_string() error=save_error />
                                <Field label="Keep monthly" name="keep_monthly" value=keep[4].to_string() error=save_error />
                                <div><Submit label="Save schedule" /></div>
                            </ActionForm>
                        }
                    })
                }}
            </Transition>
            <FormError error=save_error />
            <ActionForm action=remove>
                <input type="hidden" name="id" value=remove_id />
                <button type="submit" class="text-sm text-red-700 hover:underline dark:text-red-400">"Remove schedule"</button>
            </ActionForm>
            <FormError error=remove_error all=true />

            <h3 class="mt-4 text-sm font-medium">"Backups"</h3>
            <FormError error=restore_error all=true />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match backups.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"No backups yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul id="backups" class="divide-y divide-slate-200 text-sm dark:divide-slate-800">
                                {list.into_iter().map(|b| view! { <BackupRow b=b restore=restore browse=browse targets=targets /> }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>

            {move || browse.get().map(|(backup, dir)| view! { <FileBrowser backup=backup dir=dir browse=browse /> })}

            <h3 class="mt-4 text-sm font-medium">"Restores"</h3>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match restores.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"None yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul id="restores" class="text-sm">
                                {list.into_iter().map(|r| view! {
                                    <li class="restore py-1">
                                        <span class=format!("restore-status {}", status_class(r.status))>{status_text(r.status)}</span>
                                        {format!(" {} · {} files, {}", format_time(r.created_at_ms), r.files, size(r.bytes_total))}
                                        {(!r.failure.is_empty()).then(|| view! { <span class="restore-failure block text-xs text-red-700 dark:text-red-400">{r.failure.clone()}</span> })}
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>

            <super::backup_checks::RepositoryPanel id=repository_id />
        </Card>
    }
}

/// One backup: status, trigger, time, size, snapshot, live progress or failure; "Restore".
#[component]
fn BackupRow(
    b: BackupView,
    restore: ServerAction<RestoreBackup>,
    browse: RwSignal<Option<(String, String)>>,
    targets: Resource<Result<Vec<(String, String)>, ApiError>>,
) -> impl IntoView {
    let id = b.id.to_string();
    let browse_id = id.clone();
    let root = if b.kind == "database" {
        "/databases"
    } else {
        "/volumes"
    };
    let restorable = b.status == BackupStatus::Succeeded && b.removed_at_ms.is_none();
    let form_id = id.clone();
    view! {
        <li class="backup flex flex-wrap items-center gap-3 py-2" data-backup-id=id>
            <span class=format!("backup-status {}", status_class(b.status))>{status_text(b.status)}</span>
            <span class="text-xs text-slate-500">{format!("{} · {}", b.trigger, format_time(b.created_at_ms))}</span>
            <span class="text-xs">{b.volumes.join(", ")}</span>
            {(b.status == BackupStatus::Succeeded).then(|| view! {
                <span class="text-xs">{format!("{} files, {} ({} new)", b.files, size(b.bytes_total), size(b.bytes_added))}</span>
                <span class="font-mono text-xs">{b.snapshot_id.as_deref().map(|s| s.chars().take(8).collect::<String>())}</span>
            })}
            {(!b.progress.is_empty() && !b.status.is_final()).then(|| view! { <span class="backup-progress text-xs text-sky-800 dark:text-sky-300">{b.progress.clone()}</span> })}
            {b.removed_at_ms.map(|_| view! { <span class="text-xs text-slate-500">"removed by retention"</span> })}
            {restorable.then(|| view! {
                <button type="button" class="browse-files text-sky-700 hover:underline dark:text-sky-400"
                    on:click=move |_| browse.set(Some((browse_id.clone(), root.to_owned())))>"Files"</button>
            })}
            {restorable.then(|| view! {
                <ActionForm action=restore attr:class="restore-form flex flex-wrap items-center gap-2">
                    <input type="hidden" name="backup_id" value=form_id.clone() />
                    <label class="text-xs">"into "
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                let list = targets.await.unwrap_or_default();
                                view! {
                                    <select name="target" class="restore-target rounded-md border border-slate-300 bg-white px-1 py-0.5 dark:border-slate-700 dark:bg-slate-900">
                                        {list.into_iter().map(|(id, name)| view! { <option value=id>{name}</option> }).collect_view()}
                                    </select>
                                }
                            })}
                        </Suspense>
                    </label>
                    <input type="text" name="volumes" placeholder="volumes: data=data-copy" class="restore-volumes w-40 rounded-md border border-slate-300 px-1 py-0.5 text-xs dark:border-slate-700 dark:bg-slate-900" />
                    <label class="text-xs"><input type="checkbox" name="confirm" value="on" />" replace the current data"</label>
                    <button type="submit" class="text-red-700 hover:underline dark:text-red-400">"Restore"</button>
                </ActionForm>
            })}
            {(!b.failure.is_empty()).then(|| view! { <span class="backup-failure w-full text-xs text-red-700 dark:text-red-400">{b.failure.clone()}</span> })}
        </li>
    }
}

/// A directory of a backup's snapshot: directories open in place, files download.
#[component]
fn FileBrowser(
    backup: String,
    dir: String,
    browse: RwSignal<Option<(String, String)>>,
) -> impl IntoView {
    let (b, d) = (backup.clone(), dir.clone());
    let entries = Resource::new(
        move || (b.clone(), d.clone()),
        |(b, d)| list_backup_files(b, d),
    );
    let up = dir
        .rsplit_once('/')
        .map(|(parent, _)| parent.to_owned())
        .filter(|p| p.matches('/').count() >= 1 && !p.is_empty());
    let up_backup = backup.clone();
    view! {
        <div id="backup-files" class="mt-3 rounded-md border border-slate-200 p-3 text-sm dark:border-slate-800">
            <p class="mb-2 flex gap-3">
                <span class="font-mono">{dir.clone()}</span>
                {up.map(|parent| view! {
                    <button type="button" class="text-sky-700 hover:underline dark:text-sky-400"
                        on:click=move |_| browse.set(Some((up_backup.clone(), parent.clone())))>"Up"</button>
                })}
                <button type="button" class="text-slate-500 hover:underline" on:click=move |_| browse.set(None)>"Close"</button>
            </p>
            <Transition fallback=|| ()>
                {move || {
                    let backup = backup.clone();
                    Suspend::new(async move {
                        match entries.await {
                            Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                            Ok(list) => view! {
                                <ul class="font-mono text-xs">
                                    {list.into_iter().map(|e| {
                                        let backup = backup.clone();
                                        let path = e.path.clone();
                                        match e.kind.as_str() {
                                            "dir" => view! {
                                                <li><button type="button" class="snapshot-dir text-sky-700 hover:underline dark:text-sky-400"
                                                    on:click=move |_| browse.set(Some((backup.clone(), path.clone())))>{format!("{}/", e.name)}</button></li>
                                            }.into_any(),
                                            "file" => view! {
                                                <li><a class="snapshot-file text-sky-700 hover:underline dark:text-sky-400"
                                                    href=format!("/api/v1/backups/{backup}/download?path={}", path)>{e.name.clone()}</a>
                                                    {format!(" {}", size(e.size as i64))}</li>
                                            }.into_any(),
                                            _ => view! {
                                                <li>{e.name.clone()}{e.link_target.clone().map(|t| format!(" -> {t}"))}</li>
                                            }.into_any(),
                                        }
                                    }).collect_view()}
                                </ul>
                            }.into_any(),
                        }
                    })
                }}
            </Transition>
        </div>
    }
}
