//! One project: overview, members (add/remove), rename, and delete with typed confirmation.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::{
    api::projects::{
        get_project, list_members, AddMember, DeleteProject, RemoveMember, RenameProject,
    },
    components::{action_error, format_time, Card, ErrorPanel, Field, FormError, Portal, Submit},
    model::{MemberRole, ProjectId, ProjectView},
};

#[component]
pub fn ProjectPage() -> impl IntoView {
    view! {
        <Portal title="Project">
            <ProjectDetail />
        </Portal>
    }
}

#[component]
fn ProjectDetail() -> impl IntoView {
    let params = use_params_map();
    let id = move || ProjectId(params.read().get("id").unwrap_or_default());
    let rename = ServerAction::<RenameProject>::new();
    let project = Resource::new(
        move || (id(), rename.version().get()),
        |(id, _)| get_project(id),
    );
    view! {
        <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match project.await {
                    Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                    Ok(p) => view! { <ProjectBody project=p rename=rename /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ProjectBody(project: ProjectView, rename: ServerAction<RenameProject>) -> impl IntoView {
    let can_manage = project.my_role == Some(MemberRole::Owner) || project.my_role.is_none();
    let rename_error = action_error(rename.value());
    let delete = ServerAction::<DeleteProject>::new();
    let delete_error = action_error(delete.value());
    let id = project.id.to_string();
    let name = project.name.clone();
    let title = project.name.clone();
    let created = format_time(project.created_at_ms);
    let my_role = project.my_role.map(|r| r.as_str()).unwrap_or("admin");
    view! {
        <Card>
            <h2 id="project-name" class="text-2xl font-semibold">{title}</h2>
            <p class="text-sm text-slate-500">
                "Created " {created} " · your role: " {my_role}
            </p>
        </Card>
        <super::ProjectDeployments project=project.id.clone() />
        <super::usage::ProjectUsageCard project=project.id.clone() />
        <Members project=project.clone() can_manage=can_manage />
        {can_manage
            .then(|| {
                let id2 = id.clone();
                view! {
                    <Card heading="Rename">
                        <ActionForm action=rename attr:class="flex flex-col gap-3 md:flex-row md:items-start">
                            <input type="hidden" name="id" value=id.clone() />
                            <div class="flex-1">
                                <Field label="New name" name="name" value=name.clone() required=true error=rename_error />
                            </div>
                            <div class="md:pt-6">
                                <Submit label="Rename" />
                            </div>
                        </ActionForm>
                        <FormError error=rename_error />
                    </Card>
                    <Card heading="Delete project">
                        <p class="mb-3 text-sm text-slate-600 dark:text-slate-400">
                            "Deleting a project removes it and its memberships for good. Type the project name to confirm."
                        </p>
                        <ActionForm action=delete attr:class="flex flex-col gap-3 md:flex-row md:items-start">
                            <input type="hidden" name="id" value=id2 />
                            <div class="flex-1">
                                <Field label="Project name" name="confirm_name" required=true error=delete_error />
                            </div>
                            <div class="md:pt-6">
                                <Submit label="Delete project" danger=true />
                            </div>
                        </ActionForm>
                        <FormError error=delete_error />
                    </Card>
                }
            })}
    }
}

#[component]
fn Members(project: ProjectView, can_manage: bool) -> impl IntoView {
    let add = ServerAction::<AddMember>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let add_error = action_error(add.value());
    let remove_error = action_error(remove.value());
    let id = project.id.clone();
    let members = Resource::new(
        move || (id.clone(), add.version().get(), remove.version().get()),
        |(id, _, _)| list_members(id),
    );
    let pid = project.id.to_string();
    view! {
        <Card heading="Members">
            <FormError error=remove_error all=true />
            <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                {move || {
                    let pid = pid.clone();
                    Suspend::new(async move {
                        match members.await {
                            Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                            Ok(list) => {
                                view! {
                                    <table id="members" class="w-full text-left text-sm">
                                        <thead class="text-slate-500">
                                            <tr>
                                                <th class="py-2">"Email"</th>
                                                <th>"Name"</th>
                                                <th>"Role"</th>
                                                <th>"Added"</th>
                                                <th></th>
                                            </tr>
                                        </thead>
                                        <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                            {list
                                                .into_iter()
                                                .map(|m| {
                                                    let pid = pid.clone();
                                                    view! {
                                                        <tr>
                                                            <td class="py-2">{m.email.clone()}</td>
                                                            <td>{m.display_name.clone()}</td>
                                                            <td>{m.role.as_str()}</td>
                                                            <td>{format_time(m.added_at_ms)}</td>
                                                            <td class="text-right">
                                                                {can_manage
                                                                    .then(|| {
                                                                        view! {
                                                                            <ActionForm action=remove>
                                                                                <input type="hidden" name="id" value=pid />
                                                                                <input type="hidden" name="user_id" value=m.user_id.to_string() />
                                                                                <button type="submit" class="text-red-600 hover:underline">
                                                                                    "Remove"
                                                                                </button>
                                                                            </ActionForm>
                                                                        }
                                                                    })}
                                                            </td>
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
                    })
                }}
            </Transition>
            {can_manage
                .then(|| {
                    view! {
                        <ActionForm action=add attr:class="mt-4 flex flex-col gap-3 md:flex-row md:items-start" attr:id="add-member-form">
                            <input type="hidden" name="id" value=project.id.to_string() />
                            <div class="flex-1">
                                <Field label="Add by email" name="email" kind="email" required=true error=add_error />
                            </div>
                            <label class="block text-sm">
                                <span class="mb-1 block font-medium">"Role"</span>
                                <select name="role" class="rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-900">
                                    <option value="member">"member"</option>
                                    <option value="owner">"owner"</option>
                                </select>
                            </label>
                            <div class="md:pt-6">
                                <Submit label="Add member" />
                            </div>
                        </ActionForm>
                        <FormError error=add_error />
                    }
                })}
        </Card>
    }
}
