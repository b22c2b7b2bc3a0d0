//! Line charts drawn as SVG: time on the x axis, a value with its unit on the y axis, an
//! optional limit line, and the values under the pointer shown below the chart. Colours
//! are Tailwind stroke classes with `dark:` variants, so charts follow the theme.

use leptos::prelude::*;

/// What a chart's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Percent (CPU), shown as `12.5 %`.
    Percent,
    /// Bytes, shown in binary multiples: `64.0 MiB`.
    Bytes,
    /// Bytes per second: `1.5 KiB/s`.
    BytesPerSecond,
}

const BINARY: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// `value` with its unit, three significant figures at most.
pub fn format_value(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Percent => format!("{value:.1} %"),
        Unit::Bytes | Unit::BytesPerSecond => {
            let mut v = value.max(0.0);
            let mut i = 0;
            while v >= 1024.0 && i < BINARY.len() - 1 {
                v /= 1024.0;
                i += 1;
            }
            let suffix = if unit == Unit::BytesPerSecond {
                "/s"
            } else {
                ""
            };
            if i == 0 {
                format!("{v:.0} B{suffix}")
            } else {
                format!("{v:.1} {}{suffix}", BINARY[i])
            }
        }
    }
}

/// The top of the y axis for values up to `max`: 1, 2 or 5 × a power of ten (of the binary
/// multiple, for bytes), so that tick labels are round. At least 1 % or 1 KiB.
pub fn axis_top(unit: Unit, max: f64) -> f64 {
    let (scale, v) = match unit {
        Unit::Percent => (1.0, max),
        Unit::Bytes | Unit::BytesPerSecond => {
            let mut scale = 1.0;
            while max / scale >= 1024.0 {
                scale *= 1024.0;
            }
            (scale, max / scale)
        }
    };
    if v.is_nan() || v <= 1.0 {
        // At least 1 % or 1 KiB, so that an idle chart's tick labels are not fractions of a
        // byte.
        return if unit == Unit::Percent {
            1.0
        } else {
            scale.max(1024.0)
        };
    }
    let power = 10f64.powf(v.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * power >= v * (1.0 - 1e-9))
        .unwrap_or(10.0);
    step * power * scale
}

/// `HH:MM:SS` (UTC) of Unix epoch milliseconds.
pub fn format_clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// Stroke colour classes, e.g. `stroke-sky-600 dark:stroke-sky-400`.
    pub class: &'static str,
    /// `(Unix epoch ms, value)`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// What one chart shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChartData {
    pub series: Vec<Series>,
    /// A dashed horizontal line (e.g. the memory limit), with its label.
    pub limit: Option<(String, f64)>,
}

impl ChartData {
    /// `(first, last)` time of all points, `None` without points.
    fn span(&self) -> Option<(i64, i64)> {
        let times = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let first = times.clone().min()?;
        Some((first, times.max()?))
    }

    fn max(&self) -> f64 {
        let top = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        self.limit.as_ref().map_or(top, |(_, l)| top.max(*l))
    }
}

/// Colours given to series in order.
pub const PALETTE: [&str; 5] = [
    "stroke-sky-600 dark:stroke-sky-400",
    "stroke-emerald-600 dark:stroke-emerald-400",
    "stroke-amber-600 dark:stroke-amber-400",
    "stroke-fuchsia-600 dark:stroke-fuchsia-400",
    "stroke-rose-600 dark:stroke-rose-400",
];

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// Maps time and value to the chart's coordinates.
struct Frame {
    start: i64,
    end: i64,
    top: f64,
}

impl Frame {
    fn x(&self, t: i64) -> f64 {
        let span = (self.end - self.start).max(1) as f64;
        LEFT + (t - self.start) as f64 / span * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        TOP + (1.0 - (v / self.top).clamp(0.0, 1.0)) * (HEIGHT - TOP - BOTTOM)
    }

    /// The time at chart coordinate `x`.
    fn time_at(&self, x: f64) -> i64 {
        let share = ((x - LEFT) / (WIDTH - LEFT - RIGHT)).clamp(0.0, 1.0);
        self.start + (share * (self.end - self.start) as f64) as i64
    }
}

/// The point of `points` nearest to time `t`.
fn nearest(points: &[(i64, f64)], t: i64) -> Option<(i64, f64)> {
    let i = points.partition_point(|p| p.0 < t);
    let before = i.checked_sub(1).and_then(|j| points.get(j));
    match (before, points.get(i)) {
        (Some(a), Some(b)) => Some(if t - a.0 <= b.0 - t { *a } else { *b }),
        (Some(a), None) => Some(*a),
        (None, b) => b.copied(),
    }
}

/// A line chart of `data`; `id` names the `<figure>` (for tests and links).
#[component]
pub fn LineChart(
    id: &'static str,
    title: &'static str,
    unit: Unit,
    #[prop(into)] data: Signal<ChartData>,
) -> impl IntoView {
    // The pointer's x in chart coordinates, while it is over the chart.
    let pointer = RwSignal::new(None::<f64>);
    let on_move = move |e: leptos::ev::MouseEvent| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let Some(target) = e
                .current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            else {
                return;
            };
            let rect = target.get_bounding_client_rect();
            if rect.width() > 0.0 {
                let x = (f64::from(e.client_x()) - rect.left()) / rect.width() * WIDTH;
                pointer.set((x >= LEFT).then_some(x));
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = e;
    };
    let frame = move || {
        data.with(|d| {
            d.span().map(|(start, end)| Frame {
                start,
                end,
                top: axis_top(unit, d.max()),
            })
        })
    };
    let plot = move || {
        let Some(f) = frame() else {
            return view! {
                <text x=WIDTH / 2.0 y=HEIGHT / 2.0 text-anchor="middle" class="fill-slate-500 text-xs">
                    "Waiting for samples…"
                </text>
            }
            .into_any();
        };
        let d = data.get();
        let ticks = [0.0, 0.5, 1.0].map(|share| {
            let v = f.top * share;
            let y = f.y(v);
            view! {
                <line x1=LEFT x2=WIDTH - RIGHT y1=y y2=y class="stroke-slate-200 dark:stroke-slate-700" stroke-width="1" />
                <text x=LEFT - 6.0 y=y + 4.0 text-anchor="end" class="fill-slate-500 text-[10px]">{format_value(unit, v)}</text>
            }
        });
        let lines = d
            .series
            .iter()
            .map(|s| {
                let points = s
                    .points
                    .iter()
                    .map(|(t, v)| format!("{:.1},{:.1}", f.x(*t), f.y(*v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                view! { <polyline points=points fill="none" stroke-width="1.5" class=s.class /> }
            })
            .collect::<Vec<_>>();
        let limit = d.limit.as_ref().map(|(label, v)| {
            let y = f.y(*v);
            view! {
                <line x1=LEFT x2=WIDTH - RIGHT y1=y y2=y stroke-dasharray="4 3" stroke-width="1" class="stroke-red-500" />
                <text x=WIDTH - RIGHT y=y - 3.0 text-anchor="end" class="fill-red-600 text-[10px] dark:fill-red-400">{label.clone()}</text>
            }
        });
        let cursor = pointer.get().map(|x| {
            let x = f.x(f.time_at(x));
            view! { <line x1=x x2=x y1=TOP y2=HEIGHT - BOTTOM class="stroke-slate-400" stroke-width="1" /> }
        });
        view! {
            {ticks}
            {lines}
            {limit}
            {cursor}
            <text x=LEFT y=HEIGHT - 6.0 class="fill-slate-500 text-[10px]">{format_clock(f.start)}</text>
            <text x=WIDTH - RIGHT y=HEIGHT - 6.0 text-anchor="end" class="fill-slate-500 text-[10px]">{format_clock(f.end)}" UTC"</text>
        }
        .into_any()
    };
    // The values under the pointer, or the newest ones.
    let readout = move || {
        let f = frame()?;
        let t = pointer.get().map_or(f.end, |x| f.time_at(x));
        let d = data.get();
        let values = d
            .series
            .iter()
            .filter_map(|s| {
                let (_, v) = nearest(&s.points, t)?;
                Some(format!("{}: {}", s.label, format_value(unit, v)))
            })
            .collect::<Vec<_>>()
            .join(" · ");
        Some(format!("{} — {values}", format_clock(t)))
    };
    view! {
        <figure id=id class="min-w-0">
            <figcaption class="mb-1 text-sm font-medium">{title}</figcaption>
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                class="h-auto w-full rounded-md border border-slate-200 bg-white dark:border-slate-700 dark:bg-slate-900"
                role="img"
                aria-label=title
                on:mousemove=on_move
                on:mouseleave=move |_| pointer.set(None)
            >
                {plot}
            </svg>
            <p class="chart-readout mt-1 min-h-4 font-mono text-xs text-slate-600 dark:text-slate-400">{readout}</p>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_with_binary_units() {
        assert_eq!(format_value(Unit::Percent, 52.345), "52.3 %");
        assert_eq!(format_value(Unit::Bytes, 512.0), "512 B");
        assert_eq!(
            format_value(Unit::Bytes, 64.0 * 1024.0 * 1024.0),
            "64.0 MiB"
        );
        assert_eq!(format_value(Unit::BytesPerSecond, 1536.0), "1.5 KiB/s");
        assert_eq!(format_value(Unit::Bytes, -3.0), "0 B");
    }

    #[test]
    fn the_axis_top_is_round() {
        assert_eq!(axis_top(Unit::Percent, 0.0), 1.0);
        assert_eq!(axis_top(Unit::Percent, 73.0), 100.0);
        assert_eq!(axis_top(Unit::Percent, 100.0), 100.0);
        assert_eq!(axis_top(Unit::Percent, 130.0), 200.0);
        assert_eq!(axis_top(Unit::Percent, 3.2), 5.0);
        let mib = 1024.0 * 1024.0;
        assert_eq!(axis_top(Unit::Bytes, 48.0 * mib), 50.0 * mib);
        assert_eq!(axis_top(Unit::Bytes, 256.0 * mib), 500.0 * mib);
        assert_eq!(axis_top(Unit::BytesPerSecond, 900.0), 1000.0);
        assert_eq!(axis_top(Unit::BytesPerSecond, 0.5), 1024.0);
        assert_eq!(axis_top(Unit::Bytes, f64::NAN), 1024.0);
    }

    #[test]
    fn clock_and_nearest_point() {
        assert_eq!(format_clock(1_795_255_201_500), "10:00:01");
        let points = [(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)];
        assert_eq!(nearest(&points, 0), Some((1_000, 1.0)));
        assert_eq!(nearest(&points, 1_400), Some((1_000, 1.0)));
        assert_eq!(nearest(&points, 1_600), Some((2_000, 2.0)));
        assert_eq!(nearest(&points, 9_000), Some((3_000, 3.0)));
        assert_eq!(nearest(&[], 9_000), None);
    }

    #[test]
    fn the_frame_maps_time_and_values_into_the_plot() {
        let f = Frame {
            start: 0,
            end: 1_000,
            top: 100.0,
        };
        assert_eq!(f.x(0), LEFT);
        assert_eq!(f.x(1_000), WIDTH - RIGHT);
        assert_eq!(f.y(100.0), TOP);
        assert_eq!(f.y(0.0), HEIGHT - BOTTOM);
        assert_eq!(f.y(500.0), TOP);
        assert_eq!(f.time_at(LEFT + (WIDTH - LEFT - RIGHT) / 2.0), 500);
    }
}
