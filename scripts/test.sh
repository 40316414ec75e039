#!/usr/bin/env bash
# Runs every ferry test. On a fresh Debian machine it first installs what the tests
# drive for real (distribution as docker-registry, skopeo, containerd) and what the
# RocksDB build needs (clang, libclang-dev, g++). Idempotent: apt runs only when a
# package is missing. The disk-full test mounts a small tmpfs, so run it as root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker-registry skopeo containerd ca-certificates clang libclang-dev g++)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing test dependencies: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Keep build output outside the checkout so repeated runs reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
