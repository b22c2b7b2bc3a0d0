//! Form helpers: inputs with labels and the errors the server returns for them.

use leptos::prelude::*;

use crate::model::ApiError;

/// The error of a finished server action, if it failed.
pub fn action_error<T, S>(value: S) -> Signal<Option<ApiError>>
where
    S: Get<Value = Option<Result<T, ApiError>>> + Send + Sync + 'static,
    T: 'static,
{
    Signal::derive(move || value.get().and_then(|r| r.err()))
}

/// A labelled text input. `error` shows the server's message when it names this field.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(optional, into)] placeholder: String,
    #[prop(optional)] required: bool,
    #[prop(into)] error: Signal<Option<ApiError>>,
) -> impl IntoView {
    view! {
        <label class="block text-sm">
            <span class="mb-1 block font-medium text-slate-700 dark:text-slate-300">{label}</span>
            <input
                type=kind
                name=name
                value=value
                placeholder=placeholder
                required=required
                class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-slate-900 focus:border-sky-500 focus:outline-hidden dark:border-slate-700 dark:bg-slate-900 dark:text-slate-100"
            />
            <FieldMessage name=name error=error />
        </label>
    }
}

/// The server's message under a field, when the error names field `name`.
#[component]
fn FieldMessage(name: &'static str, error: Signal<Option<ApiError>>) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| e.field.as_deref() == Some(name))
            .map(|e| {
                view! {
                    <span class="field-error mt-1 block text-sm text-red-600 dark:text-red-400">
                        {e.message}
                    </span>
                }
            })
    }
}

/// A labelled multi-line input, with the server's message when it names this field.
#[component]
pub fn TextArea(
    label: &'static str,
    name: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(optional, into)] placeholder: String,
    #[prop(optional, into)] hint: String,
    #[prop(default = 3)] rows: u32,
    #[prop(into)] error: Signal<Option<ApiError>>,
) -> impl IntoView {
    view! {
        <label class="block text-sm">
            <span class="mb-1 block font-medium text-slate-700 dark:text-slate-300">{label}</span>
            <textarea
                name=name
                rows=rows
                placeholder=placeholder
                class="w-full rounded-md border border-slate-300 bg-white px-3 py-2 font-mono text-xs text-slate-900 focus:border-sky-500 focus:outline-hidden dark:border-slate-700 dark:bg-slate-900 dark:text-slate-100"
            >
                {value}
            </textarea>
            {(!hint.is_empty())
                .then(|| view! { <span class="mt-1 block text-xs text-slate-500">{hint.clone()}</span> })}
            <FieldMessage name=name error=error />
        </label>
    }
}

/// A message for errors that do not belong to one field (or every error, when `all` is set),
/// with the request id for unexpected ones.
#[component]
pub fn FormError(
    #[prop(into)] error: Signal<Option<ApiError>>,
    #[prop(optional)] all: bool,
) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| all || e.field.is_none())
            .map(|e| view! { <ErrorPanel error=e /> })
    }
}

/// A readable error box: the message, and the request id when there is one.
#[component]
pub fn ErrorPanel(error: ApiError) -> impl IntoView {
    view! {
        <div
            role="alert"
            class="error-panel rounded-md border border-red-300 bg-red-50 px-4 py-3 text-sm text-red-800 dark:border-red-800 dark:bg-red-950 dark:text-red-200"
        >
            <p>{error.message.clone()}</p>
            {error
                .request_id
                .clone()
                .map(|id| view! { <p class="mt-1 text-xs opacity-75">"Request id: " {id}</p> })}
        </div>
    }
}

/// Primary submit button.
#[component]
pub fn Submit(label: &'static str, #[prop(optional)] danger: bool) -> impl IntoView {
    let class = if danger {
        "rounded-md bg-red-600 px-4 py-2 text-sm font-medium text-white hover:bg-red-700"
    } else {
        "rounded-md bg-sky-600 px-4 py-2 text-sm font-medium text-white hover:bg-sky-700"
    };
    view! {
        <button type="submit" class=class>
            {label}
        </button>
    }
}

/// Formats Unix epoch milliseconds as `YYYY-MM-DD HH:MM UTC` (civil-from-days algorithm by
/// Howard Hinnant, <https://howardhinnant.github.io/date_algorithms.html>).
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn formats_epoch_milliseconds_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }
}
