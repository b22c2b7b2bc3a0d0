#!/usr/bin/env bash
# Installs what is missing, builds a release, and runs Berth with embedded defaults:
# SQLite under ./data, the portal on http://127.0.0.1:8080. The first start prints the
# first admin's one-time password.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh --release
bash scripts/demo-image.sh
exec env BERTH_SITE_ROOT="${CARGO_TARGET_DIR:-target}/site" "${CARGO_TARGET_DIR:-target}/release/berth" serve
