//! The caller's account: change password, personal API tokens.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::{
    api::account::{list_tokens, ChangePassword, CreateToken, RevokeToken},
    components::{action_error, format_time, Card, ErrorPanel, Field, FormError, Portal, Submit},
};

#[component]
pub fn AccountPage() -> impl IntoView {
    view! {
        <Portal title="Account">
            <PasswordCard />
            <TokensCard />
        </Portal>
    }
}

#[component]
fn PasswordCard() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let error = action_error(change.value());
    let first = move || use_query_map().get().get("first").is_some();
    view! {
        <Card heading="Password">
            {move || {
                first()
                    .then(|| {
                        view! {
                            <p class="mb-3 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-200">
                                "You signed in with a one-time password. Choose your own password now."
                            </p>
                        }
                    })
            }}
            <ActionForm action=change attr:class="space-y-3">
                <Field label="Current password" name="current_password" kind="password" required=true error=error />
                <Field label="New password (at least 10 characters)" name="new_password" kind="password" required=true error=error />
                <Submit label="Change password" />
            </ActionForm>
            <FormError error=error />
            {move || {
                matches!(change.value().get(), Some(Ok(())))
                    .then(|| view! { <p class="mt-2 text-sm text-green-700">"Password changed."</p> })
            }}
        </Card>
    }
}

#[component]
fn TokensCard() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let error = action_error(create.value());
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_tokens(),
    );
    view! {
        <Card heading="API tokens">
            <p class="mb-3 text-sm text-slate-600 dark:text-slate-400">
                "Tokens act as you in the REST API (" <code>"Authorization: Bearer …"</code> "). The secret is shown once."
            </p>
            <ActionForm action=create attr:class="flex flex-col gap-3 md:flex-row md:items-start">
                <div class="flex-1">
                    <Field label="Name" name="name" placeholder="ci-deploy" required=true error=error />
                </div>
                <div class="w-40">
                    <Field label="Expires in days" name="expires_in_days" placeholder="never" error=error />
                </div>
                <div class="md:pt-6">
                    <Submit label="Create token" />
                </div>
            </ActionForm>
            <FormError error=error />
            {move || {
                create
                    .value()
                    .get()
                    .and_then(|r| r.ok())
                    .map(|t| {
                        view! {
                            <div class="mt-3 rounded-md bg-green-50 p-3 text-sm dark:bg-green-950">
                                <p>"Copy this token now; it will not be shown again:"</p>
                                <code id="new-token" class="break-all font-mono">{t.secret}</code>
                            </div>
                        }
                    })
            }}
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) => {
                            view! {
                                <ul class="mt-4 divide-y divide-slate-200 dark:divide-slate-800">
                                    {list
                                        .into_iter()
                                        .map(|t| {
                                            view! {
                                                <li class="flex items-center justify-between py-2 text-sm">
                                                    <span>
                                                        <strong>{t.name.clone()}</strong> " " <code>{t.prefix.clone()} "…"</code>
                                                        " · created " {format_time(t.created_at_ms)}
                                                        " · expires "
                                                        {t.expires_at_ms.map(format_time).unwrap_or_else(|| "never".into())}
                                                    </span>
                                                    <ActionForm action=revoke>
                                                        <input type="hidden" name="id" value=t.id.to_string() />
                                                        <button type="submit" class="text-red-600 hover:underline">"Revoke"</button>
                                                    </ActionForm>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </Card>
    }
}
