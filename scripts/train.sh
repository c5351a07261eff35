#!/usr/bin/env bash
# Installs what is missing, builds pipetrain, and runs the main job: `pipetrain train` on its
# built-in defaults (extra arguments are passed to it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPT_CUDA=AUTO
cmake --build build -j "$(nproc)"
exec ./build/pipetrain train "$@"
