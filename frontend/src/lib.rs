//! The browser entry point: hydrates the server-rendered portal.

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by the script `<HydrationScripts/>` emits; attaches the reactive UI to the SSR markup.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
