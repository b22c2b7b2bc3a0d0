#!/usr/bin/env bash
# Builds Berth without cargo-leptos (which downloads tools): the server with `ssr`, the
# frontend with `hydrate` for wasm32, then wasm-bindgen into target/site/pkg.
# Each package is built on its own so that cargo never unifies `ssr` and `hydrate`.
# Usage: scripts/build.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile_flag=() dir=debug
if [[ ${1:-} == --release ]]; then profile_flag=(--release); dir=release; fi
target_dir=${CARGO_TARGET_DIR:-target}

cargo build -p server "${profile_flag[@]}"
cargo build -p frontend --lib --target wasm32-unknown-unknown "${profile_flag[@]}"
mkdir -p "$target_dir/site/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$target_dir/site/pkg" --out-name berth \
  "$target_dir/wasm32-unknown-unknown/$dir/frontend.wasm"
echo "build: server at $target_dir/$dir/berth, site at $target_dir/site"
