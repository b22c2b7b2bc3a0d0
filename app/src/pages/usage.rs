//! The project page's "Usage" card: each deployment's resource use over the last 30 days
//! from the hourly usage records (what billing reads).

use leptos::prelude::*;

use crate::{
    api::projects::get_project_usage,
    components::{
        chart::{format_value, Unit},
        Card, ErrorPanel,
    },
    model::{ProjectId, UsageFigures},
};

/// Core-hours with two decimals.
pub fn core_hours(u: &UsageFigures) -> String {
    format!("{:.2}", u.cpu_seconds / 3600.0)
}

/// GiB-hours with two decimals.
pub fn gib_hours(u: &UsageFigures) -> String {
    format!("{:.2}", u.memory_byte_hours / f64::from(1u32 << 30))
}

#[component]
pub fn ProjectUsageCard(project: ProjectId) -> impl IntoView {
    let usage = Resource::new(move || project.to_string(), get_project_usage);
    let cell = "px-2 py-1 text-right tabular-nums";
    view! {
        <Card heading="Usage (last 30 days)">
            <Transition fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match usage.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(u) if u.deployments.is_empty() => view! {
                            <p id="usage-empty" class="text-sm text-slate-500">
                                "No usage recorded yet: hours fill as minutes of running instances are written."
                            </p>
                        }.into_any(),
                        Ok(u) => view! {
                            <table id="usage" class="w-full text-sm">
                                <thead class="text-slate-500">
                                    <tr>
                                        <th class="px-2 py-1 text-left">"Deployment"</th>
                                        <th class=cell>"Hours"</th>
                                        <th class=cell>"CPU (core-hours)"</th>
                                        <th class=cell>"Memory (GiB-hours)"</th>
                                        <th class=cell>"Network in"</th>
                                        <th class=cell>"Network out"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {u.deployments.into_iter().map(|d| {
                                        let name = if d.name.is_empty() {
                                            format!("{} (deleted)", d.deployment_id)
                                        } else {
                                            d.name.clone()
                                        };
                                        view! {
                                            <tr class="border-t border-slate-200 dark:border-slate-700" data-deployment=d.deployment_id.to_string()>
                                                <td class="px-2 py-1">{name}</td>
                                                <td class=cell>{d.hours}</td>
                                                <td class=cell>{core_hours(&d.usage)}</td>
                                                <td class=cell>{gib_hours(&d.usage)}</td>
                                                <td class=cell>{format_value(Unit::Bytes, d.usage.net_rx_bytes as f64)}</td>
                                                <td class=cell>{format_value(Unit::Bytes, d.usage.net_tx_bytes as f64)}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </Card>
    }
}
