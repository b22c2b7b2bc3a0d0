//! Berth's portal: the Leptos application (pages, components), the server functions it calls,
//! and the types shared between the browser and the server (`model`).
//!
//! With the `ssr` feature the crate also defines the service traits (`services`) that the
//! `server` crate implements; it never depends on a database or container engine itself.
#![recursion_limit = "256"]

pub mod api;
pub mod components;
pub mod model;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod services;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Redirect, Route, Router, Routes},
    path, SsrMode,
};

/// The generated stylesheet (Tailwind utilities used in `src/` plus `style/*.css`), served at
/// [`STYLESHEET_PATH`].
#[cfg(feature = "ssr")]
pub const STYLESHEET: &str = include_str!(concat!(env!("OUT_DIR"), "/berth.css"));

/// Where the server serves [`STYLESHEET`].
pub const STYLESHEET_PATH: &str = "/berth.css";

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <script inner_html=components::theme::THEME_BOOT_SCRIPT></script>
                <link rel="stylesheet" href=STYLESHEET_PATH />
                <link rel="icon" href="/public/favicon.svg" type="image/svg+xml" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 antialiased dark:bg-slate-950 dark:text-slate-100">
                <App />
            </body>
        </html>
    }
}

/// The portal's routes. Every page renders completely on the server (`SsrMode::Async`), so
/// pages read without JavaScript and redirects are real HTTP redirects.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Berth" />
        <Router>
            <Routes fallback=|| view! { <pages::NotFoundPage /> }>
                <Route path=path!("/") view=|| view! { <Redirect path="/projects" /> } />
                <Route path=path!("/sign-in") view=pages::SignInPage ssr=SsrMode::Async />
                <Route path=path!("/projects") view=pages::ProjectsPage ssr=SsrMode::Async />
                <Route path=path!("/projects/:id") view=pages::ProjectPage ssr=SsrMode::Async />
                <Route path=path!("/deployments/:id") view=pages::DeploymentPage ssr=SsrMode::Async />
                <Route path=path!("/account") view=pages::AccountPage ssr=SsrMode::Async />
                <Route path=path!("/admin") view=pages::AdminUsersPage ssr=SsrMode::Async />
                <Route path=path!("/admin/audit") view=pages::AdminAuditPage ssr=SsrMode::Async />
                <Route path=path!("/admin/nodes") view=pages::AdminNodesPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}
