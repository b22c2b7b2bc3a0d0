//! Light/dark theme: a toggle that puts `dark` on `<html>` and remembers the choice in
//! `localStorage` (`berth-theme`), plus a tiny boot script that applies it before first paint.

use leptos::prelude::*;

/// Runs in `<head>` before the body renders, so a remembered dark theme never flashes light.
/// Without a stored choice it follows the operating system's preference.
pub const THEME_BOOT_SCRIPT: &str = "try{var t=localStorage.getItem('berth-theme');\
if(t==='dark'||(t===null&&matchMedia('(prefers-color-scheme: dark)').matches))\
{document.documentElement.classList.add('dark')}}catch(e){}";

#[cfg(feature = "hydrate")]
fn toggle_theme() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(root) = window.document().and_then(|d| d.document_element()) else {
        return;
    };
    let dark = root.class_list().toggle("dark").unwrap_or(false);
    if let Ok(Some(storage)) = window.local_storage() {
        let _ = storage.set_item("berth-theme", if dark { "dark" } else { "light" });
    }
}

#[cfg(not(feature = "hydrate"))]
fn toggle_theme() {}

/// The button in the header that switches between light and dark.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    view! {
        <button
            type="button"
            id="theme-toggle"
            title="Switch light/dark theme"
            class="rounded-md border border-slate-300 px-2 py-1 text-sm hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800"
            on:click=|_| toggle_theme()
        >
            <span class="dark:hidden">"☾ Dark"</span>
            <span class="hidden dark:inline">"☀ Light"</span>
        </button>
    }
}
