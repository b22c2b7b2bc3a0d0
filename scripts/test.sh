#!/usr/bin/env bash
# Installs what is missing and runs every check: fmt, clippy -D warnings, the wasm build,
# unit tests, integration tests on SQLite and PostgreSQL, and the browser tests.
# PostgreSQL is started on 127.0.0.1:55432 from Debian's packages unless
# BERTH_TEST_POSTGRES_URL points at one already.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo; echo "==> $* ($(( $(date +%s) - started ))s)"; }

# A CI run builds once from a fresh clone: incremental caches (gigabytes for the test
# binaries) would only take disk.
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=0; fi

step "installing what is missing"
bash scripts/install-deps.sh --test

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (per package, so ssr and hydrate are never unified)"
# app and server together: app gets `ssr` from server, and both share one feature set.
cargo clippy -p app -p server --all-targets -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p end2end --all-targets -- -D warnings

step "build: server, wasm frontend, wasm-bindgen"
bash scripts/build.sh

pg_started=""
# Every Docker object the tests create carries the label berth.test (1, or e2e for the browser
# tests); remove what a failed or killed test left behind.
docker_cleanup() {
  local ids value
  for value in 1 e2e; do
    ids=$(docker ps -aq --filter "label=berth.test=$value")
    [[ -n $ids ]] && docker rm -f -v $ids >/dev/null || true
    ids=$(docker network ls -q --filter "label=berth.test=$value")
    [[ -n $ids ]] && docker network rm $ids >/dev/null || true
    ids=$(docker volume ls -q --filter "label=berth.test=$value")
    [[ -n $ids ]] && docker volume rm $ids >/dev/null || true
    # Images built from git by the build tests.
    ids=$(docker images -q --filter "label=berth.test=$value" --filter label=berth.build | sort -u)
    [[ -n $ids ]] && docker rmi -f $ids >/dev/null || true
  done
  # The volume agent's image, which backups build on first use.
  ids=$(docker images -q --filter label=berth.helper=volume-lister | sort -u)
  [[ -n $ids ]] && docker rmi -f $ids >/dev/null || true
}
cleanup() {
  docker_cleanup
  if [[ -n $pg_started ]]; then
    as_postgres "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null || true
  fi
}
trap cleanup EXIT
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
if [[ -z ${BERTH_TEST_POSTGRES_URL:-} ]]; then
  step "starting PostgreSQL on 127.0.0.1:55432"
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  pgdir=/tmp/berth-test-pg
  if ! "$pgbin/pg_isready" -q -h 127.0.0.1 -p 55432; then
    as_postgres "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pgdir" && mkdir -p "$pgdir" && chown postgres "$pgdir"
    as_postgres "$pgbin/initdb" -D "$pgdir/data" -A trust -U berth >/dev/null
    as_postgres "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
      -o "-p 55432 -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    pg_started=1
  fi
  export BERTH_TEST_POSTGRES_URL=postgres://berth@127.0.0.1:55432/postgres
fi

export BERTH_OIDC_MOCK_PYTHON=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/oidc-provider-mock/bin/python
export BERTH_MOTO_SERVER=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/moto-server/bin/moto_server

step "unit + integration tests (app, server; SQLite and PostgreSQL; OIDC provider)"
cargo test -p app -p server

step "browser tests (headless Chromium)"
bash scripts/demo-image.sh
BERTH_BIN="$PWD/${CARGO_TARGET_DIR:-target}/debug/berth" \
BERTH_SITE_ROOT="$PWD/${CARGO_TARGET_DIR:-target}/site" \
  cargo test -p end2end

step "all checks passed"
