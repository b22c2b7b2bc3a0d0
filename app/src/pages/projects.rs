//! The projects list with its empty state and the "New project" form.

use leptos::prelude::*;

use crate::{
    api::projects::{list_projects, CreateProject},
    components::{action_error, format_time, Card, ErrorPanel, Field, FormError, Portal, Submit},
    model::PROJECT_NAME_MAX,
};

#[component]
pub fn ProjectsPage() -> impl IntoView {
    view! {
        <Portal title="Projects">
            <ProjectList />
        </Portal>
    }
}

#[component]
fn ProjectList() -> impl IntoView {
    let create = ServerAction::<CreateProject>::new();
    let error = action_error(create.value());
    let projects = Resource::new(move || create.version().get(), |_| list_projects());
    let hint = format!(
        "1–{PROJECT_NAME_MAX} characters: a–z, 0–9 and '-'. It becomes part of your apps' hostnames."
    );
    view! {
        <Card heading="New project">
            <ActionForm action=create attr:class="flex flex-col gap-3 md:flex-row md:items-start" attr:id="create-project-form">
                <div class="flex-1">
                    <Field label="Name" name="name" placeholder="my-shop" required=true error=error />
                    <p class="mt-1 text-xs text-slate-500">{hint}</p>
                </div>
                <div class="md:pt-6">
                    <Submit label="Create project" />
                </div>
            </ActionForm>
            <FormError error=error />
        </Card>
        <Card heading="Your projects">
            <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match projects.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => {
                            view! {
                                <div id="projects-empty" class="py-8 text-center text-slate-500">
                                    <p class="text-lg">"No projects yet."</p>
                                    <p class="text-sm">"Create your first project above to start deploying."</p>
                                </div>
                            }
                                .into_any()
                        }
                        Ok(list) => {
                            view! {
                                <ul id="project-list" class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {list
                                        .into_iter()
                                        .map(|p| {
                                            let href = format!("/projects/{}", p.id);
                                            let role = p.my_role.map(|r| r.as_str()).unwrap_or("admin view");
                                            view! {
                                                <li class="flex items-center justify-between py-3">
                                                    <a class="project-link font-medium text-sky-700 hover:underline dark:text-sky-400" href=href>
                                                        {p.name.clone()}
                                                    </a>
                                                    <span class="text-sm text-slate-500">
                                                        {role} " · " {p.member_count} " member(s) · created "
                                                        {format_time(p.created_at_ms)}
                                                    </span>
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
