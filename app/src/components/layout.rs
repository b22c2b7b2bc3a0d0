//! The signed-in portal frame: sidebar, header with the user menu and theme toggle.

use leptos::prelude::*;
use leptos_router::components::{Redirect, A};

use super::{theme::ThemeToggle, ErrorPanel};
use crate::{
    api::account::{current_user, SignOut},
    model::{UserRole, UserView},
};

/// Renders `children` inside the portal frame when someone is signed in; otherwise redirects
/// to the sign-in page.
#[component]
pub fn Portal(title: &'static str, children: ChildrenFn) -> impl IntoView {
    let user = Resource::new(|| (), |_| current_user());
    view! {
        <Suspense fallback=|| view! { <p class="p-8 text-slate-500">"Loading…"</p> }>
            {move || {
                let children = children.clone();
                Suspend::new(async move {
                    match user.await {
                        Ok(Some(user)) => {
                            view! {
                                <Frame user=user title=title>
                                    {children()}
                                </Frame>
                            }
                                .into_any()
                        }
                        Ok(None) => view! { <Redirect path="/sign-in" /> }.into_any(),
                        Err(error) => {
                            view! {
                                <div class="p-8">
                                    <ErrorPanel error=error />
                                </div>
                            }
                                .into_any()
                        }
                    }
                })
            }}
        </Suspense>
    }
}

fn nav_link(href: &'static str, label: &'static str) -> impl IntoView {
    view! {
        <A
            href=href
            attr:class="block rounded-md px-3 py-2 text-sm text-slate-700 hover:bg-slate-200 aria-[current=page]:bg-slate-200 aria-[current=page]:font-semibold dark:text-slate-300 dark:hover:bg-slate-800 dark:aria-[current=page]:bg-slate-800"
        >
            {label}
        </A>
    }
}

#[component]
fn Frame(user: UserView, title: &'static str, children: Children) -> impl IntoView {
    let sign_out = ServerAction::<SignOut>::new();
    let is_admin = user.role == UserRole::Admin;
    view! {
        <div class="flex min-h-screen flex-col md:flex-row">
            <aside class="border-b border-slate-200 bg-white md:w-56 md:border-r md:border-b-0 dark:border-slate-800 dark:bg-slate-900">
                <div class="px-4 py-4 text-lg font-bold tracking-tight">
                    <a href="/projects">"⚓ Berth"</a>
                </div>
                <nav class="flex gap-1 px-2 pb-2 md:flex-col">
                    {nav_link("/projects", "Projects")}
                    {nav_link("/account", "Account")}
                    {is_admin.then(|| nav_link("/admin", "Users"))}
                    {is_admin.then(|| nav_link("/admin/nodes", "Nodes & plans"))}
                    {is_admin.then(|| nav_link("/admin/audit", "Audit log"))}
                </nav>
            </aside>
            <div class="flex-1">
                <header class="flex items-center justify-between gap-4 border-b border-slate-200 bg-white px-6 py-3 dark:border-slate-800 dark:bg-slate-900">
                    <h1 class="text-xl font-semibold">{title}</h1>
                    <div class="flex items-center gap-3">
                        <ThemeToggle />
                        <span id="user-menu" class="text-sm text-slate-600 dark:text-slate-400">
                            {user.email.clone()}
                            {is_admin.then(|| view! { <span class="ml-1 rounded-sm bg-amber-100 px-1 text-xs text-amber-800">"admin"</span> })}
                        </span>
                        <ActionForm action=sign_out>
                            <button
                                type="submit"
                                id="sign-out"
                                class="rounded-md px-2 py-1 text-sm text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800"
                            >
                                "Sign out"
                            </button>
                        </ActionForm>
                    </div>
                </header>
                <main class="mx-auto max-w-5xl space-y-6 p-6">{children()}</main>
            </div>
        </div>
    }
}

/// A white card with an optional heading.
#[component]
pub fn Card(#[prop(optional)] heading: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            {(!heading.is_empty()).then(|| view! { <h2 class="mb-4 text-lg font-semibold">{heading}</h2> })}
            {children()}
        </section>
    }
}
