//! A deployment's metrics: CPU, memory (with the limit), network and disk charts, either
//! live, fed by the socket `/ws/deployments/{id}/metrics` (the last 15 minutes first, then a
//! sample per instance and second) and updating without a reload, or over the last hour,
//! day or week from the minute rollups.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::{
    api::deployments::deployment_metrics_history,
    components::{
        chart::{format_value, ChartData, LineChart, Series, Unit, PALETTE},
        Card, LiveSocket,
    },
    model::{HistoryRange, InstanceId, MetricsFrame, MetricsHistory, MetricsSample},
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

/// The four charts of a history: CPU and memory as mean and peak (instances added up, with
/// the memory limit), network and disk as rates.
pub fn history_charts(h: &MetricsHistory) -> [ChartData; 4] {
    let line = |i: usize, label: &str, value: &dyn Fn(&crate::model::HistoryPoint) -> f64| Series {
        label: label.to_owned(),
        class: PALETTE[i],
        points: h.points.iter().map(|p| (p.at_ms, value(p))).collect(),
    };
    let limit = h
        .points
        .last()
        .map(|p| p.memory_limit_bytes as f64)
        .filter(|l| *l > 0.0);
    [
        ChartData {
            series: vec![
                line(0, "mean", &|p| p.cpu_percent),
                line(1, "peak", &|p| p.cpu_percent_max),
            ],
            limit: None,
        },
        ChartData {
            series: vec![
                line(0, "mean", &|p| p.memory_bytes as f64),
                line(1, "peak", &|p| p.memory_bytes_max as f64),
            ],
            limit: limit.map(|l| (format!("limit {}", format_value(Unit::Bytes, l)), l)),
        },
        ChartData {
            series: vec![
                line(0, "received", &|p| p.net_rx_bytes_per_s),
                line(1, "sent", &|p| p.net_tx_bytes_per_s),
            ],
            limit: None,
        },
        ChartData {
            series: vec![
                line(0, "read", &|p| p.block_read_bytes_per_s),
                line(1, "written", &|p| p.block_write_bytes_per_s),
            ],
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
    // `None`: live; otherwise the history range shown.
    let range = RwSignal::new(None::<HistoryRange>);
    let history = Resource::new(
        move || range.get(),
        move |r| {
            let id = id.clone();
            async move {
                match r {
                    Some(r) => deployment_metrics_history(id, r.as_str().to_owned())
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            }
        },
    );
    let data = Memo::new(move |_| match range.get() {
        None => samples.with(|s| charts(s)),
        Some(_) => match history.get() {
            Some(Ok(Some(h))) => history_charts(&h),
            _ => Default::default(),
        },
    });
    let status = move || match range.get() {
        None => state.get(),
        Some(_) => match history.get() {
            None | Some(Ok(None)) => "Loading…".to_owned(),
            Some(Err(e)) => e.message,
            Some(Ok(Some(h))) if h.points.is_empty() => {
                "No history yet: minutes are written once they end.".to_owned()
            }
            Some(Ok(Some(h))) => format!(
                "{} points, one per {} min (instances added up)",
                h.points.len(),
                h.step_ms / 60_000
            ),
        },
    };
    let tab = move |label: &'static str, value: Option<HistoryRange>| {
        let class = move || {
            if range.get() == value {
                "rounded px-2 py-1 text-sm bg-slate-800 text-white dark:bg-slate-200 dark:text-slate-900"
            } else {
                "rounded px-2 py-1 text-sm text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800"
            }
        };
        view! {
            <button type="button" data-range=value.map_or("live", HistoryRange::as_str) class=class
                on:click=move |_| range.set(value)>{label}</button>
        }
    };
    let chart = move |i: usize| Signal::derive(move || data.with(|c| c[i].clone()));
    view! {
        <Card heading="Metrics">
            <div id="metrics-ranges" class="mb-2 flex gap-1">
                {tab("Live", None)}
                {tab("1 h", Some(HistoryRange::Hour))}
                {tab("24 h", Some(HistoryRange::Day))}
                {tab("7 d", Some(HistoryRange::Week))}
            </div>
            <p id="metrics-state" class="mb-2 text-sm text-slate-600 dark:text-slate-400">{status}</p>
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
