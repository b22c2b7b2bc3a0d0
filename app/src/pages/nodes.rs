//! The management console's topology page: nodes by region and zone (drain / activate, add a
//! remote engine), each region's placement strategy, and the plans customers choose from.

use leptos::prelude::*;

use crate::{
    api::backups::{backup_destination, RemoveBackupDestination, SetBackupDestination},
    api::topology::{
        list_nodes, list_plans, list_regions, ConnectNode, CreatePlan, EditPlan, SetNodeState,
        SetPlacementStrategy,
    },
    components::{
        action_error, format_time, Card, ErrorPanel, Field, FormError, Portal, Submit, TextArea,
    },
    model::{BackupDestinationView, NodeState, PlacementStrategy},
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
            <RegionsCard />
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
    let add = ServerAction::<ConnectNode>::new();
    let error = action_error(set_state.value());
    let add_error = action_error(add.value());
    let nodes = Resource::new(
        move || (set_state.version().get(), add.version().get()),
        |_| list_nodes(),
    );
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
                                    <tr><th class="py-2">"Node"</th><th>"Region / zone"</th><th>"CPU allocated / capacity, in use"</th><th>"Memory allocated / capacity, in use"</th><th>"Instances / max"</th><th>"State"</th><th>"Engine"</th><th></th></tr>
                                </thead>
                                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {list.into_iter().map(|n| {
                                        let (next, label) = if n.state == NodeState::Active { ("draining", "Drain") } else { ("active", "Activate") };
                                        view! {
                                            <tr title=n.endpoint.clone()>
                                                <td class="py-2">
                                                    <span class="font-medium">{n.name.clone()}</span>
                                                    {n.advertise_address.clone().map(|a| view! {
                                                        <span class="advertise-address ml-1 font-mono text-xs text-slate-500">{a}</span>
                                                    })}
                                                    <ul class="workloads text-xs text-slate-500">
                                                        {n.workloads.iter().map(|w| view! {
                                                            <li>
                                                                <a class="hover:underline" href=format!("/deployments/{}", w.deployment_id)>
                                                                    {format!("{}/{}", w.project_name, w.deployment_name)}
                                                                </a>
                                                                {format!(" ×{}", w.instances)}
                                                            </li>
                                                        }).collect_view()}
                                                    </ul>
                                                </td>
                                                <td>{format!("{} / {}", n.region, n.availability_zone)}</td>
                                                <td class="cpu">
                                                    {format!("{} / {} cores", format_cores(n.cpu_allocated_millicores), format_cores(n.cpu_millicores))}
                                                    {n.cpu_used_millicores.map(|m| view! {
                                                        <span class="cpu-used block text-xs text-slate-500">{format!("{} in use", format_cores(m))}</span>
                                                    })}
                                                </td>
                                                <td class="memory">
                                                    {format!("{} / {}", format_bytes(n.memory_allocated_bytes), format_bytes(n.memory_bytes))}
                                                    {n.memory_used_bytes.map(|b| view! {
                                                        <span class="memory-used block text-xs text-slate-500">{format!("{} in use", format_bytes(b))}</span>
                                                    })}
                                                </td>
                                                <td class="instances">{format!("{} / {}", n.instances, n.max_instances)}</td>
                                                <td>{state_badge(n.state)}</td>
                                                <td class="text-xs text-slate-500">
                                                    {n.engine_version.clone().unwrap_or_default()} " · seen "
                                                    {n.last_seen_at_ms.map(format_time).unwrap_or_else(|| "never".into())}
                                                    {n.last_error.clone().map(|e| view! {
                                                        <span class="node-error block text-red-600 dark:text-red-400">"Unreachable: " {e}</span>
                                                    })}
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
            <details class="mt-4" open=move || add_error.get().is_some()>
                <summary class="cursor-pointer text-sm font-medium text-sky-700 dark:text-sky-400">"Add a node"</summary>
                <p class="mt-2 text-sm text-slate-500">
                    "A remote Docker engine: " <code>"tcp://host:2376"</code> " with TLS client certificates (the engine runs with "
                    <code>"--tlsverify"</code> "), or " <code>"ssh://user@host"</code>
                    " (the node needs the docker CLI; the key is optional when Berth's own ssh configuration reaches the host). Berth connects first and reads the node's CPUs and memory; nothing is saved if it cannot."
                </p>
                <ActionForm action=add attr:class="mt-3 grid gap-3 md:grid-cols-2" attr:id="add-node-form">
                    <Field label="Name" name="name" placeholder="edge-1" required=true error=add_error />
                    <Field label="Endpoint" name="endpoint" placeholder="tcp://10.0.0.5:2376" required=true error=add_error />
                    <Field label="Region" name="region" value="default" required=true error=add_error />
                    <Field label="Availability zone" name="availability_zone" value="default" required=true error=add_error />
                    <Field label="Max instances" name="max_instances" placeholder="100" error=add_error />
                    <Field label="Advertise address (private IP the ingress reaches the node at)" name="advertise_address" placeholder="10.0.0.5" error=add_error />
                    <TextArea label="CA certificate (tcp://)" name="tls_ca_pem" placeholder="-----BEGIN CERTIFICATE-----" error=add_error />
                    <TextArea label="Client certificate (tcp://)" name="tls_cert_pem" placeholder="-----BEGIN CERTIFICATE-----" error=add_error />
                    <TextArea label="Private key" name="private_key_pem" placeholder="-----BEGIN PRIVATE KEY-----"
                        hint="The client certificate's key (tcp://) or an SSH identity (ssh://). Stored encrypted; never shown again." error=add_error />
                    <div class="md:pt-6"><Submit label="Connect and add" /></div>
                </ActionForm>
                <FormError error=add_error />
            </details>
        </Card>
    }
}

#[component]
fn RegionsCard() -> impl IntoView {
    let set = ServerAction::<SetPlacementStrategy>::new();
    let error = action_error(set.value());
    let regions = Resource::new(move || set.version().get(), |_| list_regions());
    let strategies = [
        PlacementStrategy::LeastLoaded,
        PlacementStrategy::RoundRobin,
        PlacementStrategy::ResourceBased,
    ];
    view! {
        <Card heading="Regions">
            <p class="mb-3 text-sm text-slate-500">
                "How each region picks nodes: least-loaded (fewest instances), round-robin (in turn) or resource-based (most CPU and memory left after the plan)."
            </p>
            <FormError error=error all=true />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match regions.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) => view! {
                            <ul id="regions" class="divide-y divide-slate-200 text-sm dark:divide-slate-800">
                                {list.into_iter().map(|r| {
                                    let region_name = r.name.clone();
                                    view! {
                                    <li class="py-2">
                                    <div class="flex items-center justify-between">
                                        <span class="font-medium">{r.name.clone()}</span>
                                        <ActionForm action=set attr:class="flex items-center gap-2">
                                            <input type="hidden" name="region" value=r.name.clone() />
                                            <select name="strategy" class="region-strategy rounded-md border border-slate-300 bg-white px-2 py-1 dark:border-slate-700 dark:bg-slate-900">
                                                {strategies.iter().map(|s| view! {
                                                    <option value=s.as_str() selected=*s == r.placement_strategy>{s.as_str()}</option>
                                                }).collect_view()}
                                            </select>
                                            <button type="submit" class="text-sky-700 hover:underline dark:text-sky-400">"Save"</button>
                                        </ActionForm>
                                    </div>
                                    <BackupDestinationForm region=region_name />
                                    </li>
                                }}).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </Card>
    }
}

/// A region's backup destination: where its projects' new backup repositories are made (a
/// local directory, or an S3-compatible bucket checked before it is saved).
#[component]
fn BackupDestinationForm(region: String) -> impl IntoView {
    let set = ServerAction::<SetBackupDestination>::new();
    let remove = ServerAction::<RemoveBackupDestination>::new();
    let error = action_error(set.value());
    let current = {
        let region = region.clone();
        Resource::new(
            move || (set.version().get(), remove.version().get()),
            move |_| backup_destination(region.clone()),
        )
    };
    let shown = move |d: BackupDestinationView| match d.kind.as_str() {
        "s3" => format!(
            "S3: {}/{}/{} (key {})",
            d.endpoint.unwrap_or_default(),
            d.bucket.unwrap_or_default(),
            d.prefix.unwrap_or_default(),
            d.access_key_id.unwrap_or_default()
        ),
        _ => "a local directory under the data directory".to_owned(),
    };
    let remove_region = region.clone();
    view! {
        <div class="backup-destination mt-1 text-slate-500">
            "New backup repositories: "
            <Transition fallback=|| ()>
                {move || {
                let region = remove_region.clone();
                Suspend::new(async move {
                    match current.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(d) => {
                            let is_s3 = d.kind == "s3";
                            view! {
                                <span class="destination">{shown(d)}</span>
                                {is_s3.then(|| view! {
                                    <ActionForm action=remove attr:class="inline ml-2">
                                        <input type="hidden" name="region" value=region />
                                        <button type="submit" class="text-sky-700 hover:underline dark:text-sky-400">"Use local"</button>
                                    </ActionForm>
                                })}
                            }.into_any()
                        }
                    }
                })
                }}
            </Transition>
            <details class="mt-2" open=move || error.get().is_some()>
                <summary class="cursor-pointer text-sky-700 dark:text-sky-400">"Keep them in S3-compatible storage"</summary>
                <p class="mt-2">"Berth lists the bucket once with these keys and saves nothing if it cannot. Existing repositories stay where they are."</p>
                <ActionForm action=set attr:class="mt-2 grid gap-3 md:grid-cols-2">
                    <input type="hidden" name="region" value=region.clone() />
                    <Field label="Endpoint" name="endpoint" placeholder="https://s3.eu-west-1.amazonaws.com" required=true error=error />
                    <Field label="Bucket" name="bucket" placeholder="berth-backups" required=true error=error />
                    <Field label="Signing region" name="s3_region" value="us-east-1" error=error />
                    <Field label="Key prefix" name="prefix" placeholder="berth" error=error />
                    <Field label="Access key id" name="access_key_id" required=true error=error />
                    <Field label="Secret access key" name="secret_access_key" kind="password" required=true error=error />
                    <div><Submit label="Check and save" /></div>
                </ActionForm>
                <FormError error=error all=true />
            </details>
        </div>
    }
}

#[component]
fn PlansCard() -> impl IntoView {
    let create = ServerAction::<CreatePlan>::new();
    let edit = ServerAction::<EditPlan>::new();
    let error = action_error(create.value());
    let edit_error = action_error(edit.value());
    let plans = Resource::new(
        move || (create.version().get(), edit.version().get()),
        |_| list_plans(),
    );
    let input = "w-full rounded-md border border-slate-300 bg-white px-2 py-1 dark:border-slate-700 dark:bg-slate-900";
    view! {
        <Card heading="Plans">
            <p class="mb-3 text-sm text-slate-500">
                "A changed plan applies to instances started from then on; running instances keep their limits until their next release."
            </p>
            <FormError error=edit_error all=true />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match plans.await {
                        Err(e) => view! { <ErrorPanel error=e /> }.into_any(),
                        Ok(list) => view! {
                            <table id="plans" class="w-full text-left text-sm">
                                <thead class="text-slate-500">
                                    <tr><th class="py-2">"Plan"</th><th>"CPU cores"</th><th>"Memory (MiB)"</th><th>"Storage (GiB)"</th><th></th></tr>
                                </thead>
                                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {list.into_iter().map(|p| {
                                        let form = format!("plan-{}", p.id);
                                        view! {
                                            <tr class="plan" title=format!("{} cores, {}, {}", format_cores(p.cpu_millicores), format_bytes(p.memory_bytes), format_bytes(p.storage_bytes))>
                                                <td class="py-2 pr-2"><input form=form.clone() name="name" value=p.name.clone() class=input required /></td>
                                                <td class="pr-2"><input form=form.clone() name="cpu_cores" value=format_cores(p.cpu_millicores) class=input required /></td>
                                                <td class="pr-2"><input form=form.clone() name="memory_mib" value=(p.memory_bytes / 1_048_576).to_string() class=input required /></td>
                                                <td class="pr-2"><input form=form.clone() name="storage_gib" value=(p.storage_bytes / 1_073_741_824).to_string() class=input required /></td>
                                                <td class="text-right">
                                                    <ActionForm action=edit attr:id=form>
                                                        <input type="hidden" name="id" value=p.id.to_string() />
                                                        <button type="submit" class="save-plan text-sky-700 hover:underline dark:text-sky-400">"Save"</button>
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
