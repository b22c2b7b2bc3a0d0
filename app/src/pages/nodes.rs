//! The management console's topology page: nodes by region and zone (drain / activate) and
//! the plans customers choose from.

use leptos::prelude::*;

use crate::{
    api::topology::{list_nodes, list_plans, CreatePlan, SetNodeState},
    components::{action_error, format_time, Card, ErrorPanel, Field, FormError, Portal, Submit},
    model::NodeState,
};

/// Thousandths of a core as cores, e.g. 250 -> "0.25".
pub fn format_cores(millicores: i64) -> String {
    let s = format!("{:.3}", millicores as f64 / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Bytes in binary units (IEC 80000-13): "512 MiB", "4 GiB", "1.5 TiB".
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

#[component]
pub fn AdminNodesPage() -> impl IntoView {
    view! {
        <Portal title="Nodes & plans">
            <NodesCard />
            <PlansCard />
        </Portal>
    }
}

fn state_badge(state: NodeState) -> impl IntoView {
    let class = match state {
        NodeState::Active => "rounded-sm bg-green-100 px-2 py-0.5 text-xs text-green-800",
        NodeState::Draining => "rounded-sm bg-amber-100 px-2 py-0.5 text-xs text-amber-800",
        NodeState::Down => "rounded-sm bg-red-100 px-2 py-0.5 text-xs text-red-800",
    };
    view! { <span class=class>{state.as_str()}</span> }
}

#[component]
fn NodesCard() -> impl IntoView {
    let set_state = ServerAction::<SetNodeState>::new();
    let error = action_error(set_state.value());
    let nodes = Resource::new(move || set_state.version().get(), |_| list_nodes());
    view! {
        <Card heading="Nodes">
            <FormError error=error all=true />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match nodes.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="text-slate-500">"No nodes yet. The local Docker engine registers itself when Berth starts and can reach it."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <table id="nodes" class="w-full text-left text-sm">
                                <thead class="text-slate-500">
                                    <tr><th class="py-2">"Node"</th><th>"Region / zone"</th><th>"CPU allocated / capacity"</th><th>"Memory allocated / capacity"</th><th>"Instances / max"</th><th>"State"</th><th>"Engine"</th><th></th></tr>
                                </thead>
                                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {list.into_iter().map(|n| {
                                        let (next, label) = if n.state == NodeState::Active { ("draining", "Drain") } else { ("active", "Activate") };
                                        view! {
                                            <tr title=n.endpoint.clone()>
                                                <td class="py-2 font-medium">{n.name.clone()}</td>
                                                <td>{format!("{} / {}", n.region, n.availability_zone)}</td>
                                                <td class="cpu">{format!("{} / {} cores", format_cores(n.cpu_allocated_millicores), format_cores(n.cpu_millicores))}</td>
                                                <td class="memory">{format!("{} / {}", format_bytes(n.memory_allocated_bytes), format_bytes(n.memory_bytes))}</td>
                                                <td class="instances">{format!("{} / {}", n.instances, n.max_instances)}</td>
                                                <td>{state_badge(n.state)}</td>
                                                <td class="text-xs text-slate-500">
                                                    {n.engine_version.clone().unwrap_or_default()} " · seen "
                                                    {n.last_seen_at_ms.map(format_time).unwrap_or_else(|| "never".into())}
                                                </td>
                                                <td class="text-right">
                                                    <ActionForm action=set_state>
                                                        <input type="hidden" name="id" value=n.id.to_string() />
                                                        <input type="hidden" name="state" value=next />
                                                        <button type="submit" class="node-state text-sky-700 hover:underline dark:text-sky-400">{label}</button>
                                                    </ActionForm>
                                                </td>
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

#[component]
fn PlansCard() -> impl IntoView {
    let create = ServerAction::<CreatePlan>::new();
    let error = action_error(create.value());
    let plans = Resource::new(move || create.version().get(), |_| list_plans());
    view! {
        <Card heading="Plans">
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match plans.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) => view! {
                            <table id="plans" class="w-full text-left text-sm">
                                <thead class="text-slate-500">
                                    <tr><th class="py-2">"Plan"</th><th>"CPU"</th><th>"Memory"</th><th>"Storage"</th></tr>
                                </thead>
                                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {list.into_iter().map(|p| view! {
                                        <tr>
                                            <td class="py-2 font-medium">{p.name}</td>
                                            <td>{format_cores(p.cpu_millicores)} " cores"</td>
                                            <td>{format_bytes(p.memory_bytes)}</td>
                                            <td>{format_bytes(p.storage_bytes)}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
            <ActionForm action=create attr:class="mt-4 grid gap-3 md:grid-cols-5 md:items-start" attr:id="create-plan-form">
                <Field label="Name" name="name" placeholder="xl" required=true error=error />
                <Field label="CPU cores" name="cpu_cores" placeholder="4" required=true error=error />
                <Field label="Memory (MiB)" name="memory_mib" placeholder="8192" required=true error=error />
                <Field label="Storage (GiB)" name="storage_gib" placeholder="80" required=true error=error />
                <div class="md:pt-6"><Submit label="Create plan" /></div>
            </ActionForm>
            <FormError error=error />
        </Card>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cores_and_binary_sizes() {
        assert_eq!(format_cores(250), "0.25");
        assert_eq!(format_cores(2000), "2");
        assert_eq!(format_bytes(268_435_456), "256 MiB");
        assert_eq!(format_bytes(4 << 30), "4 GiB");
        assert_eq!(format_bytes(1536 << 30), "1.5 TiB");
        assert_eq!(format_bytes(0), "0 B");
    }
}
