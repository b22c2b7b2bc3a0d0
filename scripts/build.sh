#!/usr/bin/env bash
# Builds Berth without cargo-leptos (which downloads tools): the server with `ssr`, the
# frontend with `hydrate` for wasm32, then wasm-bindgen into target/site/pkg.
# Each package is built on its own so that cargo never unifies `ssr` and `hydrate`.
# Usage: scripts/build.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile_flag=() wasm_profile=(--profile dev) wasm_dir=debug
if [[ ${1:-} == --release ]]; then
  profile_flag=(--release)
  # Size over speed for the browser: opt-level z, one codegen unit, LTO (Cargo.toml).
  wasm_profile=(--profile wasm-release) wasm_dir=wasm-release
fi
target_dir=${CARGO_TARGET_DIR:-target}

cargo build -p server "${profile_flag[@]}"
cargo build -p frontend --lib --target wasm32-unknown-unknown "${wasm_profile[@]}"
mkdir -p "$target_dir/site/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$target_dir/site/pkg" --out-name berth \
  "$target_dir/wasm32-unknown-unknown/$wasm_dir/frontend.wasm"
echo "build: server and site (${profile_flag[*]:-debug}) in $target_dir; site at $target_dir/site"
