//! Generates the portal stylesheet: Tailwind utility classes found in `src/**/*.rs`, compiled by
//! encre-css (Tailwind v4 semantics), followed by the hand-written rules in `../style/*.css`.
//! Only the server embeds the stylesheet, so the work is skipped unless the `ssr` feature is on.

use std::{env, fs, path::Path};

fn collect_sources(dir: &Path, out: &mut String) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&fs::read_to_string(&path).expect("read source file"));
            out.push('\n');
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=../style");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = env::var("OUT_DIR").expect("OUT_DIR is set by cargo");
    let target = Path::new(&out_dir).join("berth.css");
    if env::var_os("CARGO_FEATURE_SSR").is_none() {
        fs::write(&target, "").expect("write empty stylesheet");
        return;
    }

    let mut sources = String::new();
    collect_sources(Path::new("src"), &mut sources);

    let mut config = encre_css::Config::default();
    // The theme toggle puts `dark` on <html>; `dark:` variants follow that class, not the OS.
    config.theme.dark_mode = encre_css::config::DarkMode::new_class("html.dark");
    let mut css = encre_css::generate([sources.as_str()], &config);

    let mut extra: Vec<_> = fs::read_dir("../style")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    extra.sort();
    for path in extra {
        if path.extension().is_some_and(|e| e == "css") {
            css.push('\n');
            css.push_str(&fs::read_to_string(&path).expect("read style file"));
        }
    }
    fs::write(&target, css).expect("write stylesheet");
}
