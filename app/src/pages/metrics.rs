//! A deployment's live metrics: CPU, memory (with the limit), network and disk charts fed
//! by the socket `/ws/deployments/{id}/metrics` (the last 15 minutes first, then a sample per
//! instance and second), updating without a reload.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::{
    components::{
        chart::{format_value, ChartData, LineChart, Series, Unit, PALETTE},
        Card, LiveSocket,
    },
    model::{InstanceId, MetricsFrame, MetricsSample},
};

/// History kept in the page, ms (as much as the server's window).
const KEPT_MS: i64 = 15 * 60 * 1000;

/// The four charts of `samples` (of one deployment, oldest first): CPU and memory one line
/// per instance, network and disk the sums over instances per second.
pub fn charts(samples: &[MetricsSample]) -> [ChartData; 4] {
    let mut instances: Vec<&InstanceId> = Vec::new();
    for s in samples {
        if !instances.contains(&&s.instance_id) {
            instances.push(&s.instance_id);
        }
    }
    let per_instance = |value: fn(&MetricsSample) -> f64| {
        instances
            .iter()
            .enumerate()
            .map(|(i, id)| Series {
                label: instance_label(id),
                class: PALETTE[i % PALETTE.len()],
                points: samples
                    .iter()
                    .filter(|s| &&s.instance_id == id)
                    .map(|s| (s.at_ms, value(s)))
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let summed = |labels: [&str; 2], values: fn(&MetricsSample) -> (f64, f64)| {
        let mut seconds: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for s in samples {
            let (a, b) = values(s);
            let e = seconds.entry(s.at_ms.div_euclid(1000) * 1000).or_default();
            e.0 += a;
            e.1 += b;
        }
        [0, 1]
            .map(|i| Series {
                label: labels[i].to_owned(),
                class: PALETTE[i],
                points: seconds
                    .iter()
                    .map(|(t, v)| (*t, if i == 0 { v.0 } else { v.1 }))
                    .collect(),
            })
            .to_vec()
    };
    let limit = samples
        .last()
        .map(|s| s.memory_limit_bytes as f64)
        .filter(|l| *l > 0.0);
    [
        ChartData {
            series: per_instance(|s| s.cpu_percent),
            limit: None,
        },
        ChartData {
            series: per_instance(|s| s.memory_bytes as f64),
            limit: limit.map(|l| (format!("limit {}", format_value(Unit::Bytes, l)), l)),
        },
        ChartData {
            series: summed(["received", "sent"], |s| {
                (s.net_rx_bytes_per_s, s.net_tx_bytes_per_s)
            }),
            limit: None,
        },
        ChartData {
            series: summed(["read", "written"], |s| {
                (s.block_read_bytes_per_s, s.block_write_bytes_per_s)
            }),
            limit: None,
        },
    ]
}

/// A short name for an instance: the last 6 characters of its id (the random part).
fn instance_label(id: &InstanceId) -> String {
    let chars: Vec<char> = id.0.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(6)..].iter().collect();
    format!("…{tail}")
}

/// Applies one socket frame to the samples kept in the page.
pub fn apply(samples: &mut Vec<MetricsSample>, frame: MetricsFrame) {
    match frame {
        MetricsFrame::Window { samples: window } => *samples = window,
        MetricsFrame::Sample { sample } => {
            let newest = sample.at_ms;
            samples.push(sample);
            samples.retain(|s| s.at_ms > newest - KEPT_MS);
        }
        MetricsFrame::Skipped { .. } => {}
    }
}

/// The "Metrics" card of the deployment page.
#[component]
pub fn LiveMetrics(id: String) -> impl IntoView {
    let samples = RwSignal::new(Vec::<MetricsSample>::new());
    let state = RwSignal::new("Connecting…".to_owned());
    #[cfg(feature = "hydrate")]
    let socket = StoredValue::new_local(None::<LiveSocket>);
    #[cfg(not(feature = "hydrate"))]
    let socket = StoredValue::new(None::<LiveSocket>);
    let path = format!("/ws/deployments/{id}/metrics");
    // Effects run in the browser only: the socket opens after hydration.
    Effect::new(move |_| {
        socket.set_value(LiveSocket::open(
            &path,
            move |text| {
                if let Ok(frame) = serde_json::from_str::<MetricsFrame>(&text) {
                    samples.update(|v| apply(v, frame));
                    state.set("Live".to_owned());
                }
            },
            move |code| {
                state.set(match code {
                    4404 => "The deployment is gone or no longer yours.".to_owned(),
                    _ => format!("The metrics stream was cut ({code}). Reload to resume."),
                })
            },
        ));
    });
    on_cleanup(move || socket.set_value(None));
    let data = Memo::new(move |_| samples.with(|s| charts(s)));
    let chart = move |i: usize| Signal::derive(move || data.with(|c| c[i].clone()));
    view! {
        <Card heading="Metrics">
            <p id="metrics-state" class="mb-2 text-sm text-slate-600 dark:text-slate-400">{move || state.get()}</p>
            <div class="grid gap-4 md:grid-cols-2">
                <LineChart id="chart-cpu" title="CPU (% of one core)" unit=Unit::Percent data=chart(0) />
                <LineChart id="chart-memory" title="Memory" unit=Unit::Bytes data=chart(1) />
                <LineChart id="chart-network" title="Network" unit=Unit::BytesPerSecond data=chart(2) />
                <LineChart id="chart-disk" title="Disk" unit=Unit::BytesPerSecond data=chart(3) />
            </div>
        </Card>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeploymentId;

    fn sample(instance: &str, at_ms: i64, cpu: f64, rx: f64) -> MetricsSample {
        MetricsSample {
            cpu_percent: cpu,
            memory_bytes: 10,
            memory_limit_bytes: 1 << 20,
            net_rx_bytes_per_s: rx,
            ..MetricsSample::idle(InstanceId(instance.into()), DeploymentId("d".into()), at_ms)
        }
    }

    #[test]
    fn cpu_per_instance_and_network_summed_per_second() {
        let samples = [
            sample("instance-aaaaaa", 1_000, 10.0, 100.0),
            sample("instance-bbbbbb", 1_400, 30.0, 50.0),
            sample("instance-aaaaaa", 2_000, 20.0, 1.0),
        ];
        let [cpu, memory, network, disk] = charts(&samples);
        assert_eq!(cpu.series.len(), 2);
        assert_eq!(cpu.series[0].label, "…aaaaaa");
        assert_eq!(cpu.series[0].points, vec![(1_000, 10.0), (2_000, 20.0)]);
        assert_eq!(cpu.series[1].points, vec![(1_400, 30.0)]);
        assert_eq!(
            memory.limit,
            Some(("limit 1.0 MiB".to_owned(), 1_048_576.0))
        );
        assert_eq!(network.series[0].points, vec![(1_000, 150.0), (2_000, 1.0)]);
        assert_eq!(network.series[1].label, "sent");
        assert_eq!(disk.series[0].label, "read");
    }

    #[test]
    fn frames_replace_then_extend_and_age_out() {
        let mut kept = Vec::new();
        apply(
            &mut kept,
            MetricsFrame::Window {
                samples: vec![sample("a", 0, 1.0, 0.0), sample("a", 1_000, 1.0, 0.0)],
            },
        );
        assert_eq!(kept.len(), 2);
        apply(&mut kept, MetricsFrame::Skipped { missed: 3 });
        apply(
            &mut kept,
            MetricsFrame::Sample {
                sample: sample("a", KEPT_MS + 500, 1.0, 0.0),
            },
        );
        assert_eq!(
            kept.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            vec![1_000, KEPT_MS + 500]
        );
    }
}
