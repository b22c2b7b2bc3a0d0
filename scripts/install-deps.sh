#!/usr/bin/env bash
# Installs what building (and, with --test, testing) Berth needs on Debian 12, skipping what is
# already there: Debian packages, the wasm32 Rust target, and wasm-bindgen-cli pinned to the
# wasm-bindgen version in Cargo.lock (installed into ~/.cargo/bin, which outlives the clone).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ ${1:-} == --test ]] && want_test=1

sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# openssh-client: Berth reaches ssh:// nodes, and fetches ssh:// git repositories, through the
# system ssh client.
packages=(gcc pkg-config busybox-static openssh-client)
if [[ $want_test -eq 1 ]]; then
  # openssl + nginx (stream module): a TLS-guarded Docker endpoint for the remote-node tests;
  # openssh-server: an sshd for ssh:// nodes (the tests start both on loopback, never as services);
  # pebble: its pebble-challtestsrv is the DNS server of the custom-domain tests;
  # bind9 (+ bind9-dnsutils for nsupdate): the RFC 2136 server of the DNS-01 test.
  # git (its http-backend) serves the repositories of the build tests.
  # restic: reads the repositories Berth writes (the backups interoperability test).
  packages+=(git postgresql chromium chromium-driver python3-venv curl openssl nginx libnginx-mod-stream openssh-server pebble bind9 bind9-dnsutils restic)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  # No package may start a service (openssh-server would listen on 0.0.0.0:22): policy-rc.d
  # answers 101 ("action forbidden") while installing, unless the machine has its own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_if_needed tee "$policy" >/dev/null
    sudo_if_needed chmod 755 "$policy"
    own_policy=1
    trap 'sudo_if_needed rm -f "$policy"' EXIT
  fi
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ $own_policy -eq 1 ]]; then sudo_if_needed rm -f "$policy"; fi
fi

if ! command -v cargo >/dev/null; then
  [[ -f $HOME/.cargo/env ]] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown 2>/dev/null || bash ../shared/toolchain/install-wasm32.sh
fi

wb_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]]; then
  echo "install-deps: installing wasm-bindgen-cli $wb_version (once; takes a few minutes)"
  # Not --locked: the CLI's own lockfile pins a yanked crate.
  cargo install wasm-bindgen-cli --version "$wb_version" --quiet
fi

if [[ $want_test -eq 1 ]]; then
  # A real OpenID Connect provider for the SSO tests, from PyPI, in a venv outside the clone.
  venv=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/oidc-provider-mock
  if ! "$venv/bin/python" -c 'import oidc_provider_mock' 2>/dev/null; then
    echo "install-deps: installing oidc-provider-mock into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'oidc-provider-mock==0.3.4'
  fi
  # A real S3-compatible server (moto in server mode) for the S3 backup repository tests.
  venv=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/moto-server
  if ! "$venv/bin/python" -c 'import moto.server' 2>/dev/null; then
    echo "install-deps: installing moto into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server,s3]==5.2.5'
  fi
fi
