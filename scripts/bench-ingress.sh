#!/usr/bin/env bash
# The ingress benchmark: installs what it needs (wrk, nginx and HAProxy from Debian; oha from
# crates.io into ~/.cache/berth/oha), then runs `cargo bench -p server --bench ingress`.
# Needs Docker and 2 CPUs; takes about 3 minutes after the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in wrk nginx haproxy; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo_if_needed apt-get update -qq
  # No service may start while installing (HAProxy's and nginx's would bind port 80).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_if_needed tee "$policy" >/dev/null
    sudo_if_needed chmod 755 "$policy"
    trap 'sudo_if_needed rm -f "$policy"' EXIT
  fi
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
oha_root=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/oha
if [[ ! -x $oha_root/bin/oha ]]; then
  echo "bench-ingress: installing oha 1.16.0 into $oha_root (once; takes a few minutes)"
  cargo install oha --version 1.16.0 --locked --root "$oha_root" --quiet
fi
cargo bench -p server --bench ingress
