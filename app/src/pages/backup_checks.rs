//! The repository part of a deployment's "Backups" card: checks of the project's repository
//! (restic's `check` reading a share of the data, optionally with a restore drill), "Check
//! now", whether scheduled checks include a drill, and how to open the repository with stock
//! `restic`.

use std::time::Duration;

use leptos::prelude::*;

use crate::{
    api::backups::{
        list_backup_checks, load_backup_repository, RevealBackupRepository, SetScheduledDrill,
        StartBackupCheck,
    },
    components::{action_error, format_time, ticker, ErrorPanel, FormError},
    model::{human_bytes, BackupRepositoryView, BackupStatus},
};

fn check_status(s: BackupStatus) -> (&'static str, &'static str) {
    match s {
        BackupStatus::Succeeded => (
            "ok",
            "rounded-sm bg-green-100 px-2 py-0.5 text-xs text-green-800",
        ),
        BackupStatus::Failed => (
            "damaged",
            "rounded-sm bg-red-100 px-2 py-0.5 text-xs text-red-800",
        ),
        BackupStatus::Queued => (
            "queued",
            "rounded-sm bg-sky-100 px-2 py-0.5 text-xs text-sky-800",
        ),
        BackupStatus::Running => (
            "running",
            "rounded-sm bg-sky-100 px-2 py-0.5 text-xs text-sky-800",
        ),
    }
}

/// The shell commands that open the revealed repository with stock restic.
fn restic_command(r: &BackupRepositoryView) -> String {
    let password = r.password.clone().unwrap_or_default();
    match (&r.access_key_id, &r.secret_access_key) {
        (Some(key), Some(secret)) => format!(
            "AWS_ACCESS_KEY_ID='{key}' AWS_SECRET_ACCESS_KEY='{secret}' RESTIC_PASSWORD='{password}' restic -r {} snapshots",
            r.location
        ),
        _ => format!("RESTIC_PASSWORD='{password}' restic -r {} snapshots", r.location),
    }
}

#[component]
pub fn RepositoryPanel(id: String) -> impl IntoView {
    let start = ServerAction::<StartBackupCheck>::new();
    let drill = ServerAction::<SetScheduledDrill>::new();
    let reveal = ServerAction::<RevealBackupRepository>::new();
    let start_error = action_error(start.value());
    let drill_error = action_error(drill.value());
    let reveal_error = action_error(reveal.value());
    let tick = ticker(Duration::from_secs(2));
    let cid = id.clone();
    let checks = Resource::new(
        move || (cid.clone(), tick.get(), start.version().get()),
        |(id, ..)| list_backup_checks(id),
    );
    // There is no repository before the first backup: look again every tick until there is
    // one, then only after a change (so an unsaved tick of the drill box is never reset).
    let have_repository = RwSignal::new(false);
    let rid = id.clone();
    let repository = Resource::new(
        move || {
            let waiting = (!have_repository.get()).then(|| tick.get());
            (rid.clone(), drill.version().get(), waiting)
        },
        |(id, ..)| load_backup_repository(id),
    );
    Effect::new(move |_| {
        if let Some(Ok(_)) = repository.get() {
            have_repository.set(true);
        }
    });
    let (start_id, reveal_id) = (id.clone(), id.clone());
    view! {
        <h3 class="mt-4 text-sm font-medium">"Repository checks"</h3>
        <p class="text-sm text-slate-500">
            "A check reads the project's repository as restic does and verifies a share of its data; a restore drill also restores each deployment's newest backup into a scratch directory and compares it."
        </p>
        <Transition fallback=|| ()>
            {move || {
                let drill_id = id.clone();
                Suspend::new(async move {
                    match repository.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(r) => view! {
                            <p id="backup-repository-info" class="text-sm">
                                {format!("{} repository · next scheduled check {}", r.kind, format_time(r.next_check_at_ms))}
                            </p>
                            <ActionForm action=drill attr:id="scheduled-drill-form" attr:class="flex items-center gap-2 text-sm">
                                <input type="hidden" name="id" value=drill_id />
                                <label><input type="checkbox" name="restore_drill" value="on" checked=r.restore_drill />" scheduled checks include a restore drill"</label>
                                <button type="submit" class="text-sky-700 hover:underline dark:text-sky-400">"Save"</button>
                            </ActionForm>
                        }.into_any(),
                    }
                })
            }}
        </Transition>
        <FormError error=drill_error all=true />
        <ActionForm action=start attr:id="check-now-form" attr:class="mt-2 flex items-center gap-3 text-sm">
            <input type="hidden" name="id" value=start_id />
            <label><input type="checkbox" name="restore_drill" value="on" />" with a restore drill"</label>
            <button type="submit" class="rounded-md border border-slate-300 px-3 py-1 hover:bg-slate-50 dark:border-slate-700 dark:hover:bg-slate-800">"Check now"</button>
        </ActionForm>
        <FormError error=start_error all=true />
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match checks.await {
                    Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="text-sm text-slate-500">"Not checked yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <ul id="backup-checks" class="mt-2 text-sm">
                            {list.into_iter().take(10).map(|c| {
                                let (text, class) = check_status(c.status);
                                let drill = if c.restore_drill {
                                    format!(" · drill: {} files, {}", c.drill_files, human_bytes(u64::try_from(c.drill_bytes).unwrap_or(0)))
                                } else {
                                    String::new()
                                };
                                view! {
                                    <li class="backup-check py-1">
                                        <span class=format!("check-status {class}")>{text}</span>
                                        {format!(" {} · {} · {} snapshot(s), {}% of the data read{drill}", c.trigger, format_time(c.created_at_ms), c.snapshots, c.read_data_percent)}
                                        {(!c.findings.is_empty()).then(|| view! { <span class="check-findings block whitespace-pre-wrap text-xs text-red-700 dark:text-red-400">{c.findings.clone()}</span> })}
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                }
            })}
        </Transition>

        <h3 class="mt-4 text-sm font-medium">"Read it with restic"</h3>
        <ActionForm action=reveal attr:id="reveal-repository-form">
            <input type="hidden" name="id" value=reveal_id />
            <button type="submit" class="text-sm text-sky-700 hover:underline dark:text-sky-400">"Show the repository and its password (project owners)"</button>
        </ActionForm>
        <FormError error=reveal_error all=true />
        {move || reveal.value().get().and_then(Result::ok).map(|r| view! {
            <div id="backup-repository" class="mt-2 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm dark:bg-amber-950">
                <p>{if r.kind == "s3" { "From any host that reaches the bucket: " } else { "On the Berth host: " }}</p>
                <code class="block break-all font-mono text-xs">{restic_command(&r)}</code>
            </div>
        })}
    }
}
