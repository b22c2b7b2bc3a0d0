//! A counter that advances on a timer in the browser, for resources that read again
//! periodically.

use std::time::Duration;

use leptos::prelude::*;

/// A counter that goes up by one every `period` in the browser (never on the server), so a
/// `Resource` keyed on it reads again. The timer is cleared when the calling component goes
/// away, so a page left by client-side navigation stops asking.
pub fn ticker(period: Duration) -> RwSignal<u32> {
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        if let Ok(handle) =
            set_interval_with_handle(move || tick.update(|t| *t = t.wrapping_add(1)), period)
        {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}
