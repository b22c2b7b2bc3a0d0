//! The management console: users and the audit log (admins only; the server enforces it).

use leptos::prelude::*;

use crate::{
    api::admin::{list_audit_events, list_users, CreateUser},
    components::{action_error, format_time, Card, ErrorPanel, Field, FormError, Portal, Submit},
};

#[component]
pub fn AdminUsersPage() -> impl IntoView {
    view! {
        <Portal title="Users">
            <UsersCard />
        </Portal>
    }
}

#[component]
fn UsersCard() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let error = action_error(create.value());
    let users = Resource::new(move || create.version().get(), |_| list_users());
    view! {
        <Card heading="Users">
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match users.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) => {
                            view! {
                                <table id="users" class="w-full text-left text-sm">
                                    <thead class="text-slate-500">
                                        <tr><th class="py-2">"Email"</th><th>"Name"</th><th>"Role"</th><th>"Created"</th></tr>
                                    </thead>
                                    <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                        {list
                                            .into_iter()
                                            .map(|u| {
                                                view! {
                                                    <tr>
                                                        <td class="py-2">{u.email}</td>
                                                        <td>{u.display_name}</td>
                                                        <td>{u.role.as_str()}</td>
                                                        <td>{format_time(u.created_at_ms)}</td>
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
        </Card>
        <Card heading="New user">
            <ActionForm action=create attr:class="grid gap-3 md:grid-cols-2">
                <Field label="Email" name="email" kind="email" required=true error=error />
                <Field label="Display name" name="display_name" required=true error=error />
                <Field label="Initial password" name="password" kind="password" required=true error=error />
                <label class="block text-sm">
                    <span class="mb-1 block font-medium">"Role"</span>
                    <select name="role" class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 dark:border-slate-700 dark:bg-slate-900">
                        <option value="customer">"customer"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <div>
                    <Submit label="Create user" />
                </div>
            </ActionForm>
            <FormError error=error />
        </Card>
    }
}

#[component]
pub fn AdminAuditPage() -> impl IntoView {
    let events = Resource::new(|| (), |_| list_audit_events());
    view! {
        <Portal title="Audit log">
            <Card>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match events.await {
                            Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                            Ok(list) => {
                                view! {
                                    <table id="audit" class="w-full text-left text-sm">
                                        <thead class="text-slate-500">
                                            <tr><th class="py-2">"When"</th><th>"Who"</th><th>"Action"</th><th>"Target"</th><th>"From"</th></tr>
                                        </thead>
                                        <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                            {list
                                                .into_iter()
                                                .map(|e| {
                                                    view! {
                                                        <tr title=e.detail.clone()>
                                                            <td class="py-2 whitespace-nowrap">{format_time(e.created_at_ms)}</td>
                                                            <td>{e.actor}</td>
                                                            <td><code>{e.action}</code></td>
                                                            <td class="break-all">{e.target}</td>
                                                            <td>{e.client_addr.unwrap_or_default()}</td>
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
            </Card>
        </Portal>
    }
}
