#!/usr/bin/env bash
# Installs the Debian 12 packages pipetrain needs to build and test. Idempotent: packages
# already present are left alone, and apt is not touched when nothing is missing.
# Works as root or through sudo.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-dev      # cblas_sgemm (CPU matrix products)
  libzstd-dev zstd     # checkpoint compression
  libxxhash-dev        # XXH3 block checksums of checkpoints (header only)
  libfabric-dev libfabric-bin  # transport (shm, tcp providers); fi_info / fi_pingpong
  libcjson-dev         # configs, manifests, cost files, summaries
  libpcre2-dev         # tokenizers: pre-tokenization regular expressions (UTF + UCP, JIT)
  iproute2             # `ip netns` for the multi-node tests
  python3              # the tests' metrics comparisons (train.tp, profile.mem_measured, ...)
  chromium             # report.render: headless Chromium renders `pipetrain report` pages (skipped without it)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
