#!/usr/bin/env bash
# Installs what the project needs from the registries it may use (Debian packages, rustup
# components). Idempotent: only what is missing is installed, so a warm machine pays nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian packages, one per line in hack/apt-packages.txt ("#" starts a comment).
mapfile -t wanted < <(sed 's/#.*//' "$REPO_ROOT/hack/apt-packages.txt" | awk 'NF {print $1}')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages of the tests under tests/ (pip skips what is already installed at that version).
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$REPO_ROOT/tests/requirements.txt"

command -v go >/dev/null || die "Go is required (go 1.24 or newer) to build Kubernetes from the module proxy"
command -v cargo >/dev/null || die "Rust (cargo) is required"
for c in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
