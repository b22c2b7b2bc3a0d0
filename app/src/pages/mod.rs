//! One module per page of the portal.

mod account;
mod admin;
mod backup_checks;
mod backups;
mod builds;
mod deployment;
mod deployments;
mod domains;
mod metrics;
mod nodes;
mod project;
mod projects;
mod sign_in;
mod usage;

pub use account::AccountPage;
pub use admin::{AdminAuditPage, AdminUsersPage};
pub use deployment::DeploymentPage;
pub use deployments::{ProjectDeployments, StatusBadge};
pub use nodes::AdminNodesPage;
pub use project::ProjectPage;
pub use projects::ProjectsPage;
pub use sign_in::SignInPage;

use leptos::prelude::*;

/// Shown for any path the portal does not know.
#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <div class="mx-auto max-w-md p-12 text-center">
            <h1 class="text-2xl font-semibold">"Page not found"</h1>
            <p class="mt-2 text-slate-600 dark:text-slate-400">"There is nothing at this address."</p>
            <a class="mt-4 inline-block text-sky-600 hover:underline" href="/projects">
                "Back to your projects"
            </a>
        </div>
    }
}
