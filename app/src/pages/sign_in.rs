//! The sign-in page: email + password, and "Sign in with SSO" when OIDC is configured.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::{
    api::account::{sign_in_options, SignIn},
    components::{action_error, theme::ThemeToggle, ErrorPanel, Field, FormError, Submit},
    model::ApiError,
};

#[component]
pub fn SignInPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    let error = action_error(action.value());
    let options = Resource::new(|| (), |_| sign_in_options());
    let query = use_query_map();
    // Without JavaScript a failed server action comes back as a query parameter; OIDC errors
    // come back as `sso_error`.
    let sso_error = move || {
        query
            .get()
            .get("sso_error")
            .map(|m| ApiError::new(401, "sso_failed", m))
    };
    view! {
        <div class="flex min-h-screen items-center justify-center p-4">
            <div class="w-full max-w-sm space-y-6 rounded-lg border border-slate-200 bg-white p-8 shadow-sm dark:border-slate-800 dark:bg-slate-900">
                <div class="flex items-center justify-between">
                    <h1 class="text-2xl font-bold">"⚓ Sign in to Berth"</h1>
                    <ThemeToggle />
                </div>
                {move || sso_error().map(|e| view! { <ErrorPanel error=e /> })}
                <ActionForm action=action attr:class="space-y-4" attr:id="sign-in-form">
                    <FormError error=error />
                    <Field label="Email" name="email" kind="email" required=true error=error />
                    <Field label="Password" name="password" kind="password" required=true error=error />
                    <Submit label="Sign in" />
                </ActionForm>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        options
                            .await
                            .ok()
                            .filter(|o| o.sso_enabled)
                            .map(|o| {
                                view! {
                                    <a
                                        id="sso-sign-in"
                                        rel="external"
                                        href="/auth/oidc/start"
                                        class="block w-full rounded-md border border-slate-300 px-4 py-2 text-center text-sm font-medium hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800"
                                    >
                                        "Sign in with " {o.sso_label}
                                    </a>
                                }
                            })
                    })}
                </Suspense>
            </div>
        </div>
    }
}
